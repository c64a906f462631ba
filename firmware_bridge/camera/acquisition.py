"""The acquisition process: it owns the device, fetches frames and copies them into the ring.

harvesters' fetch() holds the GIL while it waits (harvesters issue 508), stalling every other
thread of its process; so the device lives in its own process ('spawn': GenTL producers run
threads of their own, which fork would not carry over) and the reading process only ever
touches shared memory. The two talk over a pipe:

    reader -> acquisition   ("start", RingSpec) | ("stop",) | ("close",)
    acquisition -> reader   ("ready", info) | ("started",) | ("stopped",) | ("error", SourceError)
                            | ("lost", DeviceLost)   # then it exits; the reader reopens

Frames themselves never cross the pipe: each is copied into a ring slot (see ring.py).
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_bridge.camera import discovery, features, pixels
from firmware_bridge.camera.ring import Counter, FrameRing, RingSpec, RingSync
from firmware_bridge.errors import DeviceLost, SourceError

log = logging.getLogger(__name__)

POLL_S = 0.05
"""Longest the acquisition process waits in one fetch(); bounds how late it notices a command."""


@dataclass(frozen=True)
class AcquisitionRequest:
    """Everything the acquisition process needs to open and run a device (pickled at spawn)."""

    producers: tuple[str, ...]
    selector: str | int | None
    features: dict[str, Any] = field(default_factory=dict)
    """SFNC name -> value, written before acquisition starts."""
    block: bool = False
    """Drop policy: False = newest-wins (overwrite the oldest unread slot); True = wait for a slot."""
    buffers: int = 4
    """GenTL buffers announced to the producer (the ring has as many slots)."""
    timeout_s: float = 2.0
    """This long without a frame counts one timeout."""


# -- the acquisition process ------------------------------------------------------------------
def run(conn, request: AcquisitionRequest, sync: RingSync) -> None:
    """Entry point of the acquisition process."""
    # Ctrl-C reaches the whole process group; the reading process decides and sends "close".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with discovery.harvester_session(request.producers) as harvester:
            row = discovery.select_device(discovery.device_rows(harvester), request.selector)
            device = discovery.device_label(row)
            acquirer = discovery.open_acquirer(harvester, row)
            try:
                node_map = acquirer.remote_device.node_map
                features.configure(node_map, request.features, device)
                info = {"device": device, **{k: row[k] for k in ("serial", "id", "model", "vendor")},
                        **features.geometry(node_map, device),
                        "fps": features.read_feature(node_map, "AcquisitionFrameRate")}
                acquirer.num_buffers = max(request.buffers, acquirer.min_num_buffers)
                conn.send(("ready", info))
                _serve(conn, acquirer, request, info, sync)
            finally:
                _quietly(acquirer.stop)
                _quietly(acquirer.destroy)
    except SourceError as e:
        _quietly(conn.send, ("error", e))
    except Exception as e:  # anything else still reaches the reader, typed
        _quietly(conn.send, ("error", SourceError(f"acquisition process failed: {e!r}")))
    finally:
        conn.close()


def _quietly(call, *args) -> None:
    """Teardown steps must not mask the error that caused the teardown."""
    try:
        call(*args)
    except Exception as e:
        log.debug("ignored during teardown: %r", e)


def _serve(conn, acquirer, request: AcquisitionRequest, info: dict, sync: RingSync) -> None:
    ring = None
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:  # the reading process is gone
                return
            if command[0] == "close":
                return
            if command[0] == "stop":  # not streaming: already stopped
                conn.send(("stopped",))
            if command[0] == "start":
                ring = ring or FrameRing.attach(command[1], sync)
                try:
                    acquirer.start()
                    conn.send(("started",))
                    command = _stream(conn, acquirer, ring, request, info)
                    acquirer.stop()
                except Exception as e:
                    # GenTL/GenApi errors mid-stream mean the device went away (unplugged, reset).
                    conn.send(("lost", DeviceLost(info["device"], f"{type(e).__name__}: {e}")))
                    return
                if command[0] != "stop":
                    return
                conn.send(("stopped",))
    finally:
        if ring is not None:
            ring.close()


def _stream(conn, acquirer, ring: FrameRing, request: AcquisitionRequest, info: dict) -> tuple:
    """Fetch, copy into the ring, publish — until a command arrives; returns that command."""
    from genicam.gentl import GenericException, TimeoutException

    width, height, pixel_format = info["width"], info["height"], info["pixel_format"]
    nbytes = pixels.image_nbytes(pixel_format, width, height)
    host_count, last_id, idle_s = 0, None, 0.0
    device_ids = device_clock = True  # until the producer says it has none
    while True:
        if conn.poll():
            try:
                return conn.recv()
            except EOFError:
                return ("close",)
        # In run_as_thread mode fetch() ignores its timeout, so it is never used here.
        try:
            buffer = acquirer.fetch(timeout=POLL_S)
        except TimeoutException:
            idle_s += POLL_S
            if idle_s >= request.timeout_s:
                ring.count(Counter.TIMEOUTS)
                idle_s = 0.0
            continue
        if buffer is None:  # incomplete buffer, already requeued by harvesters
            ring.count(Counter.ERRORS)
            continue
        idle_s = 0.0
        with buffer:  # the buffer goes back to the producer when this block exits
            host_ts = time.monotonic_ns()
            host_count += 1
            components = buffer.payload.components if buffer.payload is not None else []
            data = components[0].data if components else None
            if data is None or data.nbytes != nbytes:
                ring.count(Counter.ERRORS)
                continue
            ring.count(Counter.ACQUIRED)
            frame_id = host_count
            if device_ids:
                try:
                    frame_id = int(buffer.frame_id)
                except GenericException:
                    device_ids = False
            device_ts = None
            if device_clock:
                try:
                    device_ts = int(buffer.timestamp_ns)
                except GenericException:  # e.g. Viky: NotAvailableException
                    device_clock = False
            if last_id is not None and frame_id > last_id + 1:
                ring.count(Counter.MISSING, frame_id - last_id - 1)
            last_id = frame_id
            slot = ring.claim(request.block, POLL_S)
            while slot is None and request.block:
                if conn.poll():  # stop while waiting for the reader: this frame is dropped
                    ring.count(Counter.DROPPED)
                    try:
                        return conn.recv()
                    except EOFError:
                        return ("close",)
                slot = ring.claim(True, POLL_S)
            if slot is None:
                continue  # newest-wins refused it (counted): the reader holds every slot
            # component.data is a view into the producer's buffer: copy before it is requeued.
            np.copyto(ring.slot(slot)[:nbytes], data.reshape(-1).view(np.uint8))
        ring.publish(slot, frame_id, host_ts, device_ts)


# -- the reading process's handle --------------------------------------------------------------
_spawn_lock = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden():
    """Spawn re-imports the parent's __main__ in the child, re-running an unguarded script (one
    without ``if __name__ == "__main__":``) and so opening the camera again from inside its own
    acquisition process. The child runs only firmware_bridge code, so it is told there is no main
    module to import. Process.start() reads these two attributes, nothing else does."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class AcquisitionProcess:
    """The reading side's handle on one acquisition process (one opening of one device)."""

    def __init__(self, request: AcquisitionRequest, name: str):
        ctx = multiprocessing.get_context("spawn")
        self.sync = RingSync(ctx)
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(target=run, args=(child_conn, request, self.sync), name=name,
                                    daemon=True)  # daemon: ended by multiprocessing at our exit
        self._talk = threading.Lock()  # one thread at a time on the pipe
        self.name = name
        with _spawn_lock, _main_module_hidden():
            self._process.start()
        child_conn.close()

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def _expect(self, reply: str, timeout_s: float) -> tuple:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._conn.poll(min(0.1, max(0.0, deadline - time.monotonic()))):
                    message = self._conn.recv()
                    if message[0] == reply:
                        return message
                    if message[0] in ("error", "lost"):
                        raise message[1]
                    continue  # a late reply to an earlier command
            except (EOFError, OSError):
                pass  # the process is gone; said below
            if not self._process.is_alive() and not self._conn.poll(0):
                self._process.join(1.0)
                raise DeviceLost(self.name, f"acquisition process exited (code {self._process.exitcode})")
            if time.monotonic() >= deadline:
                raise DeviceLost(self.name, f"no {reply!r} from the acquisition process within {timeout_s:g} s")

    def _command(self, command: tuple, reply: str, timeout_s: float) -> tuple:
        with self._talk:
            try:
                self._conn.send(command)
            except OSError:  # BrokenPipeError: _expect reports the exit
                pass
            return self._expect(reply, timeout_s)

    def wait_ready(self, timeout_s: float) -> dict:
        """The device's info once it is open and configured; its error (typed) otherwise."""
        with self._talk:
            try:
                return self._expect("ready", timeout_s)[1]
            except DeviceLost as e:  # never had it: it did not open
                raise SourceError(f"{self.name} did not open: {e.reason}") from None

    def start(self, ring: RingSpec, timeout_s: float = 10.0) -> None:
        self._command(("start", ring), "started", timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._command(("stop",), "stopped", timeout_s)

    def failure(self) -> SourceError:
        """Why the process ended: its last word (DeviceLost) when it said one."""
        with self._talk:
            try:
                while self._conn.poll(0):
                    message = self._conn.recv()
                    if message[0] in ("error", "lost"):
                        return message[1]
            except (EOFError, OSError):
                pass
        return DeviceLost(self.name, f"acquisition process exited (code {self._process.exitcode})")

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the process to release the device and exit; terminate it if it does not."""
        with self._talk:
            if self._process.is_alive():
                try:
                    self._conn.send(("close",))
                except OSError:
                    pass
            self._process.join(timeout_s)
            if self._process.is_alive():
                log.warning("%s did not exit in %g s; terminating it", self.name, timeout_s)
                self._process.terminate()
                self._process.join(2.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn.close()
            self._process.close()
