"""PFNC pixel formats -> NumPy image shapes, as reshaped views (no copies).

Only byte-per-channel formats are listed: they map onto (H, W) or (H, W, C) uint8 without
unpacking. Bayer formats stay mosaiced (H, W); demosaicing is the model's preprocessing.
"""
from __future__ import annotations

import numpy as np

# PFNC name -> channels per pixel (one uint8 each); 1 means a 2-D (H, W) image.
CHANNELS: dict[str, int] = {
    "Mono8": 1,
    "BayerRG8": 1, "BayerGB8": 1, "BayerGR8": 1, "BayerBG8": 1,
    "RGB8": 3, "BGR8": 3,
    "RGBa8": 4, "BGRa8": 4,
}


def supported(pixel_format: str) -> bool:
    return pixel_format in CHANNELS


def image_shape(pixel_format: str, width: int, height: int) -> tuple[int, ...]:
    """(H, W) for one-channel formats, (H, W, C) otherwise."""
    channels = CHANNELS[pixel_format]
    return (height, width) if channels == 1 else (height, width, channels)


def image_nbytes(pixel_format: str, width: int, height: int) -> int:
    return width * height * CHANNELS[pixel_format]


def as_image(raw: np.ndarray, pixel_format: str, width: int, height: int) -> np.ndarray:
    """View ``raw`` (a 1-D uint8 buffer at least image_nbytes long) as the image it holds."""
    nbytes = image_nbytes(pixel_format, width, height)
    return raw[:nbytes].reshape(image_shape(pixel_format, width, height))
