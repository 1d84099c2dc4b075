"""The depth convention (version 1): how a face becomes a depth image, and how heights are stored.

Every part of the project that makes or reads depth images uses these numbers: the dataset generator, the
scan preparation, the network's float scale, inference and export (README "The data").

  * 128 x 128 pixels, frontal orthographic view along -z, 1.5 mm pixel pitch, centred on the nose tip of the
    subject's NEUTRAL face (also when the face shows an expression);
  * depth = height in mm of the front-most surface above a back plane 120 mm behind that nose tip;
    0 = no surface (or a surface behind the plane);
  * stored as 16-bit PNG in 0.1 mm units (8-bit PNGs, the original research format, in 0.5 mm units);
  * the network reads and writes floats: 1.0 = FULL_SCALE_MM above the back plane.
"""
import numpy as np

VERSION = 1
IMAGE_SIZE = 128
PIXEL_PITCH_MM = 1.5
BACK_PLANE_MM = 120.0  # behind the neutral nose tip
IMAGE_CENTRE = (IMAGE_SIZE - 1) / 2  # the nose tip lies between the four central pixels
# The network's float scale: an 8-bit value v becomes exactly v / 255, the neutral nose tip (about 120 mm) ~0.94.
FULL_SCALE_MM = 127.5
MM_PER_PNG_UNIT = {16: 0.1, 8: 0.5}  # by the PNG's bit depth

# What dataset.json records of the convention.
DESCRIPTION = {
    "version": VERSION,
    "size_px": IMAGE_SIZE,
    "pixel_pitch_mm": PIXEL_PITCH_MM,
    "depth_unit_mm": MM_PER_PNG_UNIT[16],
    "back_plane_mm_behind_neutral_nose_tip": BACK_PLANE_MM,
    "frame": "pixel (row r, col c) centre at x = (c - 63.5) * 1.5 mm, y = (63.5 - r) * 1.5 mm from the nose tip "
             "(Multi-PIE landmark 30) of the subject's neutral face; orthographic view along -z",
    "depth": "height in mm of the front-most surface above the back plane at the pixel centre; "
             "0 = no surface or a surface behind the plane; PNG value = round(10 * height)",
}


def image_frame(face_mm: np.ndarray, nose_tip_mm: np.ndarray) -> np.ndarray:
    """(V, 3) column, row and height in mm above the back plane of points in mm, framed on `nose_tip_mm`."""
    frame = np.empty_like(face_mm)
    frame[:, 0] = IMAGE_CENTRE + (face_mm[:, 0] - nose_tip_mm[0]) / PIXEL_PITCH_MM  # column
    frame[:, 1] = IMAGE_CENTRE - (face_mm[:, 1] - nose_tip_mm[1]) / PIXEL_PITCH_MM  # row: y points up
    frame[:, 2] = face_mm[:, 2] - (nose_tip_mm[2] - BACK_PLANE_MM)
    return frame


def mm_to_network(height_mm):
    """Heights in mm -> the float scale the network reads and writes (1.0 = FULL_SCALE_MM)."""
    return np.asarray(height_mm, np.float32) / np.float32(FULL_SCALE_MM)


def network_to_mm(values):
    """The network's float scale -> heights in mm."""
    return np.asarray(values, np.float32) * np.float32(FULL_SCALE_MM)
