"""SFNC line-scan configuration against the recorded node-map fixture (FakeNodeMap) and against
Viky's real node map, which has no line-scan features."""
from __future__ import annotations

import copy
import json
import os

import pytest

from firmware_bridge.errors import InvalidFeatureValue
from firmware_bridge.linescan import (SIM_CAMERA_NODES, FakeNodeMap, LineScanSettings,
                                      configure_linescan, split_width)

genicam = pytest.importorskip("genicam", reason="the node-map checks use genicam.genapi")
from genicam.genapi import AccessException, OutOfRangeException  # noqa: E402


def fixture(edit=None) -> FakeNodeMap:
    with open(SIM_CAMERA_NODES) as f:
        description = json.load(f)
    if edit:
        edit(description)
    return FakeNodeMap(copy.deepcopy(description))


def drop_nodes(*names):
    def edit(d):
        d["nodes"] = [n for n in d["nodes"] if n["name"] not in names]
    return edit


def test_the_fake_behaves_like_a_genicam_node_map():
    nm = fixture()
    assert nm.Width.value == 4096 and (nm.Width.min, nm.Width.max, nm.Width.inc) == (8, 4096, 8)
    assert nm.TriggerSelector.symbolics == ("FrameStart", "LineStart")
    assert nm.AcquisitionLineRate.node.get_access_mode() == 4  # RW
    assert nm.DeviceScanType.node.get_access_mode() == 3  # RO
    with pytest.raises(AttributeError):
        nm.NoSuchFeature
    with pytest.raises(AccessException):
        nm.DeviceScanType.value = "Areascan"
    with pytest.raises(OutOfRangeException):
        nm.Width.value = 12  # not a multiple of 8
    with pytest.raises(OutOfRangeException):
        nm.TriggerSource.value = "Line9"
    nm.Width.value = 1024
    nm.OffsetX.value = 96
    assert nm.Width.max == 4096 - 96 and nm.OffsetX.max == 4096 - 1024  # the bound follows OffsetX, as SFNC's WidthMax - OffsetX
    nm.RegionSelector.value = "Region2"  # selected features hold one value per entry
    assert nm.Width.value == 8 and nm.OffsetX.value == 0
    nm.Width.value = 64
    assert nm.value_for("Width", "Region2") == 64 and nm.value_for("Width", "Region0") == 1024


def test_encoder_triggered_three_roi_configuration_is_written_in_dependency_order():
    nm = fixture()
    settings = LineScanSettings(lines_per_frame=128, rois=split_width(2056, 3), trigger="encoder",
                                encoder_divider=4, encoder_source_a="Line1", encoder_source_b="Line2")
    report = configure_linescan(nm, settings, "sim")
    assert report.complete, report
    assert nm.Height.value == 128
    assert [(nm.value_for("OffsetX", f"Region{k}"), nm.value_for("Width", f"Region{k}")) for k in range(3)] \
        == [(0, 688), (688, 688), (1376, 680)]
    assert [nm.value_for("RegionMode", f"Region{k}") for k in range(4)] == ["On", "On", "On", "Off"]
    assert nm.value_for("TriggerMode", "LineStart") == "On"
    assert nm.value_for("TriggerSource", "LineStart") == "Encoder0"
    assert nm.value_for("TriggerMode", "FrameStart") == "Off"  # the other trigger untouched
    assert (nm.value_for("EncoderSourceA", "Encoder0"), nm.value_for("EncoderSourceB", "Encoder0"),
            nm.value_for("EncoderDivider", "Encoder0")) == ("Line1", "Line2", 4)
    order = [name for name, _, _ in nm.written]
    assert order.index("TriggerSelector") < order.index("TriggerSource") < order.index("TriggerMode")
    assert nm.RegionSelector.value == "Region0"


def test_free_running_line_rate_switches_its_enable_on():
    nm = fixture()
    report = configure_linescan(nm, LineScanSettings(line_rate_hz=1743.0, width=1024), "sim")
    assert nm.AcquisitionLineRateEnable.value is True and nm.AcquisitionLineRate.value == 1743.0
    assert nm.value_for("TriggerMode", "LineStart") == "Off" and report.complete


def test_missing_features_and_entries_are_reported_and_their_dependants_skipped():
    def edit(d):
        drop_nodes("EncoderSelector", "EncoderSourceA", "EncoderSourceB", "EncoderDivider",
                   "RegionSelector", "RegionMode", "AcquisitionLineRate")(d)
        for n in d["nodes"]:
            if n["name"] == "TriggerSelector":
                n["entries"] = ["FrameStart"]
            if n["name"] in ("Width", "OffsetX"):
                n.pop("selector")
                n["value"] = n.get("values", {}).get("Region0", n["value"])
    nm = fixture(edit)
    report = configure_linescan(nm, LineScanSettings(rois=[(0, 512), (1024, 512)], trigger="encoder"), "cam")
    assert "TriggerSelector=LineStart" in report.missing
    assert any(m.startswith("TriggerSource (needs") for m in report.missing)
    assert any(m.startswith("EncoderDivider (needs") for m in report.missing)
    assert "EncoderSelector=Encoder0" not in report.missing and "EncoderSelector" in report.missing
    assert report.missing[0] == "RegionSelector (for 2 ROIs)"
    assert (nm.OffsetX.value, nm.Width.value) == (0, 1536)  # one region spanning both
    assert nm.value_for("TriggerMode", "FrameStart") == "Off"  # nothing written to the wrong trigger
    assert not report.complete and report.to_dict()["complete"] is False


def test_read_only_features_are_reported_not_writable_and_bad_values_raise():
    def edit(d):
        for n in d["nodes"]:
            if n["name"] == "AcquisitionLineRate":
                n["access"] = "RO"
    nm = fixture(edit)
    report = configure_linescan(nm, LineScanSettings(line_rate_hz=2000.0), "sim")
    assert report.not_writable == ["AcquisitionLineRate"]
    with pytest.raises(InvalidFeatureValue, match="AcquisitionLineRate"):
        configure_linescan(fixture(), LineScanSettings(line_rate_hz=1e6), "sim")
    with pytest.raises(InvalidFeatureValue, match="Height"):
        configure_linescan(fixture(), LineScanSettings(lines_per_frame=0), "sim")


def test_split_width():
    assert split_width(2056, 3) == [(0, 688), (688, 688), (1376, 680)]
    assert split_width(64, 1) == [(0, 64)]
    with pytest.raises(ValueError):
        split_width(16, 3)


def test_viky_has_no_line_scan_features_and_says_so():
    pytest.importorskip("harvesters.core")
    from firmware_bridge.camera.discovery import device_rows, harvester_session, open_acquirer

    cti = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    with harvester_session([cti]) as harvester:
        acquirer = open_acquirer(harvester, device_rows(harvester)[1])
        try:
            nm = acquirer.remote_device.node_map
            report = configure_linescan(nm, LineScanSettings(
                lines_per_frame=128, rois=[(0, 160), (160, 160)], line_rate_hz=1743.0), "Viky")
            encoder = configure_linescan(nm, LineScanSettings(lines_per_frame=128, trigger="encoder"), "Viky")
            height, width = nm.Height.value, nm.Width.value
        finally:
            acquirer.destroy()
    assert report.applied == {"Height": 128, "Width": 320}  # what Viky has is set
    assert (height, width) == (128, 320)
    assert report.missing == ["RegionSelector (for 2 ROIs)", "AcquisitionLineRate", "TriggerSelector"]
    assert encoder.missing == [
        "TriggerSelector", "TriggerMode (needs TriggerSelector=LineStart)",
        "TriggerSource (needs TriggerSelector=LineStart)", "EncoderSelector",
        "EncoderSourceA (needs EncoderSelector=Encoder0)", "EncoderSourceB (needs EncoderSelector=Encoder0)",
        "EncoderDivider (needs EncoderSelector=Encoder0)"]
