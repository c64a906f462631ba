"""The scanner's side of the PLC link: Modbus TCP (pymodbus 3.7, pinned: its API changes often).

    with PlcClient("192.168.0.10", 502) as plc:      # PlcUnreachable (names host:port) if it is not there
        plc.arm()                                    # gate may fire from now on
        plc.send_reject(target_count)                # the PLC fires when its encoder reaches it

The PLC owns the reject timing: the scanner writes the encoder count at which an object reaches
the gate and the PLC fires its gate output when its encoder gets there, so network jitter never
moves the reject. A heartbeat thread increments a holding register every ``heartbeat_s`` and reads
the PLC's encoder and counters back; the PLC's watchdog holds the gate in its safe state when the
heartbeat stops. When the link drops the client counts an outage, treats the gate as safe
(commands are refused, ``send_reject`` returns False so the caller reports them as unsent), and
reconnects with exponential backoff; after a reconnect it re-arms the gate if it was armed.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

from .encoder import ENCODER_MODULUS, EncoderTracker

log = logging.getLogger(__name__)

__all__ = ["RegisterMap", "PlcUnreachable", "PlcStats", "PlcStatus", "PlcClient", "split_u32", "join_u32",
           "STATUS_RUNNING", "STATUS_DEGRADED"]

STATUS_RUNNING = 0x1
"""Scanner status bit: acquisition and classification are running."""
STATUS_DEGRADED = 0x2
"""Scanner status bit: a source failure, encoder fault or late decision happened in the last period."""


@dataclass(frozen=True)
class RegisterMap:
    """Where everything lives on the PLC (zero-based Modbus addresses, one unit id).

    Coils (1 bit):
      ``reject_coil``     the gate actuator output; the PLC sets it while the gate is diverting.
      ``gate_safe_coil``  1 = gate held in its safe state (it cannot fire, queued rejects are
                          dropped); the scanner writes 0 to arm, the PLC's watchdog writes 1.
    Input registers (PLC -> scanner, 16 bit):
      ``encoder_ir``      encoder count, 32 bit across two registers, high word first.
      ``fired_ir``        rejects fired since power-up (mod 65536).
      ``refused_ir``      reject commands refused: target already passed, or gate safe (mod 65536).
    Holding registers (scanner -> PLC, 16 bit):
      ``heartbeat_hr``    incremented by the scanner every heartbeat period (the PLC's watchdog).
      ``status_hr``       scanner status bits (STATUS_RUNNING, STATUS_DEGRADED).
      ``reject_hr``       a reject command, three registers written in one request: target
                          encoder count (32 bit, high word first) and a sequence number that
                          changes with every command (a repeated write is not a new command).
    """

    unit: int = 1
    reject_coil: int = 0
    gate_safe_coil: int = 1
    encoder_ir: int = 0
    fired_ir: int = 2
    refused_ir: int = 3
    heartbeat_hr: int = 0
    status_hr: int = 1
    reject_hr: int = 2

    @property
    def coil_count(self) -> int:
        return max(self.reject_coil, self.gate_safe_coil) + 1

    @property
    def input_count(self) -> int:
        return max(self.encoder_ir + 2, self.fired_ir + 1, self.refused_ir + 1)

    @property
    def holding_count(self) -> int:
        return max(self.heartbeat_hr + 1, self.status_hr + 1, self.reject_hr + 3)


def split_u32(value: int) -> list[int]:
    """A 32-bit count -> [high word, low word]."""
    value = int(value) % ENCODER_MODULUS
    return [value >> 16, value & 0xFFFF]


def join_u32(high: int, low: int) -> int:
    return (int(high) << 16) | int(low)


class PlcUnreachable(ConnectionError):
    """The PLC did not answer at start; names host:port and why."""

    def __init__(self, host: str, port: int, reason: str):
        super().__init__(host, port, reason)
        self.host, self.port, self.reason = host, port, reason

    def __str__(self) -> str:
        return f"PLC at {self.host}:{self.port} is unreachable: {self.reason}"


@dataclass
class PlcStats:
    """Link counters since connect()."""

    connected: bool = False
    gate_safe: bool = True
    """What the scanner believes: True while disarmed or while the link is down."""
    heartbeats: int = 0
    outages: int = 0
    """Times the link was lost (each counted once, however long it lasts)."""
    outage_s: float = 0.0
    """Total seconds without a link, including a current outage."""
    reconnects: int = 0
    commands_sent: int = 0
    commands_unsent: int = 0
    """Reject commands that could not be written (link down or write failed)."""
    encoder_backwards: int = 0
    encoder_jumps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlcStatus:
    """The PLC's registers as last read by the heartbeat."""

    encoder_raw: int | None = None
    encoder_position: int | None = None
    """Unwrapped encoder position (counts)."""
    fired: int = 0
    refused: int = 0
    read_ns: int = 0
    """time.monotonic_ns() of the read."""


class PlcClient:
    """A Modbus TCP client with heartbeat, reconnect with backoff and fail-safe gate handling.

    ``timeout_s``: per request; ``heartbeat_s``: heartbeat/status period; ``backoff_s``:
    first reconnect delay, doubled per failed attempt up to ``backoff_max_s``;
    ``max_encoder_step``: counts per heartbeat period beyond which the PLC encoder "jumped".
    """

    def __init__(self, host: str, port: int = 502, *, registers: RegisterMap | None = None,
                 timeout_s: float = 0.5, heartbeat_s: float = 0.05, backoff_s: float = 0.05,
                 backoff_max_s: float = 2.0, max_encoder_step: int | None = None):
        from pymodbus.client import ModbusTcpClient

        self.host, self.port = host, int(port)
        self.registers = registers or RegisterMap()
        self.heartbeat_s, self.backoff_s, self.backoff_max_s = heartbeat_s, backoff_s, backoff_max_s
        # retries=1, not 0: pymodbus 3.7's sync transaction reads the body of a response only inside
        # its retry loop, so retries=0 returns the first 8 bytes of every answer
        self._client = ModbusTcpClient(host, port=self.port, timeout=timeout_s, retries=1)
        self._lock = threading.Lock()  # one request at a time on the socket
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed = False
        self._seq = 0
        self._heartbeat = 0
        self._status_bits = 0
        self._down_since: float | None = None
        self._outage_before = 0.0
        self.encoder = EncoderTracker(max_step=max_encoder_step)
        self.status = PlcStatus()
        self._stats = PlcStats()

    # -- life cycle -----------------------------------------------------------------------------
    def connect(self) -> "PlcClient":
        """Open the link and start the heartbeat; raises PlcUnreachable when the PLC does not answer."""
        with self._lock:
            ok = self._client.connect()
            if ok:
                try:
                    self._poll_locked()
                except Exception as e:  # connected but not a Modbus device that answers our map
                    self._client.close()
                    raise PlcUnreachable(self.host, self.port, f"no Modbus answer ({e})") from e
        if not ok:
            raise PlcUnreachable(self.host, self.port, "connection refused or timed out")
        self._stats.connected = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="prism-plc-heartbeat", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Hold the gate safe (best effort), stop the heartbeat and close the socket."""
        if self._stats.connected:
            self.hold_safe()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._client.close()
        self._mark_down(counted=False)

    def __enter__(self) -> "PlcClient":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------------
    def arm(self) -> bool:
        """Let the gate fire (gate_safe := 0); remembered across reconnects. False if the link is down."""
        self._armed = True
        return self._write_coil(self.registers.gate_safe_coil, False)

    def hold_safe(self) -> bool:
        """Hold the gate in its safe state (gate_safe := 1)."""
        self._armed = False
        self._stats.gate_safe = True
        return self._write_coil(self.registers.gate_safe_coil, True)

    def set_status(self, bits: int) -> None:
        """Scanner status bits, written with the next heartbeat."""
        self._status_bits = int(bits) & 0xFFFF

    def send_reject(self, target_count: int) -> bool:
        """Queue a reject at encoder count ``target_count`` on the PLC. False (and counted as
        unsent) when the link is down or the gate is held safe; the caller reports the object."""
        if not self._stats.connected or not self._armed:
            self._stats.commands_unsent += 1
            return False
        self._seq = (self._seq + 1) & 0xFFFF
        values = split_u32(target_count) + [self._seq]
        with self._lock:
            ok = self._request(lambda: self._client.write_registers(self.registers.reject_hr, values,
                                                                    slave=self.registers.unit))
        if ok:
            self._stats.commands_sent += 1
        else:
            self._stats.commands_unsent += 1
        return ok

    # -- state ----------------------------------------------------------------------------------
    @property
    def stats(self) -> PlcStats:
        s = PlcStats(**asdict(self._stats))
        s.outage_s = self._outage_before + (time.monotonic() - self._down_since
                                            if self._down_since is not None else 0.0)
        s.encoder_backwards, s.encoder_jumps = self.encoder.backwards, self.encoder.jumps
        return s

    @property
    def connected(self) -> bool:
        return self._stats.connected

    # -- internals ------------------------------------------------------------------------------
    def _write_coil(self, address: int, value: bool) -> bool:
        if not self._stats.connected:
            return False
        with self._lock:
            ok = self._request(lambda: self._client.write_coil(address, value, slave=self.registers.unit))
        if ok and address == self.registers.gate_safe_coil:
            self._stats.gate_safe = bool(value)
        return ok

    def _request(self, call) -> bool:
        """Run one Modbus request (lock held); on any failure mark the link down. True if it worked."""
        from pymodbus.exceptions import ModbusException

        try:
            response = call()
        except (ModbusException, OSError) as e:
            log.warning("PLC %s:%d: request failed: %s", self.host, self.port, e)
            self._mark_down()
            return False
        if response.isError():
            log.warning("PLC %s:%d: error response %s", self.host, self.port, response)
            self._mark_down()
            return False
        return True

    def _poll_locked(self) -> None:
        """Read the input registers into ``status`` (lock held); raises on failure."""
        r = self.registers
        response = self._client.read_input_registers(0, r.input_count, slave=r.unit)
        if response.isError():
            raise ConnectionError(f"read_input_registers: {response}")
        regs = response.registers
        raw = join_u32(regs[r.encoder_ir], regs[r.encoder_ir + 1])
        position, event = self.encoder.update(raw)
        if event is not None:
            log.warning("PLC %s:%d: encoder %s by %d counts at %d", self.host, self.port, event.kind,
                        event.delta, event.position)
        self.status = PlcStatus(encoder_raw=raw, encoder_position=position, fired=regs[r.fired_ir],
                                refused=regs[r.refused_ir], read_ns=time.monotonic_ns())

    def _beat_locked(self) -> bool:
        self._heartbeat = (self._heartbeat + 1) & 0xFFFF
        r = self.registers
        ok = self._request(lambda: self._client.write_registers(
            r.heartbeat_hr, [self._heartbeat], slave=r.unit))
        ok = ok and self._request(lambda: self._client.write_registers(
            r.status_hr, [self._status_bits], slave=r.unit))
        if ok:
            try:
                self._poll_locked()
            except Exception as e:
                log.warning("PLC %s:%d: status read failed: %s", self.host, self.port, e)
                self._mark_down()
                return False
            self._stats.heartbeats += 1
        return ok

    def _mark_down(self, counted: bool = True) -> None:
        if self._stats.connected:
            self._stats.connected = False
            self._stats.gate_safe = True  # the PLC's watchdog holds it; we send nothing
            self._down_since = time.monotonic() if counted else None
            if counted:
                self._stats.outages += 1
                log.error("PLC %s:%d: link lost; gate held safe by the PLC watchdog", self.host, self.port)
        self._client.close()

    def _reconnect(self) -> bool:
        with self._lock:
            if not self._client.connect():
                return False
            try:
                self._poll_locked()
            except Exception:
                self._client.close()
                return False
        if self._down_since is not None:
            self._outage_before += time.monotonic() - self._down_since
            self._down_since = None
        self._stats.connected = True
        self._stats.reconnects += 1
        log.warning("PLC %s:%d: link restored", self.host, self.port)
        if self._armed:
            self._write_coil(self.registers.gate_safe_coil, False)
        return True

    def _heartbeat_loop(self) -> None:
        delay = self.backoff_s
        while not self._stop.is_set():
            if self._stats.connected:
                with self._lock:
                    self._beat_locked()
                delay = self.backoff_s
                self._stop.wait(self.heartbeat_s)
            elif self._reconnect():
                delay = self.backoff_s
            else:
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
