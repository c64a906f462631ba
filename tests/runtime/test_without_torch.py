"""The device side runs bundles with PyTorch unimportable (JetPack ships its own torch)."""
import subprocess
import sys
import textwrap


import pytest


@pytest.fixture(scope="module")
def quantized_bundle(tiny_model, tmp_path_factory):
    torch = pytest.importorskip("torch")
    import sdk
    from sdk.data import load_dataset, normalize

    calib = torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:64], "mnist5k"))
    q = sdk.quantize(tiny_model, calib, progress=False)
    return sdk.deploy(q, out=tmp_path_factory.mktemp("q") / "q.prism",
                      example_input=torch.zeros(1, 1, 28, 28))


def test_load_and_infer_without_torch(tiny_bundle, quantized_bundle):
    code = textwrap.dedent(f"""
        import sys
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked for this test")
        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        import sdk
        engine = sdk.load({str(tiny_bundle.path)!r})
        frames = np.full((2, 28, 28), 128, np.uint8)
        out = engine.infer(engine.preprocess(frames))
        assert out.shape == (2, 10), out.shape
        for backend in ("onnxruntime", "native"):  # a PWLQ bundle on both backends
            q = sdk.load({str(quantized_bundle.path)!r}, backend=backend)
            assert q.infer(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
