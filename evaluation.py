"""The numeric core of the evaluation: per-image error metrics, grouping by expression and level,
numpy baselines, face recognition with raw and neutralised probes, and the written report.

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

import depth_png
from safe_files import atomic_write

# 128 x 128 images halve four times under the 5 default MS-SSIM scales, down to 8 x 8, and TF asserts
# that every scale is at least filter_size wide (filter_size 9 or 11 fails at run time).  7 is the
# largest odd size that fits: odd keeps the Gaussian window centred on a pixel, and it still leaves a
# 2 x 2 grid of windows at the coarsest scale rather than a single one (which filter size 8 would).
MS_SSIM_FILTER_SIZE = 7

METRIC_NAMES = ('rmse_mm', 'mae_mm', 'within_1mm', 'within_2mm', 'ms_ssim')
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
BASELINE_NAMES = ('identity', 'mean_face', 'linear')

_NAME_PATTERN = re.compile(r'(\d{4})_([A-Z]{2})(\d{2})')
# Results files record paths relative to this folder (the repository): committed results then name no
# machine's folders, and still point at the right checkpoint and data in any clone.
_REPOSITORY = os.path.dirname(os.path.abspath(__file__))


def recorded_path(path):
    """A path as results files (test_metrics.json, options.json, model.json) record it."""
    return os.path.relpath(os.path.abspath(path), _REPOSITORY)


def resolve_recorded_path(path):
    """The absolute path a recorded one names (older files recorded absolute paths; they pass unchanged)."""
    return os.path.normpath(os.path.join(_REPOSITORY, path))


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

def _as_image_batch(images_mm):
    """N x H x W or N x H x W x 1 (or one H x W image) -> float64 N x H x W."""
    batch = np.asarray(images_mm, np.float64)
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if batch.ndim == 2:
        batch = batch[np.newaxis]
    if batch.ndim != 3:
        raise ValueError(f"expected N x H x W depth images, got shape {np.shape(images_mm)}")
    return batch


def _face_mask(target_mm):
    return target_mm > 0


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

    output_mm, target_mm = _as_image_batch(output_mm), _as_image_batch(target_mm)
    image_shape = (None,) + target_mm.shape[1:] + (1,)
    graph = tf.Graph()
    with graph.as_default():
        output_in = tf.compat.v1.placeholder(tf.float32, image_shape)
        target_in = tf.compat.v1.placeholder(tf.float32, image_shape)
        score = tf.image.ssim_multiscale(output_in, target_in, max_val=depth_png.FULL_SCALE_MM,
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
    output_mm, target_mm = _as_image_batch(output_mm), _as_image_batch(target_mm)
    return np.sqrt(_mean_over_face((output_mm - target_mm) ** 2, _face_mask(target_mm)))


def per_image_metrics(output_mm, target_mm):
    """Metrics of each image of a batch (N x H x W, or N x H x W x 1), heights in mm.

    rmse_mm, mae_mm, within_1mm, within_2mm (share of face pixels whose |error| <= 1 or 2 mm) are taken
    over the face pixels (target > 0) only (within_Nmm allows WITHIN_SLACK_MM of rounding); ms_ssim over the whole image.  Every metric is NaN for an
    image whose target has no face pixel.
    """
    output_mm, target_mm = _as_image_batch(output_mm), _as_image_batch(target_mm)
    if output_mm.shape != target_mm.shape:
        raise ValueError(f"output shape {output_mm.shape} differs from target shape {target_mm.shape}")
    face = _face_mask(target_mm)
    error = output_mm - target_mm
    metrics = {
        'rmse_mm': per_image_face_rmse(output_mm, target_mm),
        'mae_mm': _mean_over_face(np.abs(error), face),
        'within_1mm': _mean_over_face(np.abs(error) <= 1.0 + WITHIN_SLACK_MM, face),
        'within_2mm': _mean_over_face(np.abs(error) <= 2.0 + WITHIN_SLACK_MM, face),
        'ms_ssim': ms_ssim(output_mm, target_mm),
    }
    no_face = ~face.any(axis=(1, 2))
    metrics['ms_ssim'][no_face] = np.nan  # consistent with the face metrics: such an image is not scored
    return metrics


def mean_abs_error_map(output_mm, target_mm):
    """Per pixel, the mean |output - target| over the images whose target has a face there (mm);
    NaN where no image has one, which write_report's heat map shows as background."""
    output_mm, target_mm = _as_image_batch(output_mm), _as_image_batch(target_mm)
    face = _face_mask(target_mm)
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


def _group_order(key):
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
            for group in sorted(set(group_of_image), key=_group_order)}


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
# Baselines

def mean_face(train_neutral_targets_mm):
    """Mean neutral depth (H x W, mm) of the training subjects' neutral faces.

    Each pixel is averaged over the faces that cover it, and is background (0) where fewer than half
    of them do.  A plain mean that counted background zeros would turn the face outline into a ramp of
    fractional heights that no real face has.  Pass one neutral image per subject, or subjects with more
    images weigh more.
    """
    faces = _as_image_batch(train_neutral_targets_mm)
    covered = _face_mask(faces)
    count = covered.sum(axis=0)
    total = np.where(covered, faces, 0.0).sum(axis=0)
    average = total / np.maximum(count, 1)
    return np.where(2 * count >= len(faces), average, 0.0).astype(np.float32)


def _principal_axes(centred, n_components):
    """(axes: k x D orthonormal rows, variances: k per-sample variances) of the k leading principal
    components of centred samples (N x D), k = min(n_components, numerical rank).

    Goes through the N x N Gram matrix when N <= D (the usual case here: a few thousand images of 16384
    pixels), which is several times faster and much lighter than an SVD of the data itself.
    """
    n_samples, n_dims = centred.shape
    if n_samples <= n_dims:
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)
    else:
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    # Components below this relative size are rounding noise, not data (eigenvalues are squared
    # singular values, so this keeps singular values above 1e-5 of the largest).
    rank = int(np.count_nonzero(eigenvalues > max(eigenvalues[0], 0.0) * 1e-10)) if len(eigenvalues) else 0
    keep = min(n_components, rank)
    eigenvalues, vectors = eigenvalues[:keep], vectors[:, :keep]
    if n_samples <= n_dims:
        axes = (vectors.T @ centred) / np.sqrt(eigenvalues)[:, np.newaxis]
    else:
        axes = vectors.T
    return axes, eigenvalues / max(n_samples, 1)


class LinearBaseline:
    """Expression removal as a linear map between PCA spaces: input image -> its first
    `n_input_components` PCA scores -> ridge regression -> `n_target_components` target PCA scores ->
    target image.

    The ridge penalty acts on the unstandardised input scores (in mm): it shrinks the coefficients of
    input component j by var_j / (var_j + alpha), var_j being that component's per-image variance in mm^2
    summed over all pixels.  Standardising the scores first would make the penalty an equal shrinkage of
    every component (PCA scores are uncorrelated), i.e. no ridge at all; this way weak, noisy components
    are damped most.  alpha = 1 mm^2 is a light touch: the main regulariser is the truncation to the
    leading components.
    """

    def __init__(self, n_input_components=100, n_target_components=60, alpha=1.0):
        self.n_input_components = n_input_components
        self.n_target_components = n_target_components
        self.alpha = alpha
        self._fitted = None

    @staticmethod
    def _flatten(images_mm):
        images = _as_image_batch(images_mm)
        return images.reshape(len(images), -1), images.shape[1:]

    def fit(self, train_inputs_mm, train_targets_mm):
        inputs, image_shape = self._flatten(train_inputs_mm)
        targets, target_shape = self._flatten(train_targets_mm)
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        input_mean, target_mean = inputs.mean(axis=0), targets.mean(axis=0)
        input_axes, input_variances = _principal_axes(inputs - input_mean, self.n_input_components)
        target_axes, _ = _principal_axes(targets - target_mean, self.n_target_components)
        input_scores = (inputs - input_mean) @ input_axes.T
        target_scores = (targets - target_mean) @ target_axes.T
        # Ridge normal equations; alpha is per image, hence the factor N.  Scores are centred, so no
        # intercept is needed: the means carry it.
        gram = input_scores.T @ input_scores + self.alpha * len(inputs) * np.eye(input_scores.shape[1])
        weights = np.linalg.solve(gram, input_scores.T @ target_scores)
        self._fitted = dict(input_mean=input_mean, input_axes=input_axes, input_variances=input_variances,
                            target_mean=target_mean, target_axes=target_axes, weights=weights,
                            image_shape=image_shape, target_shape=target_shape, n_train=len(inputs))
        return self

    def predict(self, inputs_mm):
        """Neutral-face estimates (N x H x W, mm, float32) for input images (N x H x W or N x H x W x 1)."""
        if self._fitted is None:
            raise RuntimeError("LinearBaseline.predict called before fit")
        fitted = self._fitted
        inputs, image_shape = self._flatten(inputs_mm)
        if image_shape != fitted['image_shape']:
            raise ValueError(f"fitted on {fitted['image_shape']} images, got {image_shape}")
        scores = (inputs - fitted['input_mean']) @ fitted['input_axes'].T
        outputs = fitted['target_mean'] + (scores @ fitted['weights']) @ fitted['target_axes']
        return outputs.reshape((len(inputs),) + fitted['target_shape']).astype(np.float32)

    def describe(self):
        """One line for the report: dimensions actually used and what the regularisation does."""
        text = (f"PCA + ridge: {self.n_input_components} input / {self.n_target_components} target "
                f"principal components requested, ridge alpha {self.alpha:g} mm^2 on the unstandardised "
                f"input scores (shrinks component j by var_j / (var_j + alpha))")
        if self._fitted is None:
            return text + "; not fitted"
        variances = self._fitted['input_variances']
        weakest = (f"; shrinkage of the weakest input component {variances[-1] / (variances[-1] + self.alpha):.4f}"
                   if len(variances) else "")
        return (text + f"; fitted on {self._fitted['n_train']} images using {len(variances)} input / "
                f"{self._fitted['target_axes'].shape[0]} target components (fewer than requested only where "
                f"the training data's rank is lower)" + weakest)


def baseline_outputs(inputs_mm, neutral_mean_mm, linear_baseline):
    """{'identity': the input unchanged, 'mean_face': the mean neutral face for every image,
    'linear': linear_baseline's prediction}, each N x H x W in mm."""
    inputs = _as_image_batch(inputs_mm).astype(np.float32)
    return {
        'identity': inputs,
        'mean_face': np.broadcast_to(np.asarray(neutral_mean_mm, np.float32), inputs.shape).copy(),
        'linear': linear_baseline.predict(inputs),
    }


# ---------------------------------------------------------------------------------------------------
# Recognition

RECOGNITION_DISTANCE = ("root-mean-square depth difference (mm) over the union of the two face masks "
                        "(pixels where either image is > 0)")


def face_distances(gallery_mm, probes_mm):
    """P x G matrix of RECOGNITION_DISTANCE between every probe and every gallery face.

    With the background set to 0, pixels outside the union of the two masks add nothing to the squared
    difference, so its sum over the union is |p|^2 + |g|^2 - 2 p.g, and the union's size is |P| + |G| - P.G for
    the masks: two matrix products instead of a P x G x pixels array (a 300-face gallery stays fast).
    Two empty images are at distance 0 (they are identical).
    """
    gallery, probes = (np.asarray(_as_image_batch(images), np.float64) for images in (gallery_mm, probes_mm))
    gallery, probes = gallery.reshape(len(gallery), -1), probes.reshape(len(probes), -1)
    gallery_face, probe_face = gallery > 0, probes > 0
    gallery, probes = np.where(gallery_face, gallery, 0.0), np.where(probe_face, probes, 0.0)
    squared = ((probes ** 2).sum(axis=1)[:, np.newaxis] + (gallery ** 2).sum(axis=1)[np.newaxis, :]
               - 2 * probes @ gallery.T)
    gallery_face, probe_face = gallery_face.astype(np.float64), probe_face.astype(np.float64)
    union = (probe_face.sum(axis=1)[:, np.newaxis] + gallery_face.sum(axis=1)[np.newaxis, :]
             - probe_face @ gallery_face.T)
    # Rounding can leave a tiny negative sum where two faces are identical.
    return np.sqrt(np.maximum(squared, 0.0) / np.maximum(union, 1))


def rank1_rate(distances, gallery_ids, probe_ids):
    """Share of probes whose nearest gallery face has their id (a probe whose id is not in the gallery
    counts as a miss)."""
    if distances.size == 0:
        return math.nan
    nearest = np.asarray(gallery_ids, dtype=object)[np.argmin(distances, axis=1)]
    return float(np.mean(nearest == np.asarray(probe_ids, dtype=object)))


def equal_error_rate(genuine, impostor):
    """Verification EER: a pair is accepted when its distance <= threshold; sweeping the threshold over
    every observed distance, the false-accept rate (impostors accepted) rises and the false-reject rate
    (genuine pairs rejected) falls; the EER is where they cross, interpolated linearly between the two
    thresholds that bracket the crossing.  NaN without genuine or without impostor pairs."""
    genuine, impostor = np.sort(np.ravel(genuine)), np.sort(np.ravel(impostor))
    if genuine.size == 0 or impostor.size == 0:
        return math.nan
    # -inf first: accepting nothing gives FAR 0, FRR 1, so the sweep always starts below the crossing.
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([genuine, impostor]))])
    far = np.searchsorted(impostor, thresholds, side='right') / impostor.size
    frr = 1.0 - np.searchsorted(genuine, thresholds, side='right') / genuine.size
    gap = far - frr  # -1 at -inf, +1 at the largest threshold, never decreasing
    after = int(np.argmax(gap >= 0))
    before = after - 1
    # FAR and FRR move linearly from `before` to `after`; t in (0, 1] is where they meet.
    t = -gap[before] / (gap[after] - gap[before])
    return float(far[before] + t * (far[after] - far[before]))


def recognition(gallery_mm, gallery_ids, probes_mm, probe_ids):
    """Identification and verification of probe faces against a gallery (one or more faces per id).

    Returns {'rank1', 'eer', 'distance' (what was measured), 'n_gallery', 'n_probes'}: rank1 over the
    nearest gallery face of each probe; eer over all probe-gallery pairs (genuine = same id)."""
    distances = face_distances(gallery_mm, probes_mm)
    genuine = np.asarray(probe_ids, dtype=object)[:, np.newaxis] == np.asarray(gallery_ids, dtype=object)
    return {
        'rank1': rank1_rate(distances, gallery_ids, probe_ids),
        'eer': equal_error_rate(distances[genuine], distances[~genuine]),
        'distance': RECOGNITION_DISTANCE,
        'n_gallery': int(len(gallery_ids)),
        'n_probes': int(len(probe_ids)),
    }


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


# ---------------------------------------------------------------------------------------------------
# Report

_OVERALL_COLUMNS = (('rmse_mm', 'RMSE (mm)'), ('mae_mm', 'MAE (mm)'), ('within_1mm', '<= 1 mm'),
                    ('within_2mm', '<= 2 mm'), ('ms_ssim', 'MS-SSIM'))
HEAT_MAP_PERCENTILE = 99
_SHARE_METRICS = {'within_1mm', 'within_2mm', 'rank1', 'eer'}
_MISSING = '-'


def _format_value(metric, value):
    """Millimetres with 3 decimals, shares as percentages, MS-SSIM with 4 decimals; NaN -> 'n/a'."""
    if value is None:
        return _MISSING
    value = float(value)
    if math.isnan(value):
        return 'n/a'
    if metric in _SHARE_METRICS:
        return f"{100 * value:.1f} %"
    if metric == 'ms_ssim':
        return f"{value:.4f}"
    return f"{value:.3f}"


def _methods(metrics):
    """(name, block) for the model and each baseline present; the model's count is 'n_images'."""
    model = dict(metrics, n=metrics.get('n_images'))
    baselines = metrics.get('baselines') or {}
    return [('model', model)] + [(name, baselines[name]) for name in BASELINE_NAMES if name in baselines]


def _overall_rows(metrics):
    header = ['method', 'n'] + [title for _, title in _OVERALL_COLUMNS]
    rows = [[name, str(block.get('n', _MISSING))]
            + [_format_value(metric, block.get(metric)) for metric, _ in _OVERALL_COLUMNS]
            for name, block in _methods(metrics)]
    return header, rows


def _group_rmse_rows(metrics, grouping):
    """RMSE per group (grouping = 'per_expression' or 'per_level') for the model and each baseline."""
    methods = _methods(metrics)
    groups = {}
    for _, block in methods:
        groups.update(dict.fromkeys((block.get(grouping) or {}).keys()))
    header = [grouping.replace('per_', ''), 'n'] + [f"{name} RMSE (mm)" for name, _ in methods]
    rows = []
    for group in sorted(groups, key=_group_order):
        entries = [(block.get(grouping) or {}).get(group, {}) for _, block in methods]
        rows.append([group, str(entries[0].get('n', _MISSING))]
                    + [_format_value('rmse_mm', entry.get('rmse_mm')) for entry in entries])
    return header, rows


def _recognition_lines(result):
    """Markdown lines of a recognition section: a table, or the reason it was skipped."""
    if not result:
        return ["Recognition was not run."]
    if 'skipped' in result:
        return [f"Recognition skipped: {result['skipped']}"]
    rows = [[label, _format_value('rank1', (result.get(key) or {}).get('rank1')),
             _format_value('eer', (result.get(key) or {}).get('eer'))]
            for key, label in (('raw', 'raw (with expression)'), ('neutralised', 'neutralised by the model'))]
    return (_markdown_table(['probes', 'rank-1', 'EER'], rows)
            + ["", f"Distance: {result.get('distance', _MISSING)}; gallery {result.get('n_gallery', _MISSING)} "
                   f"faces, {result.get('n_probes', _MISSING)} probes."])


def _gallery_lines(gallery):
    """Markdown lines of the generated-gallery section (none when test mode ran without a gallery)."""
    if not gallery:
        return []
    rmse = gallery.get('rmse_mm_per_expression') or {}
    codes = sorted({code for groups in rmse.values() for code in groups}, key=_group_order)
    rows = [[f"{method} RMSE (mm)"] + [_format_value('rmse_mm', rmse[method].get(code)) for code in codes]
            for method in rmse]
    return (["", f"## Recognition on {gallery.get('subjects', _MISSING)} generated identities", "",
             f"Identities no training sees (make_dataset.py seed {gallery.get('seed', _MISSING)}); "
             f"{gallery.get('probes', _MISSING)}.", ""]
            + _recognition_lines(gallery)
            + ["", "RMSE of the gallery's probes (unseen identities):", ""]
            + _markdown_table(['expression'] + codes, rows))


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _text_table(header, rows):
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [header] + rows]


def report_markdown(metrics):
    """The text of report.md."""
    lines = ["# Expression removal: test evaluation", "",
             f"Checkpoint: {metrics.get('checkpoint', _MISSING)}  ",
             f"Data: {metrics.get('data', _MISSING)}  ",
             f"Test images: {metrics.get('n_images', _MISSING)}", "",
             "Errors are over the face pixels of the target (neutral) image; images without face pixels "
             "are left out of the means. MS-SSIM is over the whole image.", "",
             "## Model and baselines", ""]
    lines += _markdown_table(*_overall_rows(metrics))
    lines += ["", "## RMSE per expression", ""] + _markdown_table(*_group_rmse_rows(metrics, 'per_expression'))
    lines += ["", "## RMSE per level", "",
              "Levels are the two digits of the file name pooled across codes: intensities 01-04 of the "
              "prototypes, 00 for neutral faces, and the mixture number for MX.", ""]
    lines += _markdown_table(*_group_rmse_rows(metrics, 'per_level'))
    lines += ["", "## Recognition", ""] + _recognition_lines(metrics.get('recognition'))
    lines += _gallery_lines(metrics.get('recognition_gallery'))
    lines += ["", "## Settings", "",
              f"- MS-SSIM filter size: {metrics.get('ms_ssim_filter_size', MS_SSIM_FILTER_SIZE)} "
              f"(max_val {depth_png.FULL_SCALE_MM} mm)",
              f"- Linear baseline: {metrics.get('linear_baseline', _MISSING)}", ""]
    return "\n".join(lines)


def report_figure(metrics, mean_abs_error_map_mm):
    """The Figure of report.png: RMSE per expression (model, identity, linear) and the model's error heat map."""
    # The object-oriented API with the Agg canvas draws off screen without switching pyplot's global
    # backend under the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5))
    FigureCanvasAgg(figure)
    bars, heat = figure.subplots(1, 2, gridspec_kw={'width_ratios': [1.4, 1]})

    compared = [(name, block) for name, block in _methods(metrics) if name in ('model', 'identity', 'linear')]
    codes = sorted((metrics.get('per_expression') or {}).keys(), key=_group_order)
    width = 0.8 / max(len(compared), 1)
    for index, (name, block) in enumerate(compared):
        values = [(block.get('per_expression') or {}).get(code, {}).get('rmse_mm', math.nan) for code in codes]
        bars.bar(np.arange(len(codes)) + (index - (len(compared) - 1) / 2) * width, values, width, label=name)
    bars.set_xticks(np.arange(len(codes)), codes)
    bars.set_xlabel('expression')
    bars.set_ylabel('RMSE over the face (mm)')
    bars.set_title('RMSE per expression')
    bars.legend()

    if mean_abs_error_map_mm is None:
        heat.text(0.5, 0.5, 'no error map', ha='center', va='center')
    else:
        error_map = np.asarray(mean_abs_error_map_mm, np.float64)
        # NaN (no face there in any image, as mean_abs_error_map gives) or an exact 0 (a map summed
        # with zeros outside the face) is background.
        shown = np.ma.masked_where(~np.isfinite(error_map) | (error_map == 0), error_map)
        # A few silhouette pixels err by ~10 mm, most of the face by ~1: a scale up to the maximum would
        # paint the face black, so it stops at a high percentile and the colour bar says so.
        top = float(np.percentile(shown.compressed(), HEAT_MAP_PERCENTILE)) if shown.count() else 1.0
        image = heat.imshow(shown, cmap='inferno', vmin=0, vmax=top)
        figure.colorbar(image, ax=heat, extend='max',
                        label=f'mean |error| (mm), clipped at its {HEAT_MAP_PERCENTILE}th percentile')
    heat.set_title("model's mean absolute error per pixel")
    heat.set_axis_off()
    figure.tight_layout()
    return figure


def write_report(metrics, results_dir, mean_abs_error_map_mm):
    """Write results_dir/report.md and results_dir/report.png; returns their paths."""
    os.makedirs(results_dir, exist_ok=True)
    markdown_path = os.path.join(results_dir, 'report.md')
    image_path = os.path.join(results_dir, 'report.png')
    with atomic_write(markdown_path, 'w') as handle:
        handle.write(report_markdown(metrics))
    with atomic_write(image_path) as file:
        report_figure(metrics, mean_abs_error_map_mm).savefig(file, dpi=100, format='png')
    return markdown_path, image_path


def recognition_summary(result, where='test split'):
    """Rank-1 rate and equal-error rate, neutralised vs raw, or why recognition did not run."""
    if not result or 'skipped' in result:
        return f"recognition skipped: {(result or {}).get('skipped', 'not run')}"
    neutralised, raw = result['neutralised'], result['raw']
    return (f"recognition on the {where} (gallery: {result['n_gallery']} neutral faces; "
            f"{result['n_probes']} expressive probes):\n"
            f"  rank-1 {_format_value('rank1', neutralised['rank1'])} neutralised vs "
            f"{_format_value('rank1', raw['rank1'])} raw; equal-error rate {_format_value('eer', neutralised['eer'])} "
            f"vs {_format_value('eer', raw['eer'])}")


def print_table(metrics):
    """Print the overall comparison, the RMSE per expression and the recognition result."""
    print("\n".join(_text_table(*_overall_rows(metrics))))
    print()
    print("\n".join(_text_table(*_group_rmse_rows(metrics, 'per_expression'))))
    print()
    print(recognition_summary(metrics.get('recognition')))
    if metrics.get('recognition_gallery'):
        print(recognition_summary(metrics['recognition_gallery'], 'generated identities'))
