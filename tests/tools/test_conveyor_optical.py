"""The conveyor through the real optical path (issue 9): a diffraction-rendered belt feeding
``linescan+sim`` under the encoder trigger, the line LUT + triangulation measuring each line, the
ObjectTracker, and a pymodbus PLC on loopback firing the reject gate.

Small scenes at 1 mm of travel per line and a low line rate keep rendering to a few seconds; the
LUT is the small recipe's (``line_train_config(small=True)``, cached under $PRISM_CACHE_DIR: about
a minute on first use, seconds afterwards)."""
import json

import numpy as np
import pytest

pytest.importorskip("pymodbus")
pytest.importorskip("torch")
from firmware_bridge.plc import PlcClient  # noqa: E402
from sdk.runtime.conveyor import ConveyorScanner, ScannerConfig  # noqa: E402
from sdk.runtime.conveyor.optical import default_line_lut, line_train_config  # noqa: E402
from sdk.tools.conveyor import OpticalSimulatedLine, score_run  # noqa: E402

RATE_HZ = 600.0
GATE_COUNTS = 400  # 400 mm at 1 mm per count
HEIGHT_TOL_MM = 12.0
"""Measured top height vs the scene's (objects whose crest is not in ``DIM_SEAM_XV``): the small
LUT decodes xv to ~11 px (~4 mm of height at 0.6 m) with a bias, and a cylinder's crest is a few
sensor rows wide, so the binned median loses some."""
EDGE_TOL_COUNTS = 6
"""Trailing edge (where the decoded height crosses the tracker threshold) vs the scene's: 6 mm."""
EDGE_LEAD_TOL_COUNTS = 3
"""Firing count vs the true gate count once the plane's edge lead is compensated."""
LEAD_TOL_COUNTS = 25
"""Leading edge: a cylinder's top reaches full height only on its crest rows, and a crest in the
dim seam is decoded late."""


@pytest.fixture(scope="module")
def lut():
    return default_line_lut(config=line_train_config(small=True), progress=False)


class FifoOracle:
    """p(defect) from the scene's truth, taken in the order objects are decided (FIFO): right
    only if the tracker found exactly the scene's objects, one each, in order."""

    def __init__(self, truth):
        self.truth, self.next = list(truth), 0

    def __call__(self, maps):
        out = []
        for _ in maps:
            obj = self.truth[self.next] if self.next < len(self.truth) else None
            out.append(1.0 if obj is not None and obj.defect is not None else 0.0)
            self.next += 1
        return np.asarray(out, np.float32)


def run_line(line, classifier, log_path):
    belt = line.belt
    with line.plc, PlcClient(line.plc.host, line.plc.port) as plc:
        source = line.open_source()
        try:
            config = ScannerConfig(gate_distance_counts=GATE_COUNTS, margin_counts=10, **line.config_overrides())
            scanner = ConveyorScanner(source, line.belt.extractor(line.lut), classifier, plc, config,
                                      log_path=log_path)
            # Until every object's gate count has passed (the PLC's encoder follows the lines):
            # checked each second, so a host too busy to deliver the lines in real time gets
            # more time (up to three times the nominal run) instead of a short count.
            until = belt.objects[-1].end + GATE_COUNTS + line.gate_tolerance_counts + 150

            def stop_past_last_gate(_stats):
                if line.plc.position >= until:
                    scanner.stop()

            stats = scanner.run(duration_s=3 * until / RATE_HZ, on_progress=stop_past_last_gate)
        finally:
            source.close()
    records = [json.loads(s) for s in log_path.read_text().splitlines()]
    return stats, [r for r in records if r["type"] == "object"]


def test_optical_chain_measures_objects_and_rejects_defects_at_their_gate_count(lut, tmp_path):
    line = OpticalSimulatedLine(RATE_HZ, 1e3, seed=3, lut=lut, progress=False, mm_per_line=1.0, n_objects=4,
                                defect_rate=0.5, albedo_range=(0.6, 0.95))
    truth = line.belt.objects
    assert any(o.defect for o in truth) and not all(o.defect for o in truth)
    stats, measured = run_line(line, FifoOracle(truth), tmp_path / "run.jsonl")
    assert stats.lines_unaccounted == 0 and stats.lines_dropped == 0
    assert len(measured) == len(truth), [m["first_count"] for m in measured]
    mm = line.belt.mm_per_count
    for t, m in zip(truth, measured):
        assert m["measured"], m
        assert abs(m["last_count"] - (t.end - 1)) <= EDGE_TOL_COUNTS, (t, m)
        assert abs(m["first_count"] - t.start) <= LEAD_TOL_COUNTS, (t, m)
        if not t.crest_in_dim_seam:
            assert abs(m["height_mm"] - t.height_mm) <= HEIGHT_TOL_MM, (t, m)
        swept = (t.end - t.start) * mm  # true length + the back face the tilted plane sweeps
        assert abs(m["length_mm"] - swept) <= (EDGE_TOL_COUNTS + LEAD_TOL_COUNTS) * mm, (t, m)
    tol = line.gate_tolerance_counts
    score = score_run(line.belt, line.plc, GATE_COUNTS, tol)
    assert score["objects_past_gate"] == len(truth)
    assert score["defects_rejected"] == score["defects"] == sum(o.defect is not None for o in truth)
    assert score["good_rejected"] == 0 and score["firings_unmatched"] == 0
    # every firing is where the scene's trailing edge puts the gate, within the stated tolerance
    gates = {t.end - 1 + GATE_COUNTS for t in truth if t.defect}
    for f in line.plc.firings:
        assert min(abs(f.fired_at - g) for g in gates) <= tol
    # the tilted plane's edge lead is compensated: the firing count is the trailing edge's, not
    # the line where the back face fell under the height threshold (~6 counts earlier here)
    lead = line.config_overrides()["edge_lead_counts"]
    assert lead >= 4
    for f in line.plc.firings:
        assert min(abs(f.fired_at - g) for g in gates) <= EDGE_LEAD_TOL_COUNTS, (f.fired_at, sorted(gates))


def test_score_run_tolerance_matches_each_firing_once():
    class Obj:
        def __init__(self, i, start, end, defect):
            self.object_id, self.start, self.end, self.defect = i, start, end, defect

    class Fired:
        def __init__(self, at):
            self.fired_at = at

    class Plc:
        position = 10_000
        firings = [Fired(1102), Fired(1400)]

    belt = type("B", (), {"objects": [Obj(0, 0, 100, "dent"), Obj(1, 200, 300, None), Obj(2, 400, 500, "notch")]})
    exact = score_run(belt, Plc, 1000)
    assert exact["defects_rejected"] == 0 and exact["firings_unmatched"] == 2
    loose = score_run(belt, Plc, 1000, tolerance_counts=3)
    assert loose["defects_rejected"] == 1 and loose["missed_defect_ids"] == [2]
    assert loose["firings_unmatched"] == 1 and loose["good_rejected"] == 0


def test_optical_height_maps_match_the_scene_objects_one_to_one(lut):
    """The classifier's optical training data: every scene object tracked once, labelled with
    its defect flag, no phantom objects from decoding noise on the empty belt."""
    from sdk.models.conveyor_classifier import optical_height_map_dataset
    from sdk.runtime.conveyor.optical import OpticalConveyor

    maps, labels, counts = optical_height_map_dataset(4, 11, lut=lut, mm_per_line=2.0, progress=False)
    truth = OpticalConveyor.random(4, 11, mm_per_line=2.0).objects
    assert counts == {"tracked": 4, "matched": 4, "phantom": 0, "missed": 0}
    assert labels.tolist() == [int(t.defect is not None) for t in truth]
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    assert np.all(maps.max(axis=(1, 2)) > 0.1)  # heights / 50 mm: every object stands out of the belt


def test_optical_classifier_quantizes_on_optical_maps_without_an_explicit_bundle(lut):
    """``prism conveyor --optics diffraction --quantize pwlq`` needs no --bundle: the optical
    fine-tune is PWLQ-quantized, calibrated on the (cached) optical training maps, and its bundle
    records the accuracy on the held-out optical maps beside the FP32 one."""
    import sdk
    from sdk.models.conveyor_classifier import ConveyorTrainConfig, OpticalTrainConfig, optical_maps
    from sdk.tools.conveyor import optical_bundle

    cfg = OpticalTrainConfig(objects=6, val_objects=4, epochs=2,
                             base=ConveyorTrainConfig(samples=1200, epochs=10, width=8))
    path = optical_bundle(lut, "pwlq", 4, progress=False, config=cfg)
    from sdk.formats.packed_tables import FORMAT_VERSION

    assert path.name.endswith(f".cpu.pwlq4-t{FORMAT_VERSION}.prism")  # rebuilt when the table format changes
    bundle = sdk.load(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["precision"] == "pwlq4"
        meta = manifest["metadata"]
        assert 0.0 <= meta["val_accuracy_optical"] <= 1.0 and 0.0 <= meta["val_accuracy_optical_fp32"] <= 1.0
        maps, labels, counts = optical_maps(cfg, lut, "val", progress=False)  # cached by the fine-tune
        logits = bundle.infer(np.ascontiguousarray(maps[:, None]))
        assert logits.shape == (len(maps), 2)
        assert counts["matched"] == len(labels) == len(maps)
    finally:
        bundle.close()
    assert optical_bundle(lut, "pwlq", 4, progress=False, config=cfg) == path  # cached


def test_optical_classifier_with_dynamic_exits_every_stage_pwlq(lut):
    """``--optics diffraction --dynamic --quantize pwlq``: the optical fine-tune made a two-stage
    S2DNAS network (exit search on the optical maps), every stage PWLQ, deployed as one bundle."""
    from sdk.models.conveyor_classifier import ConveyorTrainConfig, OpticalTrainConfig
    from sdk.tools.conveyor import optical_bundle

    cfg = OpticalTrainConfig(objects=6, val_objects=4, epochs=2,
                             base=ConveyorTrainConfig(samples=1200, epochs=10, width=8))
    path = optical_bundle(lut, "pwlq", 4, progress=False, dynamic=True, config=cfg)
    assert ".cpu.dynamic.pwlq4-t" in path.name
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["precision"] == "pwlq4" and len(manifest["dynamic"]["stages"]) == 2
