"""The PLC link: register map over Modbus TCP against the simulated PLC on loopback, the
heartbeat watchdog, outages and reconnects, and encoder tracking."""
import time

import pytest

pytest.importorskip("pymodbus")
from firmware_bridge.plc import ENCODER_MODULUS, EncoderTracker, PlcClient, PlcUnreachable  # noqa: E402
from firmware_bridge.plc.sim import PlcSimulator, free_port  # noqa: E402


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_encoder_unwraps_and_detects_faults():
    enc = EncoderTracker(jump_tolerance=2)
    assert enc.update(ENCODER_MODULUS - 3) == (ENCODER_MODULUS - 3, None)
    pos, ev = enc.update(1, expected_delta=4)  # wrapped: +4
    assert pos == ENCODER_MODULUS + 1 and ev is None and enc.wraps == 1
    pos, ev = enc.update(0, expected_delta=4)  # one count backwards
    assert ev.kind == "backwards" and ev.delta == -1 and pos == ENCODER_MODULUS + 1  # position holds
    pos, ev = enc.update(3, expected_delta=4)  # +3 from raw 0: still below the old maximum + ...
    assert ev is None and pos == ENCODER_MODULUS + 3
    pos, ev = enc.update(100, expected_delta=4)
    assert ev.kind == "jump" and ev.delta == 97 and ev.expected == 4 and pos == ENCODER_MODULUS + 100
    assert enc.counters() == {"readings": 5, "backwards": 1, "jumps": 1, "wraps": 1}
    with pytest.raises(ValueError, match="outside"):
        enc.update(ENCODER_MODULUS)


def test_unreachable_plc_names_host_and_port():
    port = free_port()
    with pytest.raises(PlcUnreachable, match=f"127.0.0.1:{port}"):
        PlcClient("127.0.0.1", port, timeout_s=0.3).connect()


def test_reject_fires_at_the_commanded_count_and_late_commands_are_refused():
    with PlcSimulator() as sim, PlcClient(sim.host, sim.port) as plc:
        assert sim.gate_safe  # starts safe
        assert not plc.send_reject(500)  # not armed: refused on the scanner side, counted
        assert plc.stats.commands_unsent == 1
        assert plc.arm() and wait_for(lambda: not sim.gate_safe)
        sim.advance_to(100)
        assert plc.send_reject(450) and plc.send_reject(300) and plc.send_reject(90)
        sim.advance_to(320)
        assert [(f.target, f.fired_at) for f in sim.firings] == [(300, 300)]
        sim.advance_to(1000)
        assert [f.fired_at for f in sim.firings] == [300, 450]
        assert [(r.target, r.reason) for r in sim.refused] == [(90, "late")]
        assert wait_for(lambda: plc.status.encoder_position == 1000 and plc.status.fired == 2
                        and plc.status.refused == 1)
        assert sim.heartbeats > 0 and plc.stats.heartbeats > 0


def test_encoder_register_wraps_and_backwards_is_detected():
    with PlcSimulator() as sim:
        sim.set_encoder(ENCODER_MODULUS - 10)  # the counter is near its top when the scanner connects
        plc = PlcClient(sim.host, sim.port).connect()
        assert plc.status.encoder_raw == ENCODER_MODULUS - 10
        sim.set_encoder(5)
        assert wait_for(lambda: plc.status.encoder_raw == 5)
        assert plc.encoder.wraps == 1 and plc.stats.encoder_backwards == 0
        assert plc.status.encoder_position == ENCODER_MODULUS + 5
        sim.set_encoder(2)
        assert wait_for(lambda: plc.stats.encoder_backwards == 1)
        plc.close()


def test_plc_lost_mid_run_holds_the_gate_safe_and_counts_the_outage():
    sim = PlcSimulator(watchdog_s=0.3)
    with sim:
        plc = PlcClient(sim.host, sim.port, backoff_s=0.05, backoff_max_s=0.2).connect()
        try:
            plc.arm()
            sim.advance_to(100)
            assert plc.send_reject(5000)
            sim.stop()  # the PLC drops off the network
            assert wait_for(lambda: plc.stats.outages == 1)
            assert plc.stats.gate_safe and not plc.connected
            assert not plc.send_reject(6000)  # unsent while the link is down
            assert wait_for(lambda: sim.gate_safe)  # the PLC's watchdog: no heartbeat -> safe
            assert sim.watchdog_trips == 1
            assert [(r.target, r.reason) for r in sim.refused] == [(5000, "watchdog")]
            sim.advance_to(7000)
            assert sim.firings == []  # the queued reject was dropped, nothing fired while safe
            sim.start()  # back on the network: reconnect with backoff and re-arm
            assert wait_for(lambda: plc.connected and not sim.gate_safe)
            s = plc.stats
            assert s.outages == 1 and s.reconnects == 1 and s.outage_s > 0 and s.commands_unsent == 1
        finally:
            plc.close()
    assert sim.gate_safe  # close() holds it safe
