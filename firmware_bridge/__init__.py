"""Sensor and I/O adapters: cameras (GenICam), line-scan, radar, PLC. Sources are opened by URI."""
from firmware_bridge.errors import (AcquisitionTimeout, DeviceLost, DeviceNotFound,
                                    FeatureNotAvailable, FeatureNotWritable, InvalidFeatureValue,
                                    ProducerNotFound, SourceError, SourceStopped, UnknownScheme)
from firmware_bridge.source import Frame, Source, SourceStats, open_source, register_source
from firmware_bridge.camera import list_devices  # importing it registers "genicam://"
from firmware_bridge.recording import Recorder, Recording
from firmware_bridge.replay import ReplaySource  # registers "file://" (recording replay)
import firmware_bridge.linescan  # noqa: F401  registers "linescan+sim://"
import firmware_bridge.gige  # noqa: F401  registers "gige+aravis://" (Aravis imported on open)
import firmware_bridge.radar  # noqa: F401  registers "radar+udp://", "radar+serial://"

__all__ = [
    "open_source", "register_source", "list_devices", "Frame", "Source", "SourceStats",
    "SourceError", "UnknownScheme", "SourceStopped", "ProducerNotFound", "DeviceNotFound",
    "FeatureNotAvailable", "FeatureNotWritable", "InvalidFeatureValue", "AcquisitionTimeout",
    "DeviceLost", "Recorder", "Recording", "ReplaySource",
]
