"""Reading and writing depth images as single-channel PNGs, and the float scale the network sees.

Two file formats are accepted:
  * 16-bit PNG, 1 unit = 0.1 mm (the project's convention, see README "The convention"),
  * 8-bit PNG, 1 unit = 0.5 mm (the original research format: 0..255 grey levels).
Both map to the same float scale for the network: 1.0 = FULL_SCALE_MM millimetres above the back plane,
so that an 8-bit value v becomes exactly v / 255 and the neutral nose tip (about 120 mm) sits near 0.94.
"""
import os

import cv2
import numpy as np

FULL_SCALE_MM = 127.5
MM_PER_UNIT = {16: 0.1, 8: 0.5}
_DTYPE_BITS = {np.dtype(np.uint16): 16, np.dtype(np.uint8): 8}


class DepthImageError(ValueError):
    """An image file that is not a depth image of the expected kind (the message names the file)."""


def read_depth_png(path, size=None):
    """Return (height in mm as float32 H x W, bit depth 8 or 16) of a single-channel PNG.

    Raises DepthImageError naming the file when it cannot be read, has colour channels, an unsupported
    bit depth, or (when size is given) is not size x size.
    """
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DepthImageError(f"{path}: not a readable image")
    if raw.ndim != 2:
        raise DepthImageError(f"{path}: has {raw.shape[2]} channels, a depth image must have one")
    bits = _DTYPE_BITS.get(raw.dtype)
    if bits is None:
        raise DepthImageError(f"{path}: pixel type {raw.dtype} is neither 8-bit nor 16-bit")
    if size is not None and raw.shape != (size, size):
        raise DepthImageError(f"{path}: is {raw.shape[1]} x {raw.shape[0]} pixels, expected {size} x {size}")
    return raw.astype(np.float32) * np.float32(MM_PER_UNIT[bits]), bits


def depth_mm_to_units(height_mm, bits=16):
    """Quantise heights in mm to the integer units of a `bits`-bit PNG (clipped to the format's range)."""
    dtype = np.uint16 if bits == 16 else np.uint8
    units = np.round(np.asarray(height_mm, np.float64) / MM_PER_UNIT[bits])
    return np.clip(units, 0, np.iinfo(dtype).max).astype(dtype)


def write_depth_png(path, height_mm, bits=16):
    """Write heights in mm as a single-channel PNG of the given bit depth (8 or 16)."""
    # Maximum compression: the committed dataset stays small and every re-commit costs its full size.
    if not cv2.imwrite(os.fspath(path), depth_mm_to_units(height_mm, bits), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise DepthImageError(f"{path}: could not be written")


def mm_to_network(height_mm):
    """Heights in mm -> the float scale the network reads and writes (1.0 = FULL_SCALE_MM)."""
    return np.asarray(height_mm, np.float32) / np.float32(FULL_SCALE_MM)


def network_to_mm(values):
    """The network's float scale -> heights in mm."""
    return np.asarray(values, np.float32) * np.float32(FULL_SCALE_MM)
