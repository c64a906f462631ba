"""The conveyor scanner: tracking by encoder position, reject scheduling, and whole runs on the
simulated belt + simulated PLC (Modbus TCP on loopback) scored against the scene."""
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pymodbus")
from firmware_bridge.plc import PlcClient  # noqa: E402
from firmware_bridge.plc.sim import ConveyorObject, GeometricConveyor, PlcSimulator, random_objects  # noqa: E402
from sdk.runtime.conveyor import (ConveyorScanner, EngineClassifier, HeightCodedExtractor,  # noqa: E402
                                  LineProfile, ObjectTracker, RejectScheduler, ScannerConfig, replay)

MM_PER_COUNT, COLUMNS, BELT_MM = 0.5, 64, 200.0
PITCH = BELT_MM / COLUMNS
RATE = 8000  # lines/s: 4.6x the paper's 1743, so a run covers many objects in a second or two
GATE = 2400  # counts (1.2 m): 300 ms at RATE


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A small conveyor classifier (cached checkpoint), deployed and loaded through sdk."""
    pytest.importorskip("torch")
    import sdk
    from sdk.models.conveyor_classifier import ConveyorTrainConfig, deploy_classifier, get_or_train

    model, meta = get_or_train(ConveyorTrainConfig(samples=1200, epochs=10, width=8), progress=False)
    bundle = deploy_classifier(model, tmp_path_factory.mktemp("bundles") / "conveyor.prism")
    with sdk.load(bundle.path) as engine:
        yield EngineClassifier(engine)


def box(object_id, start, length_counts=200, width=60.0, height=30.0, **kw):
    return ConveyorObject(object_id, "box", start, length_counts, center_mm=100.0, width_mm=width,
                          height_mm=height, **kw)


def profiles(belt, positions, dropped=(), t=0):
    heights = belt.heights(positions)
    return [LineProfile(int(p), int(p), t, heights[k], valid=int(p) not in dropped)
            for k, p in enumerate(positions)]


def test_tracker_measures_a_box_and_marks_dropped_lines_unmeasured():
    belt = GeometricConveyor([box(0, 100), box(1, 500)], columns=COLUMNS, belt_width_mm=BELT_MM,
                             mm_per_count=MM_PER_COUNT)
    tracker = ObjectTracker(mm_per_count=MM_PER_COUNT, column_pitch_mm=PITCH)
    done = []
    for p in profiles(belt, np.arange(0, 900), dropped={600}):
        done += tracker.feed(p)
    a, b = done
    assert (a.first_count, a.last_count) == (100, 299) and a.measured
    assert a.length_mm == pytest.approx(100.0)
    assert a.width_mm == pytest.approx(60.0, abs=PITCH)
    assert a.height_mm == pytest.approx(30.0, abs=0.01)
    assert a.volume_mm3 == pytest.approx(100 * 60 * 30, rel=0.06)
    assert a.height_map.shape == (32, 32) and a.height_map.max() == pytest.approx(30 / 50, abs=1e-3)
    assert not b.measured and b.unmeasured_reason == "line 600 dropped"
    assert tracker.invalid_lines == 1


def test_tracker_line_gap_and_forced_close():
    belt = GeometricConveyor([box(0, 100, length_counts=400)], columns=COLUMNS, belt_width_mm=BELT_MM,
                             mm_per_count=MM_PER_COUNT)
    tracker = ObjectTracker(mm_per_count=MM_PER_COUNT, column_pitch_mm=PITCH, max_lines=300)
    lines = [p for p in profiles(belt, np.arange(0, 700)) if not 200 <= p.line_id < 210]
    first, rest = [o for p in lines for o in tracker.feed(p)]
    assert tracker.missing_lines == 10
    assert not first.measured and first.unmeasured_reason == "lines 200..209 missing"
    assert (first.first_count, first.last_count) == (100, 409)  # 300 kept lines across the gap
    assert rest.measured and (rest.first_count, rest.last_count) == (410, 499)

    tracker = ObjectTracker(mm_per_count=MM_PER_COUNT, column_pitch_mm=PITCH, max_lines=300)
    long, _ = [o for p in profiles(belt, np.arange(0, 700)) for o in tracker.feed(p)]
    assert long.unmeasured_reason == "longer than 300 lines" and long.last_count == 399


def test_scheduler_in_time_late_unsent_stale():
    sent = []
    link = {"up": True}

    def send(gate):
        sent.append(gate)
        return link["up"]

    s = RejectScheduler(gate_distance_counts=1000, margin_counts=50, send=send)
    d = s.decide(0, last_count=300, reject=True, reason="defect", now_count=1200, latency_ns=1)
    assert (d.status, d.gate_count, d.slack_counts) == ("scheduled", 1300, 50) and sent == [1300]
    d = s.decide(1, last_count=400, reject=True, reason="defect", now_count=1351, latency_ns=1)
    assert d.status == "late" and d.slack_counts == -1 and sent == [1300]  # late: reported, not fired
    assert s.decide(2, 500, False, "ok", 1600, 1).status == "late"  # a late pass is late too
    assert s.decide(3, 500, False, "ok", 600, 1).status == "accepted"
    link["up"] = False
    assert s.decide(4, 900, True, "defect", 1000, 1).status == "unsent"
    assert s.decide(4, 900, True, "defect", 1000, 1).status == "stale"  # decided already
    s.invalidate_before(6)
    assert s.decide(5, 900, True, "defect", 1000, 1).status == "stale"  # encoder fault since it closed
    assert s.counts == {"scheduled": 1, "accepted": 1, "late": 2, "unsent": 1, "stale": 2}
    with pytest.raises(ValueError, match="margin"):
        RejectScheduler(10, 10, send)


class Line:
    """The simulated belt + PLC + scanner for one test run."""

    def __init__(self, classifier, n_objects=16, seed=3, watchdog_s=0.5, log_path=None, source_wrapper=None,
                 **config):
        import firmware_bridge

        self.plc_sim = PlcSimulator(watchdog_s=watchdog_s).start()
        self.belt = GeometricConveyor(random_objects(n_objects, seed, mm_per_count=MM_PER_COUNT),
                                      columns=COLUMNS, belt_width_mm=BELT_MM, mm_per_count=MM_PER_COUNT,
                                      plc=self.plc_sim)
        self.plc = PlcClient(self.plc_sim.host, self.plc_sim.port).connect()
        self.source = firmware_bridge.open_source(
            f"linescan+sim://?trigger=encoder&encoder_hz={RATE}&width={COLUMNS}&lines_per_frame=32",
            line_generator=self.belt.line_generator)
        source = source_wrapper(self.source) if source_wrapper else self.source
        self.config = ScannerConfig(gate_distance_counts=GATE, margin_counts=20, mm_per_count=MM_PER_COUNT,
                                    column_pitch_mm=PITCH, **config)
        self.scanner = ConveyorScanner(source, HeightCodedExtractor(), classifier, self.plc, self.config,
                                       log_path=log_path)

    def run(self, objects):
        try:
            return self.scanner.run(duration_s=20, max_objects=objects)
        finally:
            self.finish()

    def finish(self):
        # let the belt carry the last objects past the gate, then stop
        end = self.plc_sim.position + GATE + 100
        while self.plc_sim.position < end and self.source.streaming:
            time.sleep(0.01)
        self.source.close()
        self.plc.close()
        self.plc_sim.close()

    def truth_for(self, decision):
        return self.belt.object_at(decision.gate_count - GATE, decision.gate_count - GATE)


def test_defects_rejected_at_their_gate_count_and_replay_reproduces(classifier, tmp_path):
    log_path = tmp_path / "run.jsonl"
    line = Line(classifier, log_path=log_path)
    stats = line.run(objects=12)
    assert stats.objects == 12 and stats.measured == 12 and stats.lines_dropped == 0
    assert stats.decisions["late"] == 0 and stats.decisions["unsent"] == 0
    fired = sorted(f.fired_at for f in line.plc_sim.firings)
    expected = []
    for d in line.scanner.decisions:
        truth = line.truth_for(d)
        assert truth is not None and d.gate_count == truth.end - 1 + GATE  # trailing edge + distance
        assert d.reject == (truth.defect is not None), (d, truth)
        if truth.defect is not None:
            expected.append(d.gate_count)
    assert expected and fired == sorted(expected)  # every defect fired at its count, nothing else
    records = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert [r["type"] for r in records][:1] == ["start"] and records[-1]["type"] == "stats"
    assert replay(log_path).mismatches == []
    r = replay(log_path, classifier)  # classification recomputed from the logged height maps
    assert r.mismatches == [] and len(r.decisions) == 12


def test_edge_lead_moves_every_gate_count_and_replay_applies_it(classifier, tmp_path):
    """``edge_lead_counts``: the profile loses an object that many counts before its trailing
    edge passes (a tilted light plane); the reject goes to last_count + lead + gate distance,
    and the run log's replay schedules the same counts."""
    lead = 7
    log_path = tmp_path / "run.jsonl"
    line = Line(classifier, n_objects=8, log_path=log_path, edge_lead_counts=lead)
    stats = line.run(objects=6)
    assert stats.objects == 6 and stats.decisions["late"] == 0
    assert line.scanner.decisions
    for d in line.scanner.decisions:
        truth = line.belt.object_at(d.gate_count - GATE - lead, d.gate_count - GATE - lead)
        assert truth is not None and d.gate_count == truth.end - 1 + lead + GATE, (d, truth)
    assert sorted(f.fired_at for f in line.plc_sim.firings) == sorted(
        d.gate_count for d in line.scanner.decisions if d.reject)
    assert json.loads(log_path.read_text().splitlines()[0])["config"]["edge_lead_counts"] == lead
    assert replay(log_path).mismatches == []


def test_late_decision_is_reported_not_fired(classifier):
    def slow(maps):
        time.sleep(0.5)  # longer than the 300 ms from scan line to gate
        return classifier(maps)

    line = Line(slow, batch=1)
    stats = line.run(objects=4)
    assert stats.decisions["late"] >= 3 and stats.decisions["scheduled"] == 0
    assert line.plc_sim.firings == []
    late = [d for d in line.scanner.decisions if d.status == "late"]
    assert all(d.slack_counts < 0 for d in late)


def test_plc_lost_mid_run_holds_gate_safe_and_reports_outage(classifier, tmp_path):
    log_path = tmp_path / "run.jsonl"
    line = Line(classifier, watchdog_s=0.2, log_path=log_path, n_objects=30)
    tripped = []

    def kill():
        line.plc_sim.stop()
        while not line.plc_sim.gate_safe:
            time.sleep(0.005)
        tripped.append(time.monotonic_ns())

    killer = threading.Thread(target=lambda: (time.sleep(0.6), kill()))
    killer.start()
    stats = line.run(objects=14)
    killer.join()
    assert stats.plc["outages"] == 1 and not stats.plc["connected"]
    assert line.plc_sim.gate_safe and line.plc_sim.watchdog_trips == 1
    assert [f for f in line.plc_sim.firings if f.host_ns > tripped[0]] == []  # nothing fires once safe
    assert stats.decisions["unsent"] + stats.decisions["accepted"] + stats.decisions["scheduled"] \
        + stats.decisions["late"] == 14
    assert stats.decisions["unsent"] >= 1  # defects after the outage: reported, not sent
    events = [json.loads(x) for x in log_path.read_text().splitlines() if '"plc_outage"' in x]
    assert events and events[0]["outages"] == 1


def test_encoder_jump_inside_an_object_is_detected_and_the_object_unmeasured(classifier):
    plc = FakePlc()
    belt = GeometricConveyor([box(0, 100), box(1, 500)], columns=COLUMNS, belt_width_mm=BELT_MM,
                             mm_per_count=MM_PER_COUNT)
    scanner = ConveyorScanner(None, HeightCodedExtractor(), classifier, plc,
                              ScannerConfig(gate_distance_counts=GATE, mm_per_count=MM_PER_COUNT,
                                            column_pitch_mm=PITCH))
    ps = profiles(belt, np.arange(0, 900))
    for p in ps[150:]:
        p.encoder_count += 40  # the counter jumps by 40 counts at line 150, inside object 0
    ps[700].encoder_count -= 60  # and one reading runs backwards
    a, b = scanner.process_profiles(ps)
    assert (scanner.encoder.jumps, scanner.encoder.backwards) == (2, 1)  # back, then forward again
    assert not a.measured and a.unmeasured_reason == "encoder jump by 41 counts"
    assert not b.measured and b.unmeasured_reason == "encoder backwards by -59 counts"
    assert scanner.stats().encoder_jumps == 2


class FakePlc:
    """Records reject commands (the tracker/encoder tests need no network)."""

    def __init__(self):
        self.sent = []
        self.stats = type("S", (), {"outages": 0, "to_dict": lambda self: {}})()

    def send_reject(self, count):
        self.sent.append(count)
        return True


def test_source_failure_mid_run_is_recovered_and_objects_unmeasured(classifier):
    class FailsOnce:
        """Fails once, in the middle of an object."""

        def __init__(self, source):
            self.source, self.reads, self.tracker, self.failed = source, 0, None, False

        def __getattr__(self, name):
            return getattr(self.source, name)

        def read(self, timeout=None):
            self.reads += 1
            if not self.failed and self.reads > 20 and self.tracker.open_object:
                self.failed = True
                raise RuntimeError("cable unplugged")
            return self.source.read(timeout)

    line = Line(classifier, source_wrapper=FailsOnce)
    line.scanner.source.tracker = line.scanner.tracker
    stats = line.run(objects=8)
    assert stats.source_failures == 1 and stats.source_restarts == 1
    assert stats.unmeasured == 1 and stats.objects == 8
    unmeasured = [d for d in line.scanner.decisions if d.reason.startswith("unmeasured")]
    assert len(unmeasured) == 1 and unmeasured[0].reject  # the default policy rejects it
    assert unmeasured[0].reason == "unmeasured: source failure: cable unplugged"


def test_lut_triangulation_extractor_follows_the_decoder_and_rig_contract():
    """The contract with sdk.lines (LUT decoder) and the rig, on stand-ins: scans (N, R, 1, Q, 3)
    in, xv (N, Q) out, triangulate(xv, yv) -> Z; height = belt_z - Z; lost lines stay invalid."""
    from firmware_bridge.source import Frame
    from sdk.runtime.conveyor import LutTriangulationExtractor

    seen = {}

    class Decoder:
        def decode(self, scans):
            seen["scans"] = scans.shape
            return type("R", (), {"xv": scans[:, 0, 0, :, 0].astype(np.float32)})()

    class Rig:
        def triangulate(self, xv, yv):
            seen["yv"] = yv.shape
            return xv, yv, 100.0 - xv / 10  # Z: distance from the rig, mm

    rows = np.zeros((4, 16, 3), np.uint8)
    rows[:, :8, 0] = np.arange(8) * 10  # ROI 0 carries the signal
    frame = Frame(data=rows, frame_id=0, host_timestamp_ns=5, device_timestamp_ns=None, pixel_format="RGB8",
                  source="test", meta={"line_ids": np.arange(8, 12), "line_valid": np.array([1, 1, 0, 1], bool),
                                       "rois": [{"column": 0, "width": 8}, {"column": 8, "width": 8}]})
    ex = LutTriangulationExtractor(Decoder(), Rig(), yv=np.zeros(8), counts_per_line=2, belt_z_mm=100.0)
    out = ex(frame)
    assert seen == {"scans": (4, 2, 1, 8, 3), "yv": (4, 8)}
    assert [p.encoder_count for p in out] == [16, 18, 20, 22] and [p.valid for p in out] == [True, True, False, True]
    np.testing.assert_allclose(out[0].height_mm, np.arange(8), atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(4, 5\)"):
        LutTriangulationExtractor(Decoder(), Rig(), yv=np.zeros(5))(frame)
