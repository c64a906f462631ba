"""Sensor and I/O adapters: cameras (GenICam), line-scan, radar, PLC. Sources are opened by URI."""
