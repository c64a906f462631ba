"""A node map built from a JSON description, behaving like genicam's (as harvesters returns it).

No virtual GenTL producer offers line-scan features, so the line-scan configuration is tested
against this fake, and the simulated device (``sim.py``) is configured through it. What it copies
from ``genicam.genapi`` node maps, because ``camera.features`` relies on it:

- features are attributes (``node_map.Width``); a missing one raises AttributeError;
- ``.value`` reads/writes; ``.min``/``.max``/``.inc`` (Integer, Float), ``.symbolics`` (Enumeration);
- ``.node.get_access_mode()`` -> EAccessMode as int (NI 0, NA 1, WO 2, RO 3, RW 4) and
  ``.node.principal_interface_type`` -> EInterfaceType as int (Integer 2, Boolean 3, Command 4,
  Float 5, String 6, Enumeration 9);
- writing a read-only node raises genapi's AccessException, a value out of range or not an entry
  raises OutOfRangeException (plain ValueError/PermissionError when genicam is not installed);
- a node with ``"selector": "RegionSelector"`` holds one value per entry of that selector, as
  SFNC's selected features (Width under RegionSelector, TriggerMode under TriggerSelector, ...).

JSON: ``{"device": {...}, "nodes": [{"name", "type", "access", "value", "min", "max", "inc",
"entries", "selector", "values": {selector entry: value}}, ...]}``.
"""
from __future__ import annotations

import json
import os
from typing import Any

ACCESS = {"NI": 0, "NA": 1, "WO": 2, "RO": 3, "RW": 4}
INTERFACE = {"Integer": 2, "Boolean": 3, "Command": 4, "Float": 5, "String": 6, "Enumeration": 9}


def _errors():
    try:
        from genicam.genapi import AccessException, OutOfRangeException
        return AccessException, OutOfRangeException
    except ImportError:
        return PermissionError, ValueError


class _Interface:
    """What ``node.node`` gives in genicam: access mode and interface type."""

    def __init__(self, spec: dict):
        self._spec = spec
        self.principal_interface_type = INTERFACE[spec["type"]]

    def get_access_mode(self) -> int:
        return ACCESS[self._spec.get("access", "RW")]


class FakeNode:
    def __init__(self, spec: dict, node_map: "FakeNodeMap"):
        self._spec, self._map = spec, node_map
        self.node = _Interface(spec)
        default = spec.get("value")
        self._values: dict[str, Any] = dict(spec.get("values", {}))
        self._default = default

    @property
    def _key(self) -> str:
        selector = self._spec.get("selector")
        return getattr(self._map, selector).value if selector else ""

    @property
    def value(self):
        if self.node.get_access_mode() in (ACCESS["NI"], ACCESS["NA"], ACCESS["WO"]):
            raise _errors()[0](f"{self._spec['name']} is not readable")
        return self._values.get(self._key, self._default)

    @value.setter
    def value(self, value) -> None:
        access_error, range_error = _errors()
        name, kind = self._spec["name"], self._spec["type"]
        if self.node.get_access_mode() not in (ACCESS["RW"], ACCESS["WO"]):
            raise access_error(f"{name} is not writable")
        if kind in ("Integer", "Float"):
            lo, hi = self.min, self.max
            if not lo <= value <= hi or (kind == "Integer" and (value - lo) % self.inc):
                raise range_error(f"{name}={value} outside {lo}..{hi} step {self.inc}")
        if kind == "Enumeration" and value not in self.symbolics:
            raise range_error(f"{name}={value} is not one of {self.symbolics}")
        self._values[self._key] = value
        self._map.written.append((name, self._key, value))

    @property
    def min(self):
        return self._bound("min")

    @property
    def max(self):
        return self._bound("max")

    def _bound(self, which: str):
        """A number, or the name of a node whose value it is (SFNC: Width max = WidthMax - OffsetX)."""
        bound = self._spec[which]
        if isinstance(bound, str):
            expr = bound.replace(" ", "")
            if "-" in expr:
                a, b = expr.split("-")
                return getattr(self._map, a).value - getattr(self._map, b).value
            return getattr(self._map, expr).value
        return bound

    @property
    def inc(self):
        return self._spec.get("inc", 1)

    @property
    def symbolics(self) -> tuple[str, ...]:
        return tuple(self._spec.get("entries", ()))

    def __repr__(self) -> str:
        return f"<FakeNode {self._spec['name']} {self._spec['type']} {self._spec.get('access', 'RW')}>"


class FakeNodeMap:
    """``FakeNodeMap.from_json(path)``; ``written`` lists (feature, selector entry, value) in order."""

    def __init__(self, description: dict):
        self.device = dict(description.get("device", {}))
        self._nodes = {spec["name"]: FakeNode(spec, self) for spec in description["nodes"]}
        self.written: list[tuple[str, str, Any]] = []

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "FakeNodeMap":
        with open(path) as f:
            return cls(json.load(f))

    def __getattr__(self, name: str) -> FakeNode:
        nodes = self.__dict__.get("_nodes", {})
        if name in nodes:
            return nodes[name]
        raise AttributeError(name)

    def __dir__(self):
        return list(self._nodes)

    def value_for(self, feature: str, selector_entry: str) -> Any:
        """The value a selected feature holds for one selector entry (without touching the selector)."""
        node = self._nodes[feature]
        return node._values.get(selector_entry, node._default)


SIM_CAMERA_NODES = os.path.join(os.path.dirname(__file__), "sim_camera_nodes.json")
