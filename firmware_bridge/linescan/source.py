"""LineScanSimSource: the simulated line-scan camera as a Source.

    linescan+sim://?rate=1743&width=2056&rois=3&lines_per_frame=64

    rate             free-running line rate, lines/s (AcquisitionLineRate; default 1743)
    width            sensor pixels covered by the ROIs, from offset 0 (default 2056)
    rois             number of adjacent ROIs splitting ``width`` (RegionSelector; default 1)
    lines_per_frame  Height: lines per frame (default 64)
    trigger          "free" (default), "encoder" (LineStart from Encoder0) or "line"
    encoder_hz       simulated encoder pulse rate under trigger=encoder|line (default 20000)
    divider          EncoderDivider: encoder pulses per line (default 1)
    buffer_lines     host line buffer; a reader further behind loses lines (default 4096)
    timeout          default read() timeout, s (default 2)

Keyword arguments of ``open_source`` may also pass ``line_generator=`` (a callable, see sim.py)
and ``node_map=`` (a FakeNodeMap) — how a physical simulator plugs in.

A Frame is (lines_per_frame, ΣROI widths, 3) RGB8: the ROIs side by side, as multi-ROI
line-scan cameras send them. ``frame_id`` = first line id // lines_per_frame; meta holds
``line_ids``, ``line_timestamps_ns`` (device clock), ``line_valid``, ``lines_missing`` and
``rois`` ([{"region", "offset_x", "width", "column"}]); ``split_rois(frame)`` cuts them apart.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from firmware_bridge.errors import AcquisitionTimeout, SourceStopped
from firmware_bridge.linescan.assembler import AssembledFrame, LineAssembler
from firmware_bridge.linescan.features import LineScanSettings, configure_linescan, split_width
from firmware_bridge.linescan.sim import SimulatedLineScanCamera
from firmware_bridge.source import DeliveryRate, Frame, Source, SourceStats, SourceURI

log = logging.getLogger(__name__)

__all__ = ["LineScanSimSource", "LineScanStats", "split_rois"]

_OPTIONS = {"rate", "width", "rois", "lines_per_frame", "trigger", "encoder_hz", "divider",
            "buffer_lines", "timeout", "line_generator", "node_map"}


@dataclass
class LineScanStats(SourceStats):
    lines_acquired: int = 0
    """Lines that reached the reader."""
    lines_dropped: int = 0
    """Lines lost (line ids skipped): the reader lagged and the line buffer overflowed."""
    incomplete_frames: int = 0
    """Delivered frames with at least one lost line (zero rows, line_valid False)."""
    last_line_id: int = -1
    """The newest line id that reached the reader: lines_acquired + lines_dropped = last_line_id + 1."""


def split_rois(frame: Frame) -> list[np.ndarray]:
    """The ROIs of a line-scan frame as (H, width_k, 3) views."""
    return [frame.data[:, r["column"]:r["column"] + r["width"]] for r in frame.meta["rois"]]


class LineScanSimSource(Source):
    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        options = dict(uri.options)
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ValueError(f"unknown linescan option(s) {', '.join(sorted(unknown))}; "
                             f"options: {', '.join(sorted(_OPTIONS))}")
        width, rois = int(options.get("width", 2056)), int(options.get("rois", 1))
        settings = LineScanSettings(
            lines_per_frame=int(options.get("lines_per_frame", 64)),
            rois=split_width(width, rois), line_rate_hz=float(options.get("rate", 1743)),
            trigger=str(options.get("trigger", "free")), encoder_divider=int(options.get("divider", 1)),
            pixel_format="RGB8")
        self.default_timeout_s = float(options.get("timeout", 2.0))
        self.camera = SimulatedLineScanCamera(
            options.get("node_map"), line_generator=options.get("line_generator"),
            buffer_lines=int(options.get("buffer_lines", 4096)),
            encoder_hz=float(options.get("encoder_hz", 20000.0)))
        device = self.camera.node_map.device.get("model", "simulated line-scan camera")
        self.configuration = configure_linescan(self.camera.node_map, settings, device)
        if self.configuration.missing or self.configuration.not_writable:
            log.warning("%s: line-scan features missing %s, not writable %s", uri.text,
                        self.configuration.missing, self.configuration.not_writable)
        self.lines_per_frame = settings.lines_per_frame
        self._assembler: LineAssembler | None = None
        self._ready: list[AssembledFrame] = []
        self._delivered = self._timeouts = self._discarded = self._incomplete = 0
        self._retired = {"lines_received": 0, "lines_dropped": 0, "frames_missing": 0}
        self._rate = DeliveryRate()
        self._last_line_id = -1

    def _rois(self) -> list[dict]:
        column, out = 0, []
        for k, (offset, width) in enumerate(self.camera.regions()):
            out.append({"region": f"Region{k}", "offset_x": offset, "width": width, "column": column})
            column += width
        return out

    def _start(self) -> None:
        first = self.camera.produced  # the line counter goes on across stop/start
        # lines the camera produced before the stop that no reader took: dropped, and counted
        self._retired["lines_dropped"] += self.camera.discard_unread()
        self.camera.start()
        self._roi_meta = self._rois()
        self._assembler = LineAssembler(self.lines_per_frame, self.camera.width, first_line_id=first)
        self._ready = []

    def _stop(self) -> None:
        self.camera.stop()
        asm = self._assembler
        if asm is not None:
            # Lines that reached the host but no reader: the unread buffer and the partial frame.
            self._discarded += len(self._ready) + (asm.flush() is not None)
            for key in self._retired:
                self._retired[key] += getattr(asm, key)
            self._ready, self._assembler = [], None

    def _close(self) -> None:
        self.camera.stop()

    def _read(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            asm = self._assembler  # stop() from another thread may retire it meanwhile
            if not self.streaming or asm is None:
                raise SourceStopped(f"{self.uri} is stopped")
            lines = self.camera.take(self.lines_per_frame, min(0.1, max(0.0, deadline - time.monotonic())))
            if lines is not None:
                self._ready.extend(asm.add(*lines))
                self._last_line_id = int(lines[0][-1])
            elif time.monotonic() >= deadline:
                self._timeouts += 1
                raise AcquisitionTimeout(timeout_s, self.uri)
        return self._frame(self._ready.pop(0))

    def _frame(self, assembled: AssembledFrame) -> Frame:
        self._delivered += 1
        self._incomplete += assembled.lines_missing > 0
        self._rate.tick(time.monotonic_ns())
        valid = assembled.line_timestamps_ns[assembled.line_valid]
        return Frame(data=assembled.rows, frame_id=assembled.index,
                     host_timestamp_ns=assembled.host_timestamp_ns,
                     device_timestamp_ns=int(valid[0]) if len(valid) else None,
                     pixel_format="RGB8", source=self.uri,
                     meta={"line_ids": assembled.line_ids, "line_timestamps_ns": assembled.line_timestamps_ns,
                           "line_valid": assembled.line_valid, "lines_missing": assembled.lines_missing,
                           "rois": self._roi_meta})

    @property
    def info(self) -> dict:
        nm = self.camera.node_map
        return {"device": nm.device.get("model"), "serial": nm.device.get("serial"), "uri": self.uri,
                "scan_type": "Linescan", "pixel_format": "RGB8", "lines_per_frame": self.lines_per_frame,
                "width": sum(w for _, w in self.camera.regions()), "height": self.lines_per_frame,
                "rois": self._rois(), "line_rate_hz": self.camera.line_rate_hz(),
                "configuration": self.configuration.to_dict()}

    @property
    def stats(self) -> LineScanStats:
        asm = self._assembler
        live = {k: getattr(asm, k) if asm is not None else 0 for k in self._retired}
        total = {k: self._retired[k] + live[k] for k in self._retired}
        return LineScanStats(delivered=self._delivered, dropped=self._discarded,
                             missing=total["frames_missing"], timeouts=self._timeouts,
                             fps=self._rate.fps(), acquired=self._delivered + self._discarded + len(self._ready),
                             lines_acquired=total["lines_received"], lines_dropped=total["lines_dropped"],
                             incomplete_frames=self._incomplete, last_line_id=self._last_line_id)
