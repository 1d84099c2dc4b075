"""Which pixels of the network's output are surface: the background rule that infer's files, the grids'
cleaned row, recognition and test mode's whole-image scores all share (Background).

By default a second network decides it (`--task mask`, checkpoints/mask): the probability that the neutral
face covers each pixel, learnt from the input. The output is surface where that probability is at least
MASK_PROBABILITY and the output stands at least INSIDE_THRESHOLD_MM above the back plane.

Without it (`--background input`), the input and a threshold decide:

The network is trained and scored on face pixels; what it outputs beyond the face is not a surface. A height
threshold alone erased the lowest parts of the true face (2.8 % of it at 10 mm) and still kept surface the
network painted far from any face. The input tells where a face can be: an expression moves the outline of
the face by a pixel or two at most, so the output is surface where the input has a surface (above a low
height) and, within NEAR_INPUT_PX of it, where it stands above the threshold (results/experiments.md). A hole the
input's surface encloses (an open mouth a scanner or a mesh left empty) counts as the input's surface: the
neutral face closes it.
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
# With the mask network: the output is surface where the neutral face's probability is at least this.
MASK_PROBABILITY = 0.5


def with_holes_filled(surface):
    """One H x W boolean image of surface plus the background pixels it encloses (those from which no path of
    background pixels, stepping to the four neighbours, reaches the image's border)."""
    _, labels = cv2.connectedComponents((~surface).astype(np.uint8), connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return surface | ~np.isin(labels, outside)


def surface_mask(output_mm, input_mm, threshold_mm):
    """Boolean N x H x W (or H x W): where the output (mm) is surface, given its input (mm)."""
    output_mm, input_mm = np.asarray(output_mm), np.asarray(input_mm)
    images = (input_mm > 0).reshape((-1,) + input_mm.shape[-2:])
    face = np.stack([with_holes_filled(image) for image in images])
    offsets = np.arange(-NEAR_INPUT_PX, NEAR_INPUT_PX + 1)
    kernel = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= NEAR_INPUT_PX ** 2).astype(np.uint8)  # a disc
    near = np.stack([cv2.dilate(image.astype(np.uint8), kernel) for image in face]).astype(bool)
    face, near = face.reshape(input_mm.shape), near.reshape(input_mm.shape)
    return ((face & (output_mm >= min(threshold_mm, INSIDE_THRESHOLD_MM)))
            | (near & (output_mm >= threshold_mm)))


def masked_surface(output_mm, face_probability):
    """Boolean, the output's shape: where the mask network puts the neutral face and the output is above the
    back plane."""
    return (np.asarray(face_probability) >= MASK_PROBABILITY) & (np.asarray(output_mm) >= INSIDE_THRESHOLD_MM)


class Background:
    """How an output's background is decided: by the mask network (face_probability: a function of the inputs in
    mm, N x H x W or H x W, giving the probability of the neutral face at each pixel; mask_checkpoint: its
    checkpoint, as results files record paths), else by the input and threshold_mm (surface_mask). `describe`
    says which, for the metrics and model.json."""

    def __init__(self, threshold_mm=DEFAULT_THRESHOLD_MM, face_probability=None, mask_checkpoint=None):
        self.threshold_mm, self.face_probability, self.mask_checkpoint = threshold_mm, face_probability, mask_checkpoint

    def surface(self, output_mm, input_mm):
        if self.face_probability is None:
            return surface_mask(output_mm, input_mm, self.threshold_mm)
        return masked_surface(output_mm, self.face_probability(np.asarray(input_mm)))

    def apply(self, output_mm, input_mm):
        """The output with every pixel that is not surface set to 0, the convention's background."""
        output_mm = np.asarray(output_mm)
        return np.where(self.surface(output_mm, input_mm), output_mm, 0).astype(output_mm.dtype)

    def describe(self):
        return background_description(self.threshold_mm, self.mask_checkpoint)


def background_description(threshold_mm, mask_checkpoint=None):
    """The rule and its settings, for test_metrics.json and model.json: the mask network's (mask_checkpoint, as
    results files record paths), or the input's (None)."""
    if mask_checkpoint is None:
        return {'rule': 'input', 'threshold_mm': threshold_mm, 'near_input_px': NEAR_INPUT_PX,
                'inside_threshold_mm': INSIDE_THRESHOLD_MM}
    return {'rule': 'mask', 'mask_checkpoint': mask_checkpoint, 'mask_probability': MASK_PROBABILITY,
            'inside_threshold_mm': INSIDE_THRESHOLD_MM}
