"""sdk.deploy: export checks, targets, precision and preprocessing validation."""
import numpy as np
import onnx
import pytest

import sdk

torch = pytest.importorskip("torch")


def test_onnx_is_checker_clean_with_dynamic_batch(tiny_bundle):
    model = onnx.load(str(tiny_bundle.file("model.onnx")))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # folded on export


def test_export_compares_two_batch_sizes(tiny_bundle):
    assert tiny_bundle.manifest["export"]["checked_batches"] == [1, 2]


def test_engine_matches_torch(tiny_model, tiny_bundle, rng):
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    with sdk.load(tiny_bundle.path) as engine:
        got = engine.infer(x)
    with torch.no_grad():
        ref = tiny_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_unknown_target_lists_known(tiny_model, tmp_path):
    with pytest.raises(sdk.InputError, match=r"unknown target 'tpu' \(known targets: cpu"):
        sdk.deploy(tiny_model, target="tpu", out=tmp_path / "x", example_input=torch.zeros(1, 1, 28, 28))


def test_unsupported_precision(tiny_model, tmp_path):
    with pytest.raises(sdk.InputError, match="does not support precision 'int3'"):
        sdk.deploy(tiny_model, precision="int3", out=tmp_path / "x",
                   example_input=torch.zeros(1, 1, 28, 28))


def test_example_input_must_be_float32(tiny_model, tmp_path):
    with pytest.raises(sdk.InputError, match="example_input: expected dtype float32"):
        sdk.deploy(tiny_model, out=tmp_path / "x", example_input=torch.zeros(1, 1, 28, 28, dtype=torch.float64))


def test_recipe_must_match_example_input(tiny_model, tmp_path):
    from sdk.preprocess import PreprocessRecipe

    with pytest.raises(sdk.InputError, match="recipe produces"):
        sdk.deploy(tiny_model, out=tmp_path / "x", example_input=torch.zeros(1, 1, 28, 28),
                   preprocess=PreprocessRecipe(size=(32, 32)))


def test_export_failure_is_named(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[:, 0])  # complex output: not exportable to ONNX

    with pytest.raises(sdk.PrismError, match="Broken"):
        sdk.deploy(Broken(), out=tmp_path / "x", example_input=torch.zeros(1, 1, 4, 4))
