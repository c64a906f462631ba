"""The learned decoders' networks, losses, augmentation and training recipes
(sdk.models.line_decoders), on tiny simulated data."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdk.errors import InputError  # noqa: E402
from sdk.models import line_decoders as ld  # noqa: E402


def tiny_camera():
    from firmware_bridge.linescan.diffraction.optics import DiffractionCamera

    return DiffractionCamera.paper_conditions().with_(W=256, H_v=192, Q=256, f_px=289.0, line_f_px=217.0)


def test_point_cnn_reads_y_only_at_the_first_fc_layer():
    torch.manual_seed(0)
    net = ld.PointCNN(rois=3, rows=8, width=64, hidden=32).eval()
    x = torch.rand(5, 4, 8, 27)
    x[:, 3] = 0.25
    out = net(x)
    assert out.shape == (5, 64)
    other = x.clone()
    other[:, 3, 1:, :] = 9.0                        # the rest of the y channel is ignored
    torch.testing.assert_close(net(other), out)
    moved = x.clone()
    moved[:, 3, 0, 0] = 0.75                         # y itself matters
    assert not torch.allclose(net(moved), out)


def test_point_cnn_y_code_size_and_validation():
    flat = 50 * 4 * 13                               # conv features of an 8 x 27 patch
    assert ld.PointCNN(rois=3, width=64, y_freqs=0).fc1.in_features == flat + 1
    net = ld.PointCNN(rois=3, width=64, y_freqs=4, y_scale=2.0)
    assert net.fc1.in_features == flat + 1 + 2 * 4
    code = net.y_code(torch.tensor([[0.0], [0.5], [1.0]]))
    torch.testing.assert_close(code[:, 0], torch.tensor([-2.0, 0.0, 2.0]))   # y_scale * t
    torch.testing.assert_close(code[1, 5:], torch.full((4,), 2.0))            # cos(0) * y_scale
    with pytest.raises(InputError, match="y_freqs"):
        ld.PointCNN(rois=3, y_freqs=-1)
    with pytest.raises(InputError, match="y_scale"):
        ld.PointTrainConfig(y_scale=0.0)


def test_point_cnn_learns_a_column_that_depends_on_y_alone():
    """The failure the y code fixes: identical patches whose column is an even function of y
    (as the conical-diffraction shift is) must be decoded from y through Eq. 13 training."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    width = 64
    net = ld.PointCNN(rois=3, rows=8, width=width, hidden=32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    patch = rng.random((3, 8, 27)).astype(np.float32)

    def batch(n):
        y = rng.uniform(0, 255, n).astype(np.float32)
        t = 2 * y / 255 - 1
        return y, (12 + 40 * t * t).astype(np.float32)

    for _ in range(120):
        y, xv = batch(64)
        loss = ld.point_loss(net(ld._point_input(np.repeat(patch[None], 64, 0), y, 256)),
                             torch.from_numpy(xv), 2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    y, xv = batch(400)
    err = np.abs(ld.point_predict(net.eval(), np.repeat(patch[None], 400, 0), y, 256) - xv)
    assert err.mean() < 3.0, err.mean()


def test_line_mlp_shape_and_scale():
    net = ld.LineMLP(rois=3, width=2056)
    assert net(torch.zeros(7, 10)).shape == (7, 1)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 5   # 4 x 300 + output
    with pytest.raises(InputError, match="LineMLP"):
        ld.LineMLP(rois=0)


def test_gaussian_target_and_point_loss():
    xv = torch.tensor([10.0, 30.4])
    t = ld.gaussian_target(xv, 64, sigma=2.0)
    torch.testing.assert_close(t.sum(dim=1), torch.ones(2))
    assert t.argmax(dim=1).tolist() == [10, 30]
    right = torch.full((2, 64), -5.0)
    right[0, 10] = right[1, 30] = 5.0
    wrong = torch.full((2, 64), -5.0)
    wrong[0, 40] = wrong[1, 2] = 5.0
    assert ld.point_loss(right, xv, 2.0) < ld.point_loss(wrong, xv, 2.0)


def test_line_augmentation_validity_and_roi_dropout(rng):
    means = np.zeros((400, 3, 3))
    means[:, 0] = [120.0, 80.0, 10.0]     # valid
    means[:, 1] = [60.0, 90.0, 40.0]      # valid
    means[:, 2] = [30.0, 4.0, 4.0]        # one channel only: never valid
    unit, ok = ld.augment_line_means(means, rng, albedo_range=(0.5, 1.0), shot_noise=0.05,
                                     read_noise=0.5, threshold=15.0, channel_floor=8.0,
                                     roi_dropout=0.5, black_dn=4.0)
    assert ok.all()
    norms = np.linalg.norm(unit, axis=2)
    on = norms > 0
    np.testing.assert_allclose(norms[on], 1.0, rtol=1e-5)
    assert not on[:, 2].any()
    assert on[:, :2].any(axis=1).all()            # dropout keeps at least one valid ROI
    dropped = (~on[:, :2]).sum()
    assert 0.2 * 400 < dropped < 0.8 * 400        # about half of the rows lose one ROI
    _, ok = ld.augment_line_means(means, rng, albedo_range=(0.0, 0.0), shot_noise=0.0,
                                  read_noise=0.0, threshold=15.0, channel_floor=8.0,
                                  roi_dropout=0.0, black_dn=4.0)
    assert not ok.any()                           # albedo 0: all dark, reported, not trained on


def test_configs_reject_bad_values():
    with pytest.raises(InputError, match="epochs"):
        ld.PointTrainConfig(epochs=0)
    with pytest.raises(InputError, match="roi_dropout"):
        ld.LineTrainConfig(roi_dropout=1.0)
    with pytest.raises(InputError, match="sigma_px"):
        ld.PointTrainConfig(sigma_px=0.0)


def test_point_samples_account_for_every_source():
    from firmware_bridge.linescan.diffraction.points import make_point_dataset

    cam = tiny_camera()
    ds = make_point_dataset(cam, 60, seed=3)
    s = ld.point_samples(ds.scans, ds.truth, ld.preprocess_config(ld.PointTrainConfig()))
    c = s.counts
    assert c["matched"] + c["ambiguous"] + c["missed"] == c["truth"] == len(ds.truth)
    assert c["matched"] > 0.7 * c["truth"]
    assert s.patches.shape == (c["matched"], 3, 8, 27)
    with pytest.raises(InputError, match="truth: no field"):
        ld.point_samples(ds.scans, {"xv": ds.truth["xv"]}, ld.preprocess_config(ld.PointTrainConfig()))


def test_line_recipe_beats_the_centre_baseline_and_caches(tmp_path, monkeypatch):
    from firmware_bridge.linescan.diffraction.structured_light import make_line_dataset

    monkeypatch.setenv("PRISM_CACHE_DIR", str(tmp_path))
    cam = tiny_camera()
    cfg = ld.LineTrainConfig(n_scans=60, epochs=5, max_samples=20_000, batch_size=128, lr=3e-3, threads=1)
    model, meta = ld.get_or_train_line(cam, cfg, progress=False)
    assert meta["cached"] is False
    test = make_line_dataset(cam, 20, seed=99)
    s = ld.line_samples(test.scans, test.xv, ld.preprocess_config(cfg))
    err = np.abs(ld.line_predict(model, s.features) - s.xv).mean()
    baseline = np.abs(s.xv - cam.W / 2).mean()
    assert err < 0.3 * baseline, (err, baseline)
    again, meta2 = ld.get_or_train_line(cam, cfg, progress=False)
    assert meta2["cached"] is True
    np.testing.assert_array_equal(ld.line_predict(again, s.features[:50]), ld.line_predict(model, s.features[:50]))
    # another camera is another cache entry
    assert ld.checkpoint_stem("line", cfg, cam) != ld.checkpoint_stem("line", cfg, cam.with_(exposure_us=200.0))


def test_line_samples_rejects_mismatched_truth():
    from firmware_bridge.linescan.diffraction.structured_light import make_line_dataset

    ds = make_line_dataset(tiny_camera(), 2, seed=0)
    with pytest.raises(InputError, match=r"xv: expected shape \(N, Q\)"):
        ld.line_samples(ds.scans, ds.xv[:, :10], ld.preprocess_config(ld.LineTrainConfig()))
