"""Physical simulator of diffraction line imaging (Sheinin et al., ECCV 2020): training and test
data for the decoders in ``sdk/lines`` — no line camera is attached here.

    optics.py            DiffractionCamera: grating equation with the conical y term (Eqs. 1–7),
                         affine G (Eq. 4), multi-ROI exit angles (§4), RGB response and the
                         8-bit sensor (Eq. 8); ``paper_conditions()`` is the report's preset
    spectra.py           source spectra s(λ): white/warm LED, halogen, daylight
    points.py            sparse point sources (§3.2): render_points, make_point_dataset; §5's
                         cylindrical-lens sensor and double-axis grating
    structured_light.py  LightPlaneRig (triangulate/project), render_line_scan, make_line_dataset
                         (§6 white-wall calibration sweep; an objects test variant)
    conveyor.py          boxes and cylinders with defects on a moving belt (§7, 1743 lines/s)
    generator.py         DiffractionLineGenerator: the simulator as a linescan+sim line generator

Layout everywhere: one exposure = (R, h, Q, 3) uint8 (ROIs, rows per ROI, pixels along the
sensor's y axis, RGB); batches (N, R, h, Q, 3).
"""
from firmware_bridge.linescan.diffraction.conveyor import (DEFECT_KINDS, Box, ConveyorScene, Cylinder, Defect,
                                                           random_conveyor_scene)
from firmware_bridge.linescan.diffraction.generator import DiffractionLineGenerator
from firmware_bridge.linescan.diffraction.optics import VISIBLE_BAND_NM, DiffractionCamera, spectral_response
from firmware_bridge.linescan.diffraction.points import (TRUTH_DTYPE, DoubleAxisCamera, PointDataset, PointSource,
                                                         make_point_dataset, render_cylindrical, render_point_batch,
                                                         render_points, sample_point_sources)
from firmware_bridge.linescan.diffraction.spectra import SPECTRA, spectrum_names
from firmware_bridge.linescan.diffraction.structured_light import (HeightField, LightPlaneRig, LineDataset,
                                                                   LineTruth, Wall, make_line_dataset,
                                                                   render_line_scan)

__all__ = ["DiffractionCamera", "spectral_response", "VISIBLE_BAND_NM", "SPECTRA", "spectrum_names",
           "PointSource", "PointDataset", "TRUTH_DTYPE", "sample_point_sources", "render_points",
           "render_point_batch", "make_point_dataset", "render_cylindrical", "DoubleAxisCamera",
           "LightPlaneRig", "Wall", "HeightField", "LineTruth", "LineDataset", "render_line_scan", "make_line_dataset",
           "Box", "Cylinder", "Defect", "DEFECT_KINDS", "ConveyorScene", "random_conveyor_scene",
           "DiffractionLineGenerator"]
