"""Configuring a device through its GenICam node map, by SFNC feature name.

Values may arrive as strings (from a URI query); each is converted by the node's own type
(integer, float, enumeration, boolean, string) and checked against the node's range or entries
before it is written, so errors name the feature, the device and what is allowed.
"""
from __future__ import annotations

from typing import Any, Mapping

from firmware_bridge.camera import pixels
from firmware_bridge.errors import (FeatureNotAvailable, FeatureNotWritable, InvalidFeatureValue,
                                    SourceError)

# URI / keyword option -> SFNC feature name. Capitalised options are taken as SFNC names as-is.
ALIASES = {
    "width": "Width", "height": "Height", "offset_x": "OffsetX", "offset_y": "OffsetY",
    "pixel_format": "PixelFormat", "fps": "AcquisitionFrameRate",
    "exposure": "ExposureTime", "exposure_time": "ExposureTime", "gain": "Gain",
    "trigger_selector": "TriggerSelector", "trigger_mode": "TriggerMode",
    "trigger_source": "TriggerSource",
}

# Write order: the pixel format changes the size limits; the size bounds the offsets; exposure
# bounds the frame rate; the trigger selector picks which trigger the mode/source apply to.
ORDER = ("PixelFormat", "Width", "Height", "OffsetX", "OffsetY", "ExposureTime", "Gain",
         "AcquisitionFrameRate", "TriggerSelector", "TriggerMode", "TriggerSource")

# Features whose value is ignored until a companion switch is set (SFNC).
COMPANIONS = {
    "AcquisitionFrameRate": ("AcquisitionFrameRateEnable", True),
    "ExposureTime": ("ExposureAuto", "Off"),
    "Gain": ("GainAuto", "Off"),
}


def sfnc_name(option: str) -> str | None:
    """The SFNC feature an option names, or None when it is not a feature option."""
    if option in ALIASES:
        return ALIASES[option]
    return option if option[:1].isupper() else None


def _node(node_map, feature: str, device: str):
    from genicam.genapi import is_available, is_implemented

    try:
        node = getattr(node_map, feature)
    except AttributeError:
        raise FeatureNotAvailable(feature, device) from None
    access = node.node.get_access_mode()
    if not (is_implemented(access) and is_available(access)):
        raise FeatureNotAvailable(feature, device)
    return node


def _cast(cast, value, feature: str, device: str, expected: str):
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise InvalidFeatureValue(feature, value, expected, device) from None


def _convert(node, feature: str, value: Any, device: str):
    """``value`` as the node's type, checked against its range or entries."""
    from genicam.genapi import EInterfaceType as kind

    interface = node.node.principal_interface_type
    if interface == kind.intfIInteger:
        lo, hi, step = node.min, node.max, node.inc
        allowed = f"{lo}..{hi} in steps of {step}"
        number = _cast(int, value, feature, device, allowed)
        if not lo <= number <= hi or (step > 1 and (number - lo) % step):
            raise InvalidFeatureValue(feature, value, allowed, device)
        return number
    if interface == kind.intfIFloat:
        allowed = f"{node.min:g}..{node.max:g}"
        number = _cast(float, value, feature, device, allowed)
        if not node.min <= number <= node.max:
            raise InvalidFeatureValue(feature, value, allowed, device)
        return number
    if interface == kind.intfIEnumeration:
        symbolics = tuple(node.symbolics)
        if str(value) not in symbolics:
            raise InvalidFeatureValue(feature, value, f"one of {', '.join(symbolics)}", device)
        return str(value)
    if interface == kind.intfIBoolean:
        text = str(value).lower()
        if text not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
            raise InvalidFeatureValue(feature, value, "true or false", device)
        return text in ("1", "true", "on", "yes")
    if interface == kind.intfIString:
        return str(value)
    raise InvalidFeatureValue(feature, value, f"nothing: a {type(node).__name__} node holds no value", device)


def set_feature(node_map, feature: str, value: Any, device: str) -> None:
    """Write one feature. Raises FeatureNotAvailable, FeatureNotWritable or InvalidFeatureValue."""
    from genicam.genapi import AccessException, GenericException, OutOfRangeException, is_writable

    node = _node(node_map, feature, device)
    if not is_writable(node.node.get_access_mode()):
        raise FeatureNotWritable(feature, device)
    converted = _convert(node, feature, value, device)
    try:
        node.value = converted
    except OutOfRangeException as e:
        raise InvalidFeatureValue(feature, value, str(e).split(" : ")[0], device) from None
    except AccessException:
        raise FeatureNotWritable(feature, device) from None
    except GenericException as e:
        raise SourceError(f"writing {feature}={value!r} on {device} failed: {e}") from None


def read_feature(node_map, feature: str, default=None):
    """A feature's current value, or ``default`` when the device lacks it or it is unreadable."""
    from genicam.genapi import is_readable

    try:
        node = getattr(node_map, feature)
        return node.value if is_readable(node.node.get_access_mode()) else default
    except Exception:  # absent node (AttributeError) or a GenICam read error
        return default


def configure(node_map, features: Mapping[str, Any], device: str) -> None:
    """Write ``features`` (SFNC name -> value) in dependency order, each with its companion switch.

    Offsets are zeroed before a size grows: Width's maximum is WidthMax - OffsetX.
    """
    ranked = sorted(features.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER))
    for size, offset in (("Width", "OffsetX"), ("Height", "OffsetY")):
        if size in features and read_feature(node_map, offset, 0):
            set_feature(node_map, offset, 0, device)
    for feature, value in ranked:
        if feature in COMPANIONS:
            switch, on = COMPANIONS[feature]
            if read_feature(node_map, switch) not in (None, on):
                set_feature(node_map, switch, on, device)
        set_feature(node_map, feature, value, device)


def geometry(node_map, device: str) -> dict:
    """Width, height and pixel format as configured; the pixel format must be one pixels.py maps."""
    pixel_format = read_feature(node_map, "PixelFormat")
    width, height = read_feature(node_map, "Width"), read_feature(node_map, "Height")
    if width is None or height is None or pixel_format is None:
        raise FeatureNotAvailable("Width/Height/PixelFormat", device)
    if not pixels.supported(pixel_format):
        offered = [s for s in getattr(node_map, "PixelFormat").symbolics if pixels.supported(s)]
        raise InvalidFeatureValue("PixelFormat", pixel_format,
                                  f"one of {', '.join(offered) or 'none this device offers'}", device)
    return {"width": int(width), "height": int(height), "pixel_format": pixel_format}
