"""Line-scan acquisition: lines assembled into fixed-height frames, several ROIs, line timestamps.

    open_source("linescan+sim://?rate=1743&width=2056&rois=3&lines_per_frame=64")

    features.py   SFNC line-scan configuration (AcquisitionLineRate, LineStart trigger, encoder,
                  RegionSelector ROIs) on any genicam-like node map; reports what a device lacks
    assembler.py  lines -> frames of Height lines; lost lines counted, rows kept in place
    sim.py        the simulated camera: node map, line clock, host line buffer, line generator
    nodemap.py    a genicam-like node map built from JSON (sim_camera_nodes.json: the sim's)
    source.py     LineScanSimSource, the Source the "linescan+sim" scheme opens
"""
from firmware_bridge.linescan.assembler import LineAssembler
from firmware_bridge.linescan.features import (LineScanReport, LineScanSettings, configure_linescan,
                                               split_width)
from firmware_bridge.linescan.nodemap import SIM_CAMERA_NODES, FakeNodeMap
from firmware_bridge.linescan.sim import SimulatedLineScanCamera, decode_line_ids, moving_pattern
from firmware_bridge.linescan.source import LineScanSimSource, LineScanStats, split_rois
from firmware_bridge.source import register_source

register_source("linescan+sim", LineScanSimSource)

__all__ = ["LineScanSimSource", "LineScanStats", "LineScanSettings", "LineScanReport",
           "configure_linescan", "split_width", "split_rois", "LineAssembler", "FakeNodeMap",
           "SIM_CAMERA_NODES", "SimulatedLineScanCamera", "moving_pattern", "decode_line_ids"]
