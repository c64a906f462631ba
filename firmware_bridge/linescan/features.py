"""Configuring line-scan acquisition through SFNC features, on any genicam-like node map.

A line-scan device builds each frame from ``Height`` lines; lines come free-running at
``AcquisitionLineRate`` or, with ``TriggerSelector=LineStart``, one per trigger — typically from a
shaft encoder (``TriggerSource=Encoder0``; ``EncoderSelector``, ``EncoderSourceA/B``,
``EncoderDivider`` pulses per line). Several ROIs along the line are regions
(``RegionSelector=RegionN``, ``RegionMode=On``, each with its own ``Width``/``OffsetX``).

``configure_linescan`` writes what the device has and reports the rest: a feature the node map
lacks, or an enumeration entry it does not offer (e.g. Viky has no ``LineStart`` trigger), goes to
``report.missing``, and the features that depend on it (TriggerMode/TriggerSource need the
LineStart selector) are skipped and reported too, so nothing is written to the wrong selector.
Values out of a feature's range still raise InvalidFeatureValue: that is the caller's mistake.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.camera.features import read_feature, set_feature
from firmware_bridge.errors import FeatureNotAvailable, FeatureNotWritable, InvalidFeatureValue

__all__ = ["LineScanSettings", "LineScanReport", "configure_linescan", "split_width"]

TRIGGERS = ("free", "encoder", "line")


def split_width(width: int, rois: int, inc: int = 8) -> list[tuple[int, int]]:
    """``rois`` adjacent regions covering ``width`` pixels: [(offset_x, width), ...], each a
    multiple of ``inc`` except possibly the last (which takes the remainder)."""
    if rois < 1 or width < rois * inc:
        raise ValueError(f"cannot split {width} px into {rois} ROIs of at least {inc} px")
    units, extra = divmod(width // inc, rois)
    widths = [(units + (1 if k < extra else 0)) * inc for k in range(rois)]
    widths[-1] += width - sum(widths)
    offsets = [sum(widths[:k]) for k in range(rois)]
    return list(zip(offsets, widths))


@dataclass
class LineScanSettings:
    """What to configure. ``rois``: [(offset_x, width)] in sensor pixels; None: one ROI of
    ``width`` at offset 0 (``width`` None: leave the device's)."""

    lines_per_frame: int = 64
    width: int | None = None
    rois: list[tuple[int, int]] | None = None
    line_rate_hz: float | None = None
    """Free-running line rate (AcquisitionLineRate); ignored by the device under a LineStart trigger."""
    trigger: str = "free"
    """"free" (TriggerMode=Off for LineStart), "encoder" (lines from an encoder) or "line" (an I/O line)."""
    trigger_line: str = "Line1"
    encoder: str = "Encoder0"
    encoder_source_a: str = "Line1"
    encoder_source_b: str = "Line2"
    encoder_divider: int = 1
    pixel_format: str | None = None

    def regions(self) -> list[tuple[int, int]] | None:
        if self.rois is not None:
            return list(self.rois)
        return None if self.width is None else [(0, self.width)]


@dataclass
class LineScanReport:
    """What configure_linescan did: ``applied`` (feature or feature[selector entry] -> value),
    ``missing`` and ``not_writable`` (names, with ``=value`` for an absent enumeration entry)."""

    device: str
    applied: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    not_writable: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every requested line-scan feature was written."""
        return not self.missing and not self.not_writable

    def to_dict(self) -> dict:
        return {"device": self.device, "applied": dict(self.applied), "missing": list(self.missing),
                "not_writable": list(self.not_writable), "complete": self.complete}


class _Writer:
    def __init__(self, node_map, report: LineScanReport):
        self.node_map, self.report = node_map, report

    def set(self, feature: str, value: Any, label: str | None = None) -> bool:
        """Write one feature; False (reported) when the device lacks it, its entry, or write access."""
        label = label or feature
        try:
            set_feature(self.node_map, feature, value, self.report.device)
        except FeatureNotAvailable:
            self.report.missing.append(label)
            return False
        except FeatureNotWritable:
            self.report.not_writable.append(label)
            return False
        except InvalidFeatureValue as e:
            if isinstance(value, str) and e.allowed.startswith("one of"):  # entry not offered
                self.report.missing.append(f"{label}={value}")
                return False
            raise
        self.report.applied[label] = value
        return True

    def skip(self, features: tuple[str, ...], because: str) -> None:
        self.report.missing.extend(f"{f} (needs {because})" for f in features)


def configure_linescan(node_map, settings: LineScanSettings, device: str) -> LineScanReport:
    """Write ``settings`` in dependency order; returns what was applied and what the device lacks."""
    if settings.trigger not in TRIGGERS:
        raise ValueError(f"trigger={settings.trigger!r}: use one of {', '.join(TRIGGERS)}")
    report = LineScanReport(device)
    w = _Writer(node_map, report)
    if settings.pixel_format is not None:
        w.set("PixelFormat", settings.pixel_format)
    w.set("Height", settings.lines_per_frame)
    _configure_regions(w, settings.regions())

    if settings.trigger == "free" and settings.line_rate_hz is not None:
        if read_feature(node_map, "AcquisitionLineRateEnable") is False:
            w.set("AcquisitionLineRateEnable", True)
        w.set("AcquisitionLineRate", settings.line_rate_hz)

    if w.set("TriggerSelector", "LineStart"):
        if settings.trigger == "free":
            w.set("TriggerMode", "Off", "TriggerMode[LineStart]")
        else:
            source = settings.encoder if settings.trigger == "encoder" else settings.trigger_line
            w.set("TriggerSource", source, "TriggerSource[LineStart]")
            w.set("TriggerMode", "On", "TriggerMode[LineStart]")
    elif settings.trigger != "free":
        w.skip(("TriggerMode", "TriggerSource"), "TriggerSelector=LineStart")

    if settings.trigger == "encoder":
        if w.set("EncoderSelector", settings.encoder):
            for feature, value in (("EncoderSourceA", settings.encoder_source_a),
                                   ("EncoderSourceB", settings.encoder_source_b),
                                   ("EncoderDivider", settings.encoder_divider)):
                w.set(feature, value, f"{feature}[{settings.encoder}]")
        else:
            w.skip(("EncoderSourceA", "EncoderSourceB", "EncoderDivider"), f"EncoderSelector={settings.encoder}")
    return report


def _configure_regions(w: _Writer, regions: list[tuple[int, int]] | None) -> None:
    if regions is None:
        return
    node_map = w.node_map
    has_selector = read_feature(node_map, "RegionSelector") is not None
    if len(regions) > 1 and not has_selector:
        w.report.missing.append(f"RegionSelector (for {len(regions)} ROIs)")
        # One region spanning them all keeps every requested pixel.
        start, end = min(o for o, _ in regions), max(o + n for o, n in regions)
        regions = [(start, end - start)]
    for k, (offset, width) in enumerate(regions):
        tag = f"[Region{k}]" if has_selector else ""
        if has_selector:
            if not w.set("RegionSelector", f"Region{k}"):
                return
            w.set("RegionMode", "On", f"RegionMode{tag}")
        # Offset first to 0 so a larger Width fits (Width max = WidthMax - OffsetX).
        if read_feature(node_map, "OffsetX", 0):
            w.set("OffsetX", 0, f"OffsetX{tag}")
        w.set("Width", width, f"Width{tag}")
        if offset or read_feature(node_map, "OffsetX") is not None:
            w.set("OffsetX", offset, f"OffsetX{tag}")
    if has_selector:  # later regions off, and leave the selector on Region0
        entries = tuple(getattr(node_map, "RegionSelector").symbolics)
        for name in entries[len(regions):]:
            w.set("RegionSelector", name)
            w.set("RegionMode", "Off", f"RegionMode[{name}]")
        w.set("RegionSelector", "Region0")
