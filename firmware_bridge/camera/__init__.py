"""GenICam cameras through harvesters: ``open_source("genicam://<serial>?cti=...")``.

    discovery.py    GenTL producers (.cti) and the devices they expose; opening one
    features.py     writing SFNC features (Width, PixelFormat, ExposureTime, ...) with checks
    acquisition.py  the process that owns the device and fetches frames into the ring
    ring.py         the shared-memory ring of frame slots between the two processes
    pixels.py       PFNC pixel formats -> (H, W) / (H, W, C) uint8 views
    source.py       CameraSource, the Source the "genicam" scheme opens
"""
from firmware_bridge.camera.discovery import find_producers, list_devices
from firmware_bridge.camera.source import CameraSource
from firmware_bridge.source import register_source

register_source("genicam", CameraSource)

__all__ = ["CameraSource", "find_producers", "list_devices"]
