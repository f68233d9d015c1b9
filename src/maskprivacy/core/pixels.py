"""Pixels as the stages read them: 8 bits a channel, whatever an image stores."""

from __future__ import annotations

import numpy as np
from PIL import Image

WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # more than 8 bits a pixel


def eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey image scaled to 8-bit grey (``L``): to 0-255 from 0-65535,
    or from its own maximum where that is higher; left as it is where its values fit 0-255.
    Pillow's own conversion clips at 255 instead, which turns a 16-bit photo white. Any other
    mode is returned unchanged."""
    if im.mode not in WIDE_MODES:
        return im
    arr = np.asarray(im, dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top > 255:
        arr = arr * (255.0 / (65535.0 if top <= 65535 else top))
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")
