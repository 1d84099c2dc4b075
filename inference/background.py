"""Which pixels of the network's output are surface: the background rule that infer's files, the grids'
cleaned row, recognition and test mode's whole-image scores all share.

The network is trained and scored on face pixels; what it outputs beyond the face is not a surface. A height
threshold alone erased the lowest parts of the true face (2.8 % of it at 10 mm) and still kept surface the
network painted far from any face. The input tells where a face can be: an expression moves the outline of
the face by a pixel or two at most, so the output is surface where the input has a surface (above a low
height) and, within NEAR_INPUT_PX of it, where it stands above the threshold (results/experiments.md).
"""
import cv2
import numpy as np

# Beside the input's surface, the output is surface from this height (mm) up: --threshold-mm's default.
DEFAULT_THRESHOLD_MM = 10.0
# Where the input has a surface, the output is surface from this height (mm) up (or from the threshold, when
# that is lower): only the back plane's own height is background there.
INSIDE_THRESHOLD_MM = 1.0
# Beyond the input's surface, the output may be surface within this many pixels (the outline an expression
# moved), and there only above the threshold.
NEAR_INPUT_PX = 3


def surface_mask(output_mm, input_mm, threshold_mm):
    """Boolean N x H x W (or H x W): where the output (mm) is surface, given its input (mm)."""
    output_mm, input_mm = np.asarray(output_mm), np.asarray(input_mm)
    has_input = input_mm > 0
    offsets = np.arange(-NEAR_INPUT_PX, NEAR_INPUT_PX + 1)
    kernel = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= NEAR_INPUT_PX ** 2).astype(np.uint8)  # a disc
    images = has_input.reshape((-1,) + has_input.shape[-2:]).astype(np.uint8)
    near = np.stack([cv2.dilate(image, kernel) for image in images]).reshape(has_input.shape).astype(bool)
    return ((has_input & (output_mm >= min(threshold_mm, INSIDE_THRESHOLD_MM)))
            | (near & (output_mm >= threshold_mm)))


def with_background(output_mm, input_mm, threshold_mm):
    """The output with every pixel that is not surface (surface_mask) set to 0, the convention's background."""
    output_mm = np.asarray(output_mm)
    return np.where(surface_mask(output_mm, input_mm, threshold_mm), output_mm, 0).astype(output_mm.dtype)
