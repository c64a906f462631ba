"""Finding GenTL producers (.cti files) and the devices they expose, and opening one.

harvesters is imported inside the functions: the package imports (and other sources work)
without it.
"""
from __future__ import annotations

import contextlib
import glob
import os
import signal
import threading
from typing import Iterator, Sequence

from firmware_bridge.errors import DeviceNotFound, ProducerNotFound, SourceError

GENTL_PATH_VAR = "GENICAM_GENTL64_PATH"


def find_producers(cti: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[str]:
    """Absolute paths of the GenTL producers to load.

    ``cti``: a .cti file, a folder of them, or a list of either. Without it, every .cti in the
    folders of $GENICAM_GENTL64_PATH (os.pathsep-separated), the variable GenTL consumers share.
    Raises ProducerNotFound naming the path (or the variable) when nothing is there.
    """
    if cti:
        paths = [cti] if isinstance(cti, (str, os.PathLike)) else list(cti)
        found = []
        for path in map(os.fspath, paths):
            if os.path.isdir(path):
                in_dir = sorted(glob.glob(os.path.join(path, "*.cti")))
                if not in_dir:
                    raise ProducerNotFound(path, "folder holds no .cti file")
                found += in_dir
            elif os.path.isfile(path):
                found.append(path)
            else:
                raise ProducerNotFound(path)
        return [os.path.abspath(p) for p in found]
    folders = [d for d in os.environ.get(GENTL_PATH_VAR, "").split(os.pathsep) if d]
    found = [p for d in folders for p in sorted(glob.glob(os.path.join(d, "*.cti")))]
    if not found:
        raise ProducerNotFound(f"${GENTL_PATH_VAR}={os.environ.get(GENTL_PATH_VAR, '')!r}",
                               "no .cti file found; pass cti=... or set the variable")
    return found


@contextlib.contextmanager
def preserved_sigint() -> Iterator[None]:
    """Keep the caller's SIGINT handler: harvesters' ImageAcquirer installs its own on creation."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be (and are only) changed from the main thread
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def harvester_session(producers: Sequence[str]):
    """A harvesters Harvester with ``producers`` loaded and devices enumerated; reset on exit."""
    from harvesters.core import Harvester

    with preserved_sigint():
        harvester = Harvester()
        try:
            for path in producers:
                try:  # without check_validity harvesters skips an unloadable file with a log line
                    harvester.add_file(path, check_existence=True, check_validity=True)
                except (OSError, FileNotFoundError) as e:
                    raise ProducerNotFound(path, f"cannot be loaded: {e}") from None
            harvester.update()
            yield harvester
        finally:
            harvester.reset()


def _info(device_info, name: str):
    try:
        return getattr(device_info, name)
    except Exception:  # GenTL raises NotAvailable/NotImplemented for fields a producer lacks
        return None


def device_rows(harvester) -> list[dict]:
    """One dict per device: index, serial, id, model, vendor, user_defined_name, tl_type, producer."""
    rows = []
    for index, device_info in enumerate(harvester.device_info_list):
        try:
            producer = device_info.parent.parent.parent.path_name
        except Exception:
            producer = None
        rows.append({
            "index": index,
            "serial": _info(device_info, "serial_number"),
            "id": _info(device_info, "id_"),
            "model": _info(device_info, "model"),
            "vendor": _info(device_info, "vendor"),
            "user_defined_name": _info(device_info, "user_defined_name"),
            "tl_type": _info(device_info, "tl_type"),
            "producer": producer,
        })
    return rows


def list_devices(cti: str | os.PathLike | Sequence[str] | None = None) -> list[dict]:
    """The devices every producer exposes (see find_producers for ``cti``), as device_rows."""
    with harvester_session(find_producers(cti)) as harvester:
        return device_rows(harvester)


def device_label(row: dict) -> str:
    """How errors and info name a device: 'Viky VikyTL_DEV_green (serial 1)'."""
    name = " ".join(str(row[k]) for k in ("model", "id") if row.get(k)) or "device"
    return f"{name} (serial {row.get('serial')})"


def select_device(rows: list[dict], selector: str | int | None) -> dict:
    """The row ``selector`` names: None/"" -> the first device; an int -> that index; a string ->
    the device whose serial, id, user-defined name or (unique) model equals it, else, if it is
    all digits, that index. Raises DeviceNotFound listing what exists."""
    if selector is None or selector == "":
        if rows:
            return rows[0]
        raise DeviceNotFound("the first device", rows)
    if isinstance(selector, int):
        if 0 <= selector < len(rows):
            return rows[selector]
        raise DeviceNotFound(f"index {selector}", rows)
    for key in ("serial", "id", "user_defined_name"):
        for row in rows:
            if row[key] == selector:
                return row
    by_model = [row for row in rows if row["model"] == selector]
    if len(by_model) == 1:
        return by_model[0]
    if len(by_model) > 1:
        raise DeviceNotFound(f"model {selector!r} (several devices; name a serial)", rows)
    if selector.isdigit() and int(selector) < len(rows):
        return rows[int(selector)]
    raise DeviceNotFound(selector, rows)


def open_acquirer(harvester, row: dict):
    """harvesters' ImageAcquirer for the device ``row`` names, the caller's SIGINT handler kept."""
    from genicam.gentl import GenericException

    with preserved_sigint():
        try:
            return harvester.create(row["index"])
        except GenericException as e:
            raise SourceError(f"cannot open {device_label(row)}: {e}") from None


def bundled_producers() -> list[str]:
    """GenTL producers shipped inside installed Python packages: the ``genicam`` wheel's
    ``viky.cti`` virtual camera (three devices). Empty when the wheel is not installed."""
    try:
        import genicam
    except ImportError:
        return []
    path = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    return [path] if os.path.isfile(path) else []
