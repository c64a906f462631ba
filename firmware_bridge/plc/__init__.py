"""The PLC side of the conveyor scanner: Modbus TCP client (reject gate, encoder, heartbeat,
fail-safe), encoder tracking, and a simulated PLC + belt for tests and benchmarks.

pymodbus is pinned to 3.7.x: its client/server API changes between minor versions.
"""
from .encoder import ENCODER_MODULUS, EncoderEvent, EncoderTracker
from .modbus import STATUS_DEGRADED, STATUS_RUNNING, PlcClient, PlcStats, PlcStatus, PlcUnreachable, RegisterMap

__all__ = ["ENCODER_MODULUS", "EncoderEvent", "EncoderTracker", "PlcClient", "PlcStats", "PlcStatus",
           "PlcUnreachable", "RegisterMap", "STATUS_RUNNING", "STATUS_DEGRADED"]
