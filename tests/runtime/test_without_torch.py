"""The device side runs bundles with PyTorch unimportable (JetPack ships its own torch)."""
import subprocess
import sys
import textwrap


def test_load_and_infer_without_torch(tiny_bundle):
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
