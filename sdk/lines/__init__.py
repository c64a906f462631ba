"""Diffraction line imaging (Sheinin et al.): line-sensor preprocessing and the LUT decoder.

``sdk.lines.preprocess`` turns raw line-sensor scans (uint8 ``(N, R, h, Q, 3)``) into the
per-y features, validity flags, gray profiles, peaks and patches of §3.2/§4; ``sdk.lines.lut``
decodes projected-line xv with a per-ROI lookup table. Both run C++ kernels with NumPy twins.
``decoders`` runs the point CNN / line MLP bundles (and builds them), ``distill`` turns the
line MLP into a LUT, ``merge`` holds the §5 merging rules, ``reconstruct`` the structured-light
correspondence map, triangulation, depth error and PLY files.
"""
from .decoders import (LineBundles, LineDecoder, LUTLineDecoder, PointDecodeResult, PointDecoder,
                       build_line_bundles)
from .distill import colour_support, distill_line_lut, per_roi_decode, single_roi_features
from .merge import MergeResult, merge_cylindrical, merge_double_axis
from .reconstruct import (DepthError, LinePoints, correspondence_map, depth_error, read_ply,
                          triangulate_lines, write_ply)
from .lut import COMBINE_MODES, LUT_FORMAT_VERSION, LineDecodeResult, LineLUT
from .preprocess import (DARK, NO_LUT, SATURATED, SINGLE_CHANNEL, PreprocessConfig,
                         as_scan_batch, extract_patches, extract_patches_reference, find_peaks,
                         find_peaks_reference, gray_profile, gray_profile_reference,
                         line_best_path, line_features, line_features_reference, line_paths,
                         roi_means, roi_means_reference, validity, validity_reference)

__all__ = ["COMBINE_MODES", "LUT_FORMAT_VERSION", "LineDecodeResult", "LineLUT", "DARK",
           "NO_LUT", "SATURATED", "SINGLE_CHANNEL", "PreprocessConfig", "as_scan_batch",
           "extract_patches", "extract_patches_reference", "find_peaks", "find_peaks_reference",
           "gray_profile", "gray_profile_reference", "line_best_path", "line_features",
           "line_features_reference", "line_paths", "roi_means", "roi_means_reference",
           "validity", "validity_reference",
           "LineBundles", "LineDecoder", "LUTLineDecoder", "PointDecodeResult", "PointDecoder",
           "build_line_bundles", "colour_support", "distill_line_lut", "per_roi_decode",
           "single_roi_features", "MergeResult", "merge_cylindrical", "merge_double_axis",
           "DepthError", "LinePoints", "correspondence_map", "depth_error", "read_ply",
           "triangulate_lines", "write_ply"]
