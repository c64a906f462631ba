"""sdk.models.FoldASPP: the folded convolution's definition, the paper's merge of the branches,
ONNX export (SpaceToDepth / Conv / DepthToSpace) checked in ONNX Runtime, and the same module
on the native fold_conv kernels."""
from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from sdk.fold_conv import fold_conv2d, weight_from_space_to_depth  # noqa: E402
from sdk.models import FoldASPP, FoldConv2d  # noqa: E402
from sdk.models.fold_aspp import space_to_depth  # noqa: E402

EXPORTED_OPS = {"SpaceToDepth", "Conv", "DepthToSpace", "Relu", "Concat"}


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so BN folding is exercised; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


def test_fold_conv2d_is_unshuffle_conv_shuffle():
    """FoldConv2d = pixel_shuffle(BN(conv2d(pixel_unshuffle(x)))) once its SpaceToDepth-order
    weight is converted to pixel_unshuffle order."""
    torch.manual_seed(0)
    layer = _random_bn(FoldConv2d(3, 5, 3, dilation=4))
    x = torch.randn(2, 3, 16, 12)
    w = torch.from_numpy(weight_from_space_to_depth(layer.conv.weight.detach().numpy()))
    with torch.no_grad():
        want = F.pixel_shuffle(layer.bn(F.conv2d(F.pixel_unshuffle(x, 2), w, padding=4,
                                                 dilation=4)), 2)
        got = layer(x)
    assert got.shape == x.shape[:1] + (5,) + x.shape[2:]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_branches_merge_as_in_the_authors_code():
    """Fold once, run the branches on the folded tensor, concatenate, 1x1 fuse, unfold once
    (GateNet's FoldConv_aspp without its extra branches) equals FoldASPP."""
    torch.manual_seed(1)
    model = _random_bn(FoldASPP(6, 8))
    x = torch.randn(2, 6, 20, 20)
    with torch.no_grad():
        folded = space_to_depth(x)  # one fold for all branches
        branches = [F.relu(b.bn(b.conv(folded))) for b in model.branches]
        merged = torch.cat(branches, dim=1)  # in folded space
        # The fuse layer's weight reads its input in SpaceToDepth order of the *unfolded*
        # concatenation; re-fold the folded concatenation into that order.
        merged_s2d = space_to_depth(F.pixel_shuffle(merged, 2))
        want = F.pixel_shuffle(F.relu(model.fuse.bn(model.fuse.conv(merged_s2d))), 2)
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-5)
        # Concatenation commutes with the unfold: channel i·C_b + c of the unfolded
        # concatenation is channel c of branch i.
        torch.testing.assert_close(F.pixel_shuffle(merged, 2),
                                   torch.cat([F.pixel_shuffle(b, 2) for b in branches], 1))


def test_shapes_defaults_and_odd_input():
    model = FoldASPP(16, 12).eval()
    assert [b.conv.dilation for b in model.branches] == [(2, 2), (4, 4), (6, 6)]
    assert [b.conv.out_channels for b in model.branches] == [4 * 6] * 3  # out_channels // 2
    assert model.fuse.conv.kernel_size == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 16, 24, 28)).shape == (1, 12, 24, 28)
        with pytest.raises(ValueError, match=r"x: H and W must be even.*\(1, 16, 24, 27\)"):
            model(torch.randn(1, 16, 24, 27))


def test_space_to_depth_gradient():
    x = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(space_to_depth, (x,))
    model = FoldASPP(4, 4).train()
    model(torch.randn(2, 4, 12, 12)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def _export(model, x) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
    return buf.getvalue()


def test_onnx_export_matches_torch():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    model = _random_bn(FoldASPP(8, 8))
    blob = _export(model, torch.randn(1, 8, 24, 24))
    graph = onnx.load_from_string(blob)
    onnx.checker.check_model(graph, full_check=True)
    ops = [n.op_type for n in graph.graph.node]
    assert set(ops) == EXPORTED_OPS, ops  # BN folded into Conv, no Reshape/Transpose
    assert ops.count("SpaceToDepth") == ops.count("DepthToSpace") == ops.count("Conv") == 4
    for node in graph.graph.node:
        if node.op_type == "DepthToSpace":
            assert {a.name: a for a in node.attribute}["mode"].s == b"CRD"
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 8, 24, 24)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert np.abs(want).max() > 1e-2  # not vacuous
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_deploy_export_check_passes():
    """The toolchain's checked export (checker, dynamic batch, ORT vs PyTorch) accepts it."""
    pytest.importorskip("onnxruntime")
    from sdk.toolchain.export import export_onnx

    torch.manual_seed(3)
    result = export_onnx(_random_bn(FoldASPP(4, 6)), torch.randn(1, 4, 16, 16),
                         output_names=("features",))
    assert result.max_abs_diff < 1e-4


def test_native_kernels_match_torch():
    torch.manual_seed(4)
    model = _random_bn(FoldASPP(64, 64))
    head = model.to_native()
    for shape in ((1, 64, 28, 28), (2, 64, 16, 20)):
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        for threads in (1, 2):
            got = head(x.numpy(), num_threads=threads)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def _run_graph_on_fold_kernels(graph, x: np.ndarray) -> np.ndarray:
    """Execute an exported Fold-ASPP graph as a native backend would: every
    SpaceToDepth → Conv → DepthToSpace(CRD) triple is one fold_conv2d call (weights converted
    from SpaceToDepth order), Relu and Concat in NumPy."""
    from onnx import helper, numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    attrs = {n.output[0]: {a.name: helper.get_attribute_value(a) for a in n.attribute}
             for n in graph.node}
    env = {graph.input[0].name: x}
    nodes = list(graph.node)
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node.op_type == "SpaceToDepth":
            conv, d2s = nodes[i + 1], nodes[i + 2]
            assert conv.op_type == "Conv" and d2s.op_type == "DepthToSpace"
            assert attrs[d2s.output[0]]["mode"] == b"CRD" and conv.input[0] == node.output[0]
            a = attrs[conv.output[0]]
            w = weight_from_space_to_depth(consts[conv.input[1]])
            env[d2s.output[0]] = fold_conv2d(env[node.input[0]], w, consts[conv.input[2]],
                                             dilation=a["dilations"][0], padding=a["pads"][0])
            i += 3
            continue
        if node.op_type == "Relu":
            env[node.output[0]] = np.maximum(env[node.input[0]], np.float32(0))
        elif node.op_type == "Concat":
            env[node.output[0]] = np.concatenate([env[n] for n in node.input],
                                                 axis=attrs[node.output[0]]["axis"])
        else:
            raise AssertionError(f"unexpected op {node.op_type}")
        i += 1
    return env[graph.output[0].name]


def test_exported_graph_runs_on_the_fold_kernels():
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(5)
    model = _random_bn(FoldASPP(16, 16))
    graph = onnx.load_from_string(_export(model, torch.randn(1, 16, 28, 28))).graph
    x = torch.randn(2, 16, 28, 28)
    with torch.no_grad():
        want = model(x).numpy()
    got = _run_graph_on_fold_kernels(graph, x.numpy())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
