"""The conveyor scanner: objects tracked by encoder position, classified, rejected at the gate.

``ConveyorScanner`` wires a line-scan source, a ``ProfileExtractor`` (frame -> LineProfiles),
the ``ObjectTracker``, a height-map classifier and the ``RejectScheduler`` to a PLC
(``firmware_bridge.plc.PlcClient``). See scanner.py for the flow and tracker.py / scheduler.py
for the rules (unmeasured objects, late and stale decisions).
"""
from .scanner import (ConveyorScanner, EngineClassifier, HeightCodedExtractor, LutTriangulationExtractor,
                      ProfileExtractor, ReplayResult, ScannerConfig, ScannerStats, replay)
from .scheduler import STATUSES, Decision, RejectScheduler
from .tracker import HEIGHT_MAP_SCALE_MM, LineProfile, ObjectTracker, TrackedObject, height_map

__all__ = ["ConveyorScanner", "EngineClassifier", "HeightCodedExtractor", "LutTriangulationExtractor",
           "ProfileExtractor", "ReplayResult", "ScannerConfig", "ScannerStats", "replay", "STATUSES",
           "Decision", "RejectScheduler", "HEIGHT_MAP_SCALE_MM", "LineProfile", "ObjectTracker",
           "TrackedObject", "height_map"]
