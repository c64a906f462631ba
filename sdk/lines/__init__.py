"""Diffraction line imaging (Sheinin et al.): line-sensor preprocessing and the LUT decoder.

``sdk.lines.preprocess`` turns raw line-sensor scans (uint8 ``(N, R, h, Q, 3)``) into the
per-y features, validity flags, gray profiles, peaks and patches of §3.2/§4; ``sdk.lines.lut``
decodes projected-line xv with a per-ROI lookup table. Both run C++ kernels with NumPy twins.
"""
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
           "validity", "validity_reference"]
