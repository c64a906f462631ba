"""Aravis's GObject-introspection bindings, imported on demand.

Debian packages them as python3-gi + gir1.2-aravis-0.8 (``apt-get install gir1.2-aravis-0.8
python3-gi``) for the system Python; a virtualenv of the same Python minor version can use them,
so when ``gi`` is not importable the system's dist-packages folder is tried as a fallback.
"""
from __future__ import annotations

import sys

from firmware_bridge.errors import SourceError

_SYSTEM_GI = "/usr/lib/python3/dist-packages"


def aravis():
    """The ``gi.repository.Aravis`` module; SourceError saying what to install when missing."""
    try:
        import gi
    except ImportError:
        if _SYSTEM_GI not in sys.path:
            sys.path.append(_SYSTEM_GI)
        try:
            import gi
        except ImportError:
            raise SourceError("gige+aravis:// needs PyGObject and Aravis: "
                              "apt-get install python3-gi gir1.2-aravis-0.8") from None
    try:
        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ValueError, ImportError) as e:
        raise SourceError(f"gige+aravis:// needs Aravis 0.8's introspection data "
                          f"(apt-get install gir1.2-aravis-0.8): {e}") from None
    return Aravis


def available() -> bool:
    try:
        aravis()
    except SourceError:
        return False
    return True
