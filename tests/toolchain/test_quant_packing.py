"""Packed tables (.npz) for native kernels: round trip, bit layout, size."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from sdk.errors import BundleError
from sdk.toolchain.quant import pack_tables, quantize, unpack_tables
from sdk.formats.packed_tables import pack_codes, pack_regions, unpack_codes, unpack_regions
from sdk.toolchain.quant.pwlq import quantize_pwlq


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


DATA = torch.randn(16, 3, 8, 8)


def assert_tables_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        ta, tb = a[name], b[name]
        for field in ta.__dataclass_fields__:
            va, vb = getattr(ta, field), getattr(tb, field)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and va.shape == vb.shape, field
                np.testing.assert_array_equal(va, vb, err_msg=field)
            elif isinstance(va, float) and np.isnan(va):
                assert np.isnan(vb)
            else:
                assert va == vb, (field, va, vb)


@pytest.mark.parametrize("kwargs", [
    {"weight_bits": 4}, {"weight_bits": 3, "breakpoints": 3, "breakpoint_method": "laplacian_expected"},
    {"weight_bits": 8, "scheme": "uniform"}, {"weight_bits": 6, "breakpoints": 2, "breakpoint_method": "empirical"},
    {"weight_bits": 4, "act_bits": 4, "act_scheme": "pwlq"}])
def test_round_trip_through_an_npz_file(tmp_path, kwargs):
    q = quantize(Net().eval(), DATA, progress=False, **kwargs)
    path = tmp_path / "tables.npz"
    np.savez(path, **pack_tables(q))
    with np.load(path) as npz:  # no pickle needed
        assert_tables_equal(q.tables, unpack_tables(npz))
    assert_tables_equal(q.tables, unpack_tables(pack_tables(q.tables)))


def test_nibble_layout_is_sign_magnitude_low_nibble_first():
    packed = pack_codes(np.array([3, -5, 0, 7, -1], np.int8), 4)
    assert packed.tolist() == [0x3 | (0xD << 4), 0x0 | (0x7 << 4), 0x9]


def test_region_bitmask_is_one_bit_per_weight_for_one_breakpoint():
    regions = np.array([0, 1, 1, 0, 0, 0, 0, 1, 1], np.uint8)
    packed = pack_regions(regions, 2)
    assert packed.shape == (1, 2) and packed[0, 0] == 0b01100001 and packed[0, 1] == 0b10000000
    np.testing.assert_array_equal(unpack_regions(packed, 9), regions)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 8).flatmap(lambda b: st.tuples(
    st.just(b), arrays(np.int8, st.integers(1, 41), elements=st.integers(-(2 ** (b - 1) - 1), 2 ** (b - 1) - 1)))))
def test_property_codes_round_trip(case):
    bits, codes = case
    np.testing.assert_array_equal(unpack_codes(pack_codes(codes, bits), bits, codes.size), codes)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4).flatmap(lambda r: st.tuples(st.just(r), arrays(np.uint8, st.integers(1, 50),
                                                                        elements=st.integers(0, r - 1)))))
def test_property_regions_round_trip(case):
    n_regions, regions = case
    np.testing.assert_array_equal(unpack_regions(pack_regions(regions, n_regions), regions.size), regions)


def test_packed_4bit_conv_is_at_most_a_fifth_of_fp32():
    """A 256x256x3x3 conv: 4-bit codes (2 per byte) + 1-bit region mask + per-channel tables."""
    from collections import OrderedDict
    from sdk.formats.layer_table import LayerQuantTable

    w = np.random.default_rng(0).normal(size=(256, 256, 3, 3)).astype(np.float32)
    qw = quantize_pwlq(w, 4)
    c = w.shape[0]
    table = LayerQuantTable("conv", "Conv2d", "pwlq", 4, "gaussian_closed", True, qw.codes, qw.regions, qw.scales,
                            np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
                            8, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    packed = pack_tables(OrderedDict(conv=table))
    weight_bytes = sum(v.nbytes for k, v in packed.items() if k.startswith("conv/") and k != "conv/meta")
    assert weight_bytes <= 0.20 * w.nbytes, weight_bytes / w.nbytes
    assert packed["conv/codes"].nbytes == w.size // 2 and packed["conv/regions"].nbytes == w.size // 8


def test_malformed_tables_raise_bundle_error():
    with pytest.raises(BundleError, match="__format__"):
        unpack_tables({})
    packed = pack_tables(quantize(Net().eval(), DATA, progress=False))
    with pytest.raises(BundleError, match="format 99"):
        unpack_tables({**packed, "__format__": np.array(99)})
    with pytest.raises(BundleError, match="format 1 .*re-quantize and re-deploy"):
        unpack_tables({**packed, "__format__": np.array(1), "fc/breakpoints": np.zeros((10, 1), np.float32)})
    off_grid = packed["fc/scales"].copy()
    off_grid[0, 0] = np.nextafter(np.float32(off_grid[0, 1] / 1000), np.float32(1))  # finer than U
    with pytest.raises(BundleError, match="'fc': channel 0: region steps .* not integer multiples"):
        unpack_tables({**packed, "fc/scales": off_grid})
    del packed["fc/scales"]
    with pytest.raises(BundleError, match="'fc' lacks 'fc/scales'"):
        unpack_tables(packed)


def test_format_2_stores_no_offsets_and_round_trips_the_folded_weights():
    qmodel = quantize(Net().eval(), DATA, progress=False)
    packed = pack_tables(qmodel)
    assert int(packed["__format__"]) == 2 and not any(k.endswith("/breakpoints") for k in packed)
    back = unpack_tables(packed)
    for name, t in qmodel.tables.items():
        u = back[name]
        np.testing.assert_array_equal(u.offsets, t.offsets)  # derived from the stored steps, exactly
        for r in range(t.n_regions):
            np.testing.assert_array_equal(u.folded_codes(r), t.folded_codes(r))
        np.testing.assert_array_equal(u.dequantized_weight(), t.dequantized_weight())
