"""Reading and writing depth images as single-channel PNGs, and the float scale the network sees.

Two file formats are accepted:
  * 16-bit PNG, 1 unit = 0.1 mm (the project's convention, see README "The convention"),
  * 8-bit PNG, 1 unit = 0.5 mm (the original research format: 0..255 grey levels).
Both map to heights in mm (depth.convention holds the units and the network's float scale).
"""
import struct

import cv2
import numpy as np

from depth.convention import MM_PER_PNG_UNIT
from support.command_line import display_name
from support.safe_files import atomic_write, open_regular_file, quiet_stderr

_DTYPE_BITS = {np.dtype(np.uint16): 16, np.dtype(np.uint8): 8}
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Larger images are refused before decoding: a 150-byte PNG can claim 40000 x 40000 pixels (a decompression
# bomb). 8192 x 8192 is far beyond any depth scan this program is meant for.
MAX_PIXELS = 8192 * 8192
# PNG colour type -> channels (a palette image has one index channel but colours, not heights)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 'palette', 4: 2, 6: 4}


class DepthImageError(ValueError):
    """An image file that is not a depth image of the expected kind (the message names the file)."""


def read_depth_png(path, size=None):
    """Return (height in mm as float32 H x W, bit depth 8 or 16) of a single-channel PNG.

    Raises DepthImageError naming the file (display_name: one printable line whatever its name) when it is
    not a regular file (a FIFO would block the read forever), cannot be read, has colour channels, an
    unsupported bit depth, or (when size is given) is not size x size.
    """
    shown = display_name(path)
    try:
        with open_regular_file(path) as file:
            encoded = file.read()
    except OSError as error:
        raise DepthImageError(f"{shown}: not a readable image ({error.strerror})")
    check_png_header(shown, encoded)
    with quiet_stderr():  # libpng prints its own line about a damaged file; ours follows
        raw = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DepthImageError(f"{shown}: not a readable image (damaged PNG data)")
    bits = _DTYPE_BITS[raw.dtype]
    if size is not None and raw.shape != (size, size):
        raise DepthImageError(f"{shown}: is {raw.shape[1]} x {raw.shape[0]} pixels, expected {size} x {size}")
    return raw.astype(np.float32) * np.float32(MM_PER_PNG_UNIT[bits]), bits


def check_png_header(shown, encoded):
    """Refuse, from the signature and header alone, anything but a single-channel 8- or 16-bit PNG of sane size
    (the messages name the file as `shown`).

    The file's name proves nothing (a JPEG renamed .png), and OpenCV silently widens a 1-, 2- or 4-bit PNG
    to 8 bits, which would turn its grey levels into wrong heights.
    """
    # signature, IHDR chunk length and type, then width, height, bit depth, colour type
    if len(encoded) < 26 or not encoded.startswith(PNG_SIGNATURE) or encoded[12:16] != b'IHDR':
        raise DepthImageError(f"{shown}: not a readable image (not a PNG file)")
    width, height, bits, colour_type = struct.unpack('>IIBB', encoded[16:26])
    channels = _PNG_CHANNELS.get(colour_type)
    if channels == 'palette':
        raise DepthImageError(f"{shown}: is a palette (colour) PNG, a depth image must be greyscale")
    if channels != 1:
        raise DepthImageError(f"{shown}: has {channels or 'an unknown number of'} channels, a depth image must "
                              "have one")
    if bits not in MM_PER_PNG_UNIT:
        raise DepthImageError(f"{shown}: is a {bits}-bit PNG, a depth image must be 8-bit or 16-bit")
    if width * height > MAX_PIXELS or not width or not height:
        raise DepthImageError(f"{shown}: claims {width} x {height} pixels, beyond the {MAX_PIXELS} pixels "
                              "this program reads")


def depth_mm_to_units(height_mm, bits=16):
    """Quantise heights in mm to the integer units of a `bits`-bit PNG (clipped to the format's range)."""
    dtype = np.uint16 if bits == 16 else np.uint8
    units = np.round(np.asarray(height_mm, np.float64) / MM_PER_PNG_UNIT[bits])
    return np.clip(units, 0, np.iinfo(dtype).max).astype(dtype)


def write_depth_png(path, height_mm, bits=16):
    """Write heights in mm as a single-channel PNG of the given bit depth (8 or 16)."""
    # Maximum compression: the committed dataset stays small and every re-commit costs its full size.
    encoded, png = cv2.imencode('.png', depth_mm_to_units(height_mm, bits), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not encoded:
        raise DepthImageError(f"{path}: could not be encoded as PNG")
    with atomic_write(path) as file:
        file.write(png.tobytes())
