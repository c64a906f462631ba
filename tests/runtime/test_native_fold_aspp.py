"""Fold-ASPP through the whole chain: quantize → deploy → native backend, bit-exact with ORT."""
import numpy as np
import pytest

import sdk

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sdk.data import load_dataset, normalize  # noqa: E402
from sdk.models.fold_aspp import FoldASPP  # noqa: E402


class FoldASPPNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.aspp = FoldASPP(8, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.aspp(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_fold_aspp_runs_natively_bit_exact(tmp_path, bits):
    torch.manual_seed(0)
    model = FoldASPPNet().eval()
    calib = torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:64], "mnist5k"))
    q = sdk.quantize(model, calib, weight_bits=bits, progress=False)
    bundle = sdk.deploy(q, out=tmp_path / "aspp.prism", example_input=torch.zeros(1, 1, 28, 28))
    assert "plan" in bundle.manifest["native"], bundle.manifest["native"]
    x = normalize(load_dataset("mnist5k", "test").images[:16], "mnist5k")
    with sdk.load(bundle.path) as ort_engine, sdk.load(bundle.path, backend="native") as native:
        np.testing.assert_array_equal(native.infer(x), ort_engine.infer(x))
