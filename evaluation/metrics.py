"""The numeric core of the evaluation: per-image error metrics, grouping by expression and level, and the
segmentation task's pixel accuracy and IoU.

Independent of the network: everything here takes and returns heights in mm (as depth_png reads them:
0 = background).  Only MS-SSIM uses TensorFlow, in a private graph and session so that it works whether
or not the caller has disabled eager execution, and TensorFlow is imported only when MS-SSIM is computed.

Conventions
  * The face of an image is where its TARGET is > 0; the error metrics look only at those pixels.
  * An image whose target has no face pixel gets NaN for every metric and is left out of every mean
    (it still counts in the group's 'n').
"""
import math
import os
import re

import numpy as np

from depth.convention import FULL_SCALE_MM

# 128 x 128 images halve four times under the 5 default MS-SSIM scales, down to 8 x 8, and TF asserts
# that every scale is at least filter_size wide (filter_size 9 or 11 fails at run time).  7 is the
# largest odd size that fits: odd keeps the Gaussian window centred on a pixel, and it still leaves a
# 2 x 2 grid of windows at the coarsest scale rather than a single one (which filter size 8 would).
MS_SSIM_FILTER_SIZE = 7

METRIC_NAMES = ('rmse_mm', 'mae_mm', 'within_1mm', 'within_2mm', 'ms_ssim')
# The scores that see the whole image: the error inside the face and on its outline band, and the surface
# painted where there is none or missing where there is one (each a share of the image's pixels).
WHOLE_IMAGE_METRIC_NAMES = ('inside_rmse_mm', 'outline_rmse_mm', 'false_surface_share', 'missing_surface_share',
                            'written_rmse_mm')
# Face pixels at least this far from the target's background are inside the face; the rest is its outline band,
# where a sub-pixel shift of a steep silhouette costs many millimetres (7.5 mm at the 1.5 mm pixel pitch).
INSIDE_DISTANCE_PX = 5
UNKNOWN = '??'
# Heights arrive as float32 quantised to 0.1 or 0.5 mm, so an error of exactly 1 mm between two such
# heights often computes as 1.000004 mm; the within-N-mm shares allow this much (far below a quantum) so
# that those errors count as within.
WITHIN_SLACK_MM = 1e-3
# Reports list expression groups in this order (the prototypical expressions as the data set
# introduces them, then the mixtures); any other code follows alphabetically, UNKNOWN last.
EXPRESSION_ORDER = ('NE', 'HA', 'SA', 'SU', 'FE', 'AN', 'DI', 'MX')
EXPRESSION_NAMES = {'NE': 'neutral', 'HA': 'happiness', 'SA': 'sadness', 'SU': 'surprise', 'FE': 'fear',
                    'AN': 'anger', 'DI': 'disgust', 'MX': 'mixture'}

_NAME_PATTERN = re.compile(r'(\d{4})_([A-Z]{2})(\d{2})')


# ---------------------------------------------------------------------------------------------------
# File names

def parse_name(file_name):
    """`SSSS_CCLL.png` -> (subject 'SSSS', code 'CC', level 'LL'); any other name -> (None, '??', '??').

    Directories and the extension are ignored, so paths and names without '.png' work too.
    """
    stem = os.path.splitext(os.path.basename(os.fspath(file_name)))[0]
    match = _NAME_PATTERN.fullmatch(stem)
    if match is None:
        return None, UNKNOWN, UNKNOWN
    return match.group(1), match.group(2), match.group(3)


# ---------------------------------------------------------------------------------------------------
# Per-image metrics

def as_image_batch(images_mm):
    """N x H x W or N x H x W x 1 (or one H x W image) -> float64 N x H x W."""
    batch = np.asarray(images_mm, np.float64)
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if batch.ndim == 2:
        batch = batch[np.newaxis]
    if batch.ndim != 3:
        raise ValueError(f"expected N x H x W depth images, got shape {np.shape(images_mm)}")
    return batch


def face_mask(target_mm):
    return target_mm > 0


def inside_face_mask(target_mm):
    """Face pixels whose Euclidean distance to the nearest background pixel of the target is at least
    INSIDE_DISTANCE_PX (the image's border does not count as background)."""
    import cv2
    face = face_mask(as_image_batch(target_mm))
    inside = np.zeros_like(face)
    for index, one in enumerate(face):
        if not one.all():
            distance = cv2.distanceTransform(one.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            inside[index] = distance >= INSIDE_DISTANCE_PX
        else:
            inside[index] = True
    return inside


def _mean_over_face(values, face):
    """Per image, the mean of `values` over its face pixels; NaN for an image without any."""
    count = face.sum(axis=(1, 2))
    total = np.where(face, values, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def ms_ssim(output_mm, target_mm, batch_size=256):
    """Per-image MS-SSIM of whole images (background included) at the full depth range.

    Builds its own tf.Graph and runs it in a tf.compat.v1.Session instead of touching the global eager
    switch: the caller (convworking.py's test mode) has already disabled eager execution, tests have not,
    and both must keep working.  Heights below the back plane are clipped to 0 first because TF's MS-SSIM
    is defined for non-negative pixels only (a negative local mean would zero a scale's term).
    """
    import tensorflow as tf  # deferred: the rest of the module stays numpy-only and quick to import

    output_mm, target_mm = as_image_batch(output_mm), as_image_batch(target_mm)
    image_shape = (None,) + target_mm.shape[1:] + (1,)
    graph = tf.Graph()
    with graph.as_default():
        output_in = tf.compat.v1.placeholder(tf.float32, image_shape)
        target_in = tf.compat.v1.placeholder(tf.float32, image_shape)
        score = tf.image.ssim_multiscale(output_in, target_in, max_val=FULL_SCALE_MM,
                                         filter_size=MS_SSIM_FILTER_SIZE)
    scores = []
    with tf.compat.v1.Session(graph=graph) as session:
        # Batches bound the memory of the convolutions when the whole test set comes at once.
        for start in range(0, len(target_mm), batch_size):
            chunk = slice(start, start + batch_size)
            scores.append(session.run(score, {
                output_in: np.clip(output_mm[chunk], 0, None)[..., np.newaxis],
                target_in: np.clip(target_mm[chunk], 0, None)[..., np.newaxis]}))
    return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)


def per_image_face_rmse(output_mm, target_mm):
    """Each image's root-mean-square error in mm over its face (target > 0); NaN without face pixels.

    The quick score of validation during training; per_image_metrics gives the full set.
    """
    output_mm, target_mm = as_image_batch(output_mm), as_image_batch(target_mm)
    return np.sqrt(_mean_over_face((output_mm - target_mm) ** 2, face_mask(target_mm)))


def per_image_metrics(output_mm, target_mm, surface_mm=None):
    """Metrics of each image of a batch (N x H x W, or N x H x W x 1), heights in mm.

    rmse_mm, mae_mm, within_1mm, within_2mm (share of face pixels whose |error| <= 1 or 2 mm) are taken
    over the face pixels (target > 0) only (within_Nmm allows WITHIN_SLACK_MM of rounding); ms_ssim over the
    whole image: of surface_mm when given, since beside the face only the written image means anything (the
    network's own output there is whatever it paints before the background is decided), else of output_mm.
    Every metric is NaN for an image whose target has no face pixel.

    With surface_mm (the output as written, its background decided: 0 = no surface) also the scores that see
    the whole image (WHOLE_IMAGE_METRIC_NAMES): the RMSE inside the face (inside_face_mask) and on the rest of
    the face, its outline band (NaN for an image without such pixels); the share of the image's pixels with
    surface where the target has none (false_surface_share) and without surface where the target has one
    (missing_surface_share), and the RMSE over the face of the written output itself (written_rmse_mm: what
    infer's files score, where rmse_mm scores the network's own output).
    """
    output_mm, target_mm = as_image_batch(output_mm), as_image_batch(target_mm)
    if output_mm.shape != target_mm.shape:
        raise ValueError(f"output shape {output_mm.shape} differs from target shape {target_mm.shape}")
    face = face_mask(target_mm)
    error = output_mm - target_mm
    metrics = {
        'rmse_mm': per_image_face_rmse(output_mm, target_mm),
        'mae_mm': _mean_over_face(np.abs(error), face),
        'within_1mm': _mean_over_face(np.abs(error) <= 1.0 + WITHIN_SLACK_MM, face),
        'within_2mm': _mean_over_face(np.abs(error) <= 2.0 + WITHIN_SLACK_MM, face),
        'ms_ssim': ms_ssim(output_mm if surface_mm is None else surface_mm, target_mm),
    }
    no_face = ~face.any(axis=(1, 2))
    metrics['ms_ssim'][no_face] = np.nan  # consistent with the face metrics: such an image is not scored
    if surface_mm is not None:
        surface = as_image_batch(surface_mm) > 0
        inside = inside_face_mask(target_mm)
        metrics.update({
            'inside_rmse_mm': np.sqrt(_mean_over_face(error ** 2, inside)),
            'outline_rmse_mm': np.sqrt(_mean_over_face(error ** 2, face & ~inside)),
            'false_surface_share': np.mean(surface & ~face, axis=(1, 2)),
            'missing_surface_share': np.mean(face & ~surface, axis=(1, 2)),
            'written_rmse_mm': per_image_face_rmse(surface_mm, target_mm),
        })
        for name in ('false_surface_share', 'missing_surface_share'):
            metrics[name][no_face] = np.nan
    return metrics


def mean_abs_error_map(output_mm, target_mm):
    """Per pixel, the mean |output - target| over the images whose target has a face there (mm);
    NaN where no image has one, which write_report's heat map shows as background."""
    output_mm, target_mm = as_image_batch(output_mm), as_image_batch(target_mm)
    face = face_mask(target_mm)
    count = face.sum(axis=0)
    total = np.where(face, np.abs(output_mm - target_mm), 0.0).sum(axis=0)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---------------------------------------------------------------------------------------------------
# Summaries

def _nanmean(values):
    """Mean ignoring NaN; NaN (without numpy's empty-slice warning) when nothing is left."""
    values = np.asarray(values, np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _group_block(per_image, selected):
    """{metric: mean over the selected images, ..., 'n': how many images were selected}."""
    block = {metric: _nanmean(np.asarray(values)[selected]) for metric, values in per_image.items()}
    block['n'] = int(np.count_nonzero(selected))
    return block


def group_order(key):
    """Sort key for group names: known expression codes in EXPRESSION_ORDER, others alphabetically,
    UNKNOWN last (levels are digits, so they simply sort numerically as strings)."""
    if key == UNKNOWN:
        return (2, 0, key)
    if key in EXPRESSION_ORDER:
        return (0, EXPRESSION_ORDER.index(key), key)
    return (1, 0, key)


def _grouped_blocks(per_image, group_of_image):
    group_of_image = np.asarray(group_of_image, dtype=object)
    return {group: _group_block(per_image, group_of_image == group)
            for group in sorted(set(group_of_image), key=group_order)}


def summarise(per_image, names):
    """Means of per-image metrics overall, per expression code and per level.

    per_expression is keyed by the 2-letter code of the file name ('HA', 'NE', 'MX', ...); per_level by the
    2-digit level string alone, pooled across codes: '01'..'04' are prototype intensities, '00' the
    neutral faces, and mixture numbers of 'MX' images land in the level with the same digits (so '01'
    mixes intensity-1 prototypes with mixture 01; read per_level together with per_expression).  Names
    not following SSSS_CCLL go to '??' in both.  Means skip NaN (images without face pixels); 'n' counts
    every image of the group.
    """
    names = list(names)
    lengths = {len(values) for values in per_image.values()}
    if lengths and lengths != {len(names)}:
        raise ValueError(f"{len(names)} names for per-image metrics of length(s) {sorted(lengths)}")
    parsed = [parse_name(name) for name in names]
    summary = _group_block(per_image, np.ones(len(names), bool))
    summary['per_expression'] = _grouped_blocks(per_image, [code for _, code, _ in parsed])
    summary['per_level'] = _grouped_blocks(per_image, [level for _, _, level in parsed])
    return summary

# ---------------------------------------------------------------------------------------------------
# Segmentation (task `segment`: probabilities and {0, 1} masks, not heights)

def _binary_masks(outputs, targets, threshold):
    """(predicted, true) boolean arrays: outputs >= threshold, targets >= 0.5 (targets are {0, 1})."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {outputs.shape} and targets {targets.shape} differ in shape")
    return outputs >= threshold, targets >= 0.5


def pixel_accuracy(outputs, targets, threshold=0.5):
    """Share (fraction) of all pixels of all images whose thresholded output equals the target."""
    predicted, true = _binary_masks(outputs, targets, threshold)
    return float(np.mean(predicted == true)) if true.size else math.nan


def iou_per_class(outputs, targets, threshold=0.5):
    """(background IoU, foreground IoU), fractions over all pixels of all images pooled (the confusion
    matrix of the whole set, as tf.compat.v1.metrics.mean_iou accumulates it); NaN for a class that
    neither the output nor the target has anywhere."""
    predicted, true = _binary_masks(outputs, targets, threshold)
    result = []
    for predicted_class, true_class in ((~predicted, ~true), (predicted, true)):
        union = np.count_nonzero(predicted_class | true_class)
        result.append(np.count_nonzero(predicted_class & true_class) / union if union else math.nan)
    return tuple(result)


def mean_iou(outputs, targets, threshold=0.5):
    """Mean of the two classes' IoU (iou_per_class), a fraction; a class absent everywhere is left out."""
    ious = [iou for iou in iou_per_class(outputs, targets, threshold) if not math.isnan(iou)]
    return float(np.mean(ious)) if ious else math.nan
