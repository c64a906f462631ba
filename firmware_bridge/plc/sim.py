"""A simulated conveyor line for tests and the soak benchmark: the PLC (a pymodbus Modbus TCP
server on loopback with the register map of ``modbus.RegisterMap``), its encoder and reject gate,
and a geometric scene of boxes and cylinders moving under the line-scan sensor.

The PLC is the test oracle: ``PlcSimulator.firings`` records every time the gate fired and at
which encoder count; ``refused`` records every command it would not execute and why.

The scene is **not an optical simulation**: ``GeometricConveyor.line_generator`` renders each
line's height field directly and stores it in the RGB row (heights as 0.01 mm units, low byte in
R, high byte in G; B = 255 where the sensor has data). ``sdk.runtime.conveyor.HeightCodedExtractor``
reads it back. The diffraction simulator renders the same scenes optically.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .encoder import ENCODER_MODULUS
from .modbus import RegisterMap, join_u32, split_u32

log = logging.getLogger(__name__)

__all__ = ["free_port", "GateFiring", "RefusedCommand", "PlcSimulator", "ConveyorObject",
           "GeometricConveyor", "random_objects", "HEIGHT_UNIT_MM", "SHAPES", "DEFECTS"]

HEIGHT_UNIT_MM = 0.01
"""One step of the height code in a rendered row."""
SHAPES = ("box", "cylinder")
DEFECTS = ("dent", "bump")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a loopback PLC in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class GateFiring:
    target: int
    """The encoder count the command asked for (unwrapped)."""
    fired_at: int
    """The encoder count at which the gate fired (the PLC scans every count: equals target)."""
    seq: int
    host_ns: int


@dataclass(frozen=True)
class RefusedCommand:
    target: int
    position: int
    """The PLC's encoder count when the command arrived (or when it was dropped)."""
    reason: str
    """"late" (target already passed), "safe" (gate held safe), "watchdog" (dropped when the
    heartbeat stopped)."""


class PlcSimulator:
    """A PLC on ``host:port`` (``port=None``: a free one) driving a reject gate from an encoder.

    The encoder moves only through ``advance_to(position)`` (the simulated belt calls it as lines
    are made) or ``set_encoder(raw)`` (fault injection). Commands queue in encoder order; the gate
    fires when the encoder passes a target unless it is held safe. The watchdog holds it safe
    when no heartbeat arrived for ``watchdog_s``; it starts safe until the scanner arms it.
    ``pulse_counts``: how long the reject coil stays on after a firing, in counts.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *,
                 registers: RegisterMap | None = None, watchdog_s: float = 0.5, pulse_counts: int = 20):
        self.host, self.port = host, port if port is not None else free_port(host)
        self.registers = registers or RegisterMap()
        self.watchdog_s, self.pulse_counts = watchdog_s, pulse_counts
        self._lock = threading.RLock()
        self.position = 0
        self.gate_safe = True
        self._queue: list[tuple[int, int]] = []  # (target, seq), sorted
        self._pulse_until: int | None = None
        self._last_heartbeat: int | None = None
        self._heartbeat_at = time.monotonic()
        self.firings: list[GateFiring] = []
        self.refused: list[RefusedCommand] = []
        self.watchdog_trips = 0
        self.heartbeats = 0
        self.status_bits = 0
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._closing = threading.Event()
        self._context = None
        self._slave = None

    # -- the network side -----------------------------------------------------------------------
    def _make_context(self):
        from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext

        plc = self

        class _Context(ModbusSlaveContext):
            def setValues(self, fc_as_hex, address, values):
                super().setValues(fc_as_hex, address, values)
                plc._on_write(self.decode(fc_as_hex), address, list(values))

        r = self.registers
        slave = _Context(co=ModbusSequentialDataBlock(0, [False] * r.coil_count),
                         di=ModbusSequentialDataBlock(0, [False]),
                         ir=ModbusSequentialDataBlock(0, [0] * r.input_count),
                         hr=ModbusSequentialDataBlock(0, [0] * r.holding_count), zero_mode=True)
        slave.store["c"].setValues(r.gate_safe_coil, [True])
        return slave, ModbusServerContext(slaves={r.unit: slave}, single=False)

    def start(self) -> "PlcSimulator":
        """Serve on host:port (returns once it accepts connections); also after stop()."""
        from pymodbus.server import ModbusTcpServer

        if self._context is None:
            self._slave, self._context = self._make_context()
            self._publish()
        if self._watchdog is None:
            self._closing.clear()
            self._watchdog = threading.Thread(target=self._watchdog_loop, name="prism-plc-watchdog",
                                              daemon=True)
            self._watchdog.start()
        self._stopping = threading.Event()

        async def serve():
            server = ModbusTcpServer(self._context, address=(self.host, self.port))
            serving = asyncio.ensure_future(server.serve_forever())
            while not self._stopping.is_set():
                await asyncio.sleep(0.02)
            await server.shutdown()
            for conn in list(server.active_connections.values()):
                conn.close()
            await serving
            # pymodbus leaves a re-listen task per dropped connection; end them with the loop
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.close()),
                                        name="prism-plc-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until the listener accepts
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"simulated PLC did not start listening on {self.host}:{self.port}")

    def stop(self) -> None:
        """Stop serving and drop every client connection: the PLC "goes away" from the network.
        The gate logic and its watchdog keep running, so the gate goes safe when heartbeats stop."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(5)
            self._thread = None

    def close(self) -> None:
        """stop() and end the watchdog."""
        self.stop()
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    def _watchdog_loop(self) -> None:
        while not self._closing.wait(0.02):
            self.check_watchdog()

    def __enter__(self) -> "PlcSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the gate logic -------------------------------------------------------------------------
    def _on_write(self, table: str, address: int, values: list) -> None:
        r = self.registers
        with self._lock:
            if table == "h":
                if address <= r.heartbeat_hr < address + len(values):
                    beat = values[r.heartbeat_hr - address]
                    if beat != self._last_heartbeat:
                        self._last_heartbeat, self._heartbeat_at = beat, time.monotonic()
                        self.heartbeats += 1
                if address <= r.status_hr < address + len(values):
                    self.status_bits = values[r.status_hr - address]
                if address == r.reject_hr and len(values) >= 3:
                    self._command(join_u32(values[0], values[1]), values[2])
            elif table == "c" and address <= r.gate_safe_coil < address + len(values):
                safe = bool(values[r.gate_safe_coil - address])
                if not safe:
                    self._heartbeat_at = time.monotonic()  # arming starts the watchdog afresh
                self._set_safe(safe, reason="safe")

    def _command(self, raw_target: int, seq: int) -> None:
        step = (raw_target - self.position) % ENCODER_MODULUS
        target = self.position + (step - ENCODER_MODULUS if step >= ENCODER_MODULUS // 2 else step)
        if self.gate_safe:
            self.refused.append(RefusedCommand(target, self.position, "safe"))
        elif target <= self.position:
            self.refused.append(RefusedCommand(target, self.position, "late"))
        else:
            bisect.insort(self._queue, (target, seq))
        self._publish()

    def _set_safe(self, safe: bool, reason: str) -> None:
        if safe:
            for target, _ in self._queue:
                self.refused.append(RefusedCommand(target, self.position, reason))
            self._queue.clear()
        self.gate_safe = safe
        self._publish()

    def check_watchdog(self) -> None:
        """Hold the gate safe if the heartbeat is older than ``watchdog_s`` (the PLC's scan does this)."""
        with self._lock:
            if not self.gate_safe and time.monotonic() - self._heartbeat_at > self.watchdog_s:
                self.watchdog_trips += 1
                log.warning("simulated PLC: heartbeat lost for %.2f s; gate held safe", self.watchdog_s)
                self._set_safe(True, reason="watchdog")

    def advance_to(self, position: int) -> None:
        """Move the belt forward to ``position`` counts, firing every queued target passed."""
        self.check_watchdog()
        with self._lock:
            if position <= self.position:
                return
            now = time.monotonic_ns()
            while self._queue and self._queue[0][0] <= position:
                target, seq = self._queue.pop(0)
                self.firings.append(GateFiring(target, target, seq, now))
                self._pulse_until = target + self.pulse_counts
            self.position = position
            self._publish()

    def set_encoder(self, raw: int) -> None:
        """Fault injection: put ``raw`` in the encoder registers (backwards, jumps) without
        moving the gate logic."""
        with self._lock:
            if self._slave is not None:
                self._slave.store["i"].setValues(self.registers.encoder_ir, split_u32(raw))

    def _publish(self) -> None:
        """Mirror the state into the registers the scanner reads."""
        if self._slave is None:
            return
        r = self.registers
        ir = self._slave.store["i"]
        ir.setValues(r.encoder_ir, split_u32(self.position))
        ir.setValues(r.fired_ir, [len(self.firings) & 0xFFFF])
        ir.setValues(r.refused_ir, [len(self.refused) & 0xFFFF])
        pulsing = self._pulse_until is not None and self.position <= self._pulse_until
        co = self._slave.store["c"]
        co.setValues(r.reject_coil, [pulsing])
        co.setValues(r.gate_safe_coil, [self.gate_safe])


# -- the geometric scene -------------------------------------------------------------------------
@dataclass(frozen=True)
class ConveyorObject:
    """One object on the belt. Positions along travel are encoder counts at the scan line."""

    object_id: int
    shape: str
    """"box" (flat top) or "cylinder" (lying along the travel direction)."""
    start: int
    """Encoder count at which the leading edge reaches the scan line."""
    length_counts: int
    center_mm: float
    """Centre across the belt, mm from the belt's left edge."""
    width_mm: float
    height_mm: float
    """Box: top height; cylinder: diameter."""
    defect: str | None = None
    """None, "dent" or "bump": a spherical cap of ``defect_depth_mm`` on the top surface."""
    defect_at: tuple[float, float] = (0.5, 0.5)
    """Defect centre as fractions of (length, width)."""
    defect_radius_mm: float = 0.0
    defect_depth_mm: float = 0.0

    @property
    def end(self) -> int:
        """First count past the trailing edge."""
        return self.start + self.length_counts


@dataclass
class GeometricConveyor:
    """A belt ``belt_width_mm`` wide seen by ``columns`` sensor columns; ``mm_per_count`` of
    travel per encoder count and ``counts_per_line`` counts between lines (EncoderDivider).

    ``plc``: a PlcSimulator whose encoder follows the lines as they are made.
    """

    objects: list[ConveyorObject]
    columns: int = 64
    belt_width_mm: float = 200.0
    mm_per_count: float = 0.5
    counts_per_line: int = 1
    plc: PlcSimulator | None = None
    _starts: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.objects = sorted(self.objects, key=lambda o: o.start)
        self._starts = [o.start for o in self.objects]
        self._longest = max((o.length_counts for o in self.objects), default=0)

    @property
    def column_pitch_mm(self) -> float:
        return self.belt_width_mm / self.columns

    def heights(self, positions: np.ndarray) -> np.ndarray:
        """Height field at encoder ``positions`` (n,) -> (n, columns) float32 mm above the belt."""
        positions = np.asarray(positions, np.int64)
        out = np.zeros((len(positions), self.columns), np.float32)
        if not len(positions) or not self.objects:
            return out
        lo = bisect.bisect_left(self._starts, int(positions.min()) - self._longest)
        hi = bisect.bisect_right(self._starts, int(positions.max()))
        x = (np.arange(self.columns) + 0.5) * self.column_pitch_mm
        for obj in self.objects[lo:hi]:
            rows = (positions >= obj.start) & (positions < obj.end)
            if rows.any():
                y = (positions[rows] - obj.start) * self.mm_per_count
                out[rows] = np.maximum(out[rows], self.object_heights(obj, y, x))
        return out

    def object_heights(self, obj: ConveyorObject, y_mm: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        """Top surface of ``obj`` at along-travel offsets ``y_mm`` (n,) and belt columns ``x_mm``
        (Q,) -> (n, Q) float32 mm (0 off the object)."""
        dx = x_mm[None, :] - obj.center_mm
        half = obj.width_mm / 2
        inside = np.abs(dx) <= half
        if obj.shape == "box":
            z = np.where(inside, obj.height_mm, 0.0)
        elif obj.shape == "cylinder":
            r = obj.height_mm / 2
            z = np.where(inside, r + np.sqrt(np.clip(r * r - (dx * r / half) ** 2, 0, None)), 0.0)
        else:
            raise ValueError(f"object {obj.object_id}: unknown shape {obj.shape!r}; shapes: {SHAPES}")
        z = np.broadcast_to(z, (len(y_mm), len(x_mm))).copy()
        if obj.defect is not None:
            length_mm = obj.length_counts * self.mm_per_count
            cy = obj.defect_at[0] * length_mm
            cx = obj.center_mm - half + obj.defect_at[1] * obj.width_mm
            d2 = (y_mm[:, None] - cy) ** 2 + (x_mm[None, :] - cx) ** 2
            cap = obj.defect_depth_mm * np.clip(1 - d2 / obj.defect_radius_mm ** 2, 0, None)
            sign = -1.0 if obj.defect == "dent" else 1.0
            z = np.where(z > 0, np.clip(z + sign * cap, 0.5, None), 0.0)
        return z.astype(np.float32)

    def encode_rows(self, heights: np.ndarray, width: int) -> np.ndarray:
        """Heights (n, columns) -> RGB rows (n, width, 3) uint8 (the height code, see the module)."""
        if width != self.columns:
            raise ValueError(f"the line-scan source is {width} px wide but the scene has {self.columns} "
                             "columns; open it with width=<columns>")
        code = np.clip(np.rint(heights / HEIGHT_UNIT_MM), 0, 0xFFFF).astype(np.uint16)
        rows = np.empty((len(heights), width, 3), np.uint8)
        rows[..., 0] = code & 0xFF
        rows[..., 1] = code >> 8
        rows[..., 2] = 255
        return rows

    def line_generator(self, line_ids: np.ndarray, device_timestamps_ns: np.ndarray, width: int) -> np.ndarray:
        """``line_generator=`` for ``linescan+sim://``: line k is taken at count k*counts_per_line;
        the PLC's encoder follows."""
        positions = np.asarray(line_ids, np.int64) * self.counts_per_line
        rows = self.encode_rows(self.heights(positions), width)
        if self.plc is not None and len(positions):
            self.plc.advance_to(int(positions[-1]))
        return rows

    def truth(self, object_id: int) -> ConveyorObject:
        for obj in self.objects:
            if obj.object_id == object_id:
                return obj
        raise KeyError(f"no object {object_id} in the scene")

    def object_at(self, first: int, last: int) -> ConveyorObject | None:
        """The scene object overlapping counts [first, last], if any."""
        i = bisect.bisect_right(self._starts, last) - 1
        while i >= 0:
            obj = self.objects[i]
            if obj.end > first:
                return obj
            if obj.start + self._longest < first:
                break
            i -= 1
        return None


def random_objects(n: int, seed: int, *, start: int = 200, mm_per_count: float = 0.5,
                   belt_width_mm: float = 200.0, defect_rate: float = 0.4,
                   gap_mm: tuple[float, float] = (60.0, 140.0)) -> list[ConveyorObject]:
    """``n`` boxes and cylinders one after another with seeded sizes, gaps and defects."""
    rng = np.random.default_rng(seed)
    out, pos = [], start
    for k in range(n):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        length_mm = float(rng.uniform(60, 120))
        width_mm = float(rng.uniform(40, 90))
        height_mm = float(rng.uniform(20, 50))
        center = float(rng.uniform(width_mm / 2 + 5, belt_width_mm - width_mm / 2 - 5))
        defect = DEFECTS[int(rng.integers(len(DEFECTS)))] if rng.random() < defect_rate else None
        length_counts = int(math.ceil(length_mm / mm_per_count))
        out.append(ConveyorObject(
            object_id=k, shape=shape, start=pos, length_counts=length_counts, center_mm=center,
            width_mm=width_mm, height_mm=height_mm, defect=defect,
            defect_at=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
            defect_radius_mm=float(rng.uniform(10, 16)) if defect else 0.0,
            defect_depth_mm=float(rng.uniform(5, 9)) if defect else 0.0))
        pos += length_counts + int(math.ceil(rng.uniform(*gap_mm) / mm_per_count))
    return out
