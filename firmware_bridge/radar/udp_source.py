"""``radar+udp://HOST:PORT``: a TI mmWave out-of-box demo stream received over UDP.

The source binds HOST:PORT and reads what the radar (or a UART-to-UDP bridge) sends there;
datagrams are joined into one byte stream, so a packet may span datagrams. Port 0 binds a free
port (info["address"] says which). Option: ``rcvbuf`` socket receive buffer in bytes.
"""
from __future__ import annotations

import socket

from firmware_bridge.source import SourceURI

from .source import RadarSource

__all__ = ["UDPRadarSource"]


class UDPRadarSource(RadarSource):
    transport_options = frozenset({"rcvbuf"})

    def __init__(self, uri: SourceURI):
        self._sock: socket.socket | None = None
        super().__init__(uri)

    def _open(self, target: str, options: dict) -> dict:
        host, sep, port = target.rstrip("/").rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"radar+udp needs HOST:PORT, e.g. radar+udp://127.0.0.1:5005; got {target!r}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if "rcvbuf" in options:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(options["rcvbuf"]))
            sock.bind((host or "0.0.0.0", int(port)))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return {"device": "udp", "address": sock.getsockname()}

    def fileno(self) -> int:
        return self._sock.fileno()

    def _receive(self) -> bytes:
        try:
            return self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
