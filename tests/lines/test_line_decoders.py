"""Decoders that run deployed networks (sdk.lines.decoders) and the LUT distilled from the line
MLP (sdk.lines.distill), built once on a tiny simulated camera (W = Q = 256)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from sdk.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def camera():
    from firmware_bridge.linescan.diffraction.optics import DiffractionCamera

    return DiffractionCamera.paper_conditions().with_(W=256, H_v=192, Q=256, f_px=289.0, line_f_px=217.0)


@pytest.fixture(scope="module")
def built(camera, tmp_path_factory):
    import os

    from sdk.lines.decoders import build_line_bundles
    from sdk.models.line_decoders import LineTrainConfig, PointTrainConfig

    root = tmp_path_factory.mktemp("line_bundles")
    old = os.environ.get("PRISM_CACHE_DIR")
    os.environ["PRISM_CACHE_DIR"] = str(root / "cache")
    try:
        return build_line_bundles(
            root / "bundles", camera,
            point_config=PointTrainConfig(n_scans=500, chunk_scans=250, epochs=6, batch_size=64,
                                          lr=2e-3, sigma_px=3.0, hidden=96, threads=1),
            line_config=LineTrainConfig(n_scans=100, epochs=5, max_samples=20_000, batch_size=128,
                                        lr=3e-3, threads=1),
            lut_ny=17, lut_nc=64, progress=False)
    finally:
        if old is None:
            os.environ.pop("PRISM_CACHE_DIR", None)
        else:
            os.environ["PRISM_CACHE_DIR"] = old


def test_point_decoder_beats_the_centre_baseline(built, camera):
    from firmware_bridge.linescan.diffraction.points import make_point_dataset
    from sdk.lines.decoders import PointDecoder
    from sdk.models.line_decoders import point_samples

    dec = PointDecoder(built.point)
    ds = make_point_dataset(camera, 150, seed=4242)
    s = point_samples(ds.scans, ds.truth, dec.config)
    xv, prob = dec.decode_patches(s.patches, s.y)
    err = np.abs(xv - s.xv).mean()
    baseline = np.abs(s.xv - camera.W / 2).mean()
    assert err < 0.4 * baseline, (err, baseline)
    assert ((prob > 0) & (prob <= 1)).all()
    full = dec.decode(ds.scans)                    # the whole pipeline: peaks, patches, Eq. 11, Eq. 4
    assert full.counts["peaks"] == full.xv.size >= s.xv.size
    np.testing.assert_allclose(full.yv, camera.G(full.y_sensor), atol=1e-3)
    x = dec.network_input(s.patches[:3], s.y[:3])
    np.testing.assert_allclose(x[:, 3, 0, 0], s.y[:3] / (camera.Q - 1), rtol=1e-6)
    dec.close()


def test_line_decoder_and_lut(built, camera):
    from firmware_bridge.linescan.diffraction.structured_light import make_line_dataset
    from sdk.lines.decoders import LineDecoder, LUTLineDecoder
    from sdk.lines.distill import per_roi_decode
    from sdk.lines.preprocess import line_features

    dec = LineDecoder(built.line)
    lut = LUTLineDecoder(built.lut)
    ds = make_line_dataset(camera, 25, seed=4343)
    res = dec.decode(ds.scans)
    _, valid, _ = line_features(ds.scans, dec.config)
    np.testing.assert_array_equal(np.isfinite(res.xv), valid)        # NaN exactly where invalid
    ok = valid & np.isfinite(ds.xv)
    err = np.abs(res.xv[ok] - ds.xv[ok]).mean()
    baseline = np.abs(ds.xv[ok] - camera.W / 2).mean()
    assert err < 0.3 * baseline, (err, baseline)
    # the LUT reproduces the MLP it was distilled from (same per-ROI queries and combination)
    lres = lut.decode(ds.scans)
    ref = per_roi_decode(dec.predict_features, ds.scans, config=dec.config, combine=lut.lut.combine)
    both = np.isfinite(lres.xv) & np.isfinite(ref)
    assert both.sum() > 0.75 * np.isfinite(ref).sum()
    assert np.abs(lres.xv[both] - ref[both]).mean() < 1.0
    lut_err = np.abs(lres.xv[both & ok] - ds.xv[both & ok]).mean()
    assert lut_err < 0.3 * baseline
    dec.close()


def test_bundles_record_their_geometry_and_refuse_misuse(built, camera, tiny_bundle):
    import sdk
    from sdk.lines.decoders import LineDecoder, PointDecoder

    meta = sdk.read_bundle(built.point).manifest["metadata"]["line_decoder"]
    assert meta["kind"] == "point" and (meta["rois"], meta["rows"], meta["q"], meta["width"]) == (3, 8, 256, 256)
    assert meta["g"][0] == pytest.approx(camera.g_scale)
    with pytest.raises(InputError, match="'line' decoder bundle, expected 'point'"):
        PointDecoder(built.line)
    with pytest.raises(InputError, match="not a line decoder bundle"):
        LineDecoder(tiny_bundle.path)
    dec = LineDecoder(built.line)
    with pytest.raises(InputError, match=r"\(R, h, Q\)"):
        dec.decode(np.zeros((2, 3, 8, 100, 3), np.uint8))
    with pytest.raises(InputError, match="features"):
        dec.predict_features(np.zeros((4, 7), np.float32))
    dec.close()
    with pytest.raises(InputError, match="batch"):
        PointDecoder(built.point, batch=0)
