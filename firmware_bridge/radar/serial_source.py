"""``radar+serial:///dev/ttyACM1``: a TI mmWave out-of-box demo stream from its UART data port.

The device file is opened with os.open and set to raw 8N1 at ``baud`` (default 921600, the
demo's data port rate) with termios, so pyserial is not needed; a pseudo-terminal works the
same way (the tests use one).
"""
from __future__ import annotations

import os

from firmware_bridge.errors import DeviceLost
from firmware_bridge.source import SourceURI

from .source import RadarSource

__all__ = ["SerialRadarSource"]


class SerialRadarSource(RadarSource):
    transport_options = frozenset({"baud"})

    def __init__(self, uri: SourceURI):
        self._fd: int | None = None
        super().__init__(uri)

    def _open(self, target: str, options: dict) -> dict:
        if not target:
            raise ValueError("radar+serial needs a device path, e.g. radar+serial:///dev/ttyACM1")
        import termios  # POSIX only; imported here so that importing the package works anywhere
        import tty

        baud = int(options.get("baud", 921600))
        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise ValueError(f"baud={baud} is not a rate this system's termios knows")
        fd = os.open(target, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return {"device": target, "baud": baud}

    def fileno(self) -> int:
        return self._fd

    def _receive(self) -> bytes:
        try:
            return os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:   # EIO: the port (or the pty's other side) went away
            raise DeviceLost(self._info.get("device", self.uri), str(e)) from None

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
