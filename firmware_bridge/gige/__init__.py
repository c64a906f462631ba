"""GigE Vision cameras through Aravis, over the real protocol: ``open_source("gige+aravis://<ip|id>")``.

    aravis.py  importing Aravis's GObject bindings (PyGObject + gir1.2-aravis-0.8)
    source.py  AravisSource, the Source the "gige+aravis" scheme opens
    fake.py    ``python -m firmware_bridge.gige.fake``: Aravis's GigE Vision fake camera on loopback

Aravis (not harvesters) because Debian ships it with a GigE Vision fake camera: a second peer
speaking GVCP/GVSP over UDP, where Viky is an in-process GenTL producer.
"""
from firmware_bridge.gige.source import AravisSource
from firmware_bridge.source import register_source

register_source("gige+aravis", AravisSource)

__all__ = ["AravisSource"]
