"""report_lines' ROI sweep (issue 6): the line MLP retrained per ROI count and scored per column."""
import numpy as np
import pytest

pytest.importorskip("torch")
from sdk.models.line_decoders import LineTrainConfig  # noqa: E402
from sdk.tools.report_lines import (_render_roi_sweep, evaluate_roi_sweep,  # noqa: E402
                                    plot_roi_sweep, scan_conditions_camera)


def test_roi_sweep_trains_one_mlp_per_roi_count_and_scores_every_column_bin(tmp_path):
    cfg = LineTrainConfig(n_scans=40, epochs=4, max_samples=20_000, threads=1)
    quiet = scan_conditions_camera().with_(rois=3)  # the paper's scan conditions, 3 ROIs
    assert not quiet.photon_noise and quiet.read_noise_e == 0
    sweep = evaluate_roi_sweep(cfg, n_scans=6, seed=5, rois=(3, 4), bin_px=128, progress=False,
                               extra={"3, noise-free": quiet})
    assert list(sweep["rois"]) == ["3", "4", "3, noise-free"]
    for r, v in sweep["rois"].items():
        assert len(v["exit_angles_deg"]) == int(r.split(",")[0])
        assert 0 < v["decoded"] <= v["rows_with_truth"]
        per = np.array([np.nan if e is None else e for e in v["mae_per_bin"]], np.float64)
        assert per.shape == (2056 // 128 + 1,) and np.all(per[np.isfinite(per)] >= 0)
        assert np.isfinite(per).sum() >= 4  # six sweeps cross most column bins
        # even a 4-epoch MLP beats the trivial centre-column decoder (~500 px) by far
        assert v["stats"]["mae"] < 100, v["stats"]
        frac = np.array([np.nan if e is None else e for e in v["decoded_fraction_per_bin"]], np.float64)
        assert np.array_equal(np.isfinite(frac), np.isfinite(per) | (frac == 0))
        assert np.all((frac[np.isfinite(frac)] >= 0) & (frac[np.isfinite(frac)] <= 1))
    text = "\n".join(_render_roi_sweep(sweep))
    assert "| 3 |" in text and "| 4 |" in text and "| 3, noise-free |" in text
    assert "rois.png" in text
    plot_roi_sweep(sweep, tmp_path / "rois.png")
    assert (tmp_path / "rois.png").stat().st_size > 1000
