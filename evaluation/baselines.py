"""Baselines the model is compared with: doing nothing (identity), the mean neutral face of the training
subjects, a linear map (PCA on both sides + ridge regression), and the field's usual neutraliser, a fit of the
face model with its expression removed (model_fit); heights in mm, 0 = background."""
import time

import numpy as np

from evaluation.metrics import as_image_batch, face_mask

BASELINE_NAMES = ('identity', 'mean_face', 'linear', 'model_fit')


def mean_face(train_neutral_targets_mm):
    """Mean neutral depth (H x W, mm) of the training subjects' neutral faces.

    Each pixel is averaged over the faces that cover it, and is background (0) where fewer than half
    of them do.  A plain mean that counted background zeros would turn the face outline into a ramp of
    fractional heights that no real face has.  Pass one neutral image per subject, or subjects with more
    images weigh more.
    """
    faces = as_image_batch(train_neutral_targets_mm)
    covered = face_mask(faces)
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
        images = as_image_batch(images_mm)
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
    inputs = as_image_batch(inputs_mm).astype(np.float32)
    return {
        'identity': inputs,
        'mean_face': np.broadcast_to(np.asarray(neutral_mean_mm, np.float32), inputs.shape).copy(),
        'linear': linear_baseline.predict(inputs),
    }


def model_fit_sample(count, every):
    """The deterministic sample of the test images the model fit runs on: every `every`-th, from the first."""
    return np.arange(0, count, every)


def model_fit_outputs(inputs_mm):
    """The model-fit baseline's outputs (N x H x W, mm) and its seconds per image: for each input, pose, identity
    and expression of the face model (facemodel/) fitted to its points with scanning.alignment's steps, and the
    fitted face re-rendered with the expression weights at 0 in the input's own pixel frame."""
    from faces.model import DEFAULT_FACE_MODEL, load_face_model  # here: only test mode with a fit needs them
    from scanning.alignment import face_template, fitted_neutral_depth_mm
    template = face_template(load_face_model(DEFAULT_FACE_MODEL))
    started = time.monotonic()
    outputs = np.stack([fitted_neutral_depth_mm(image, template) for image in as_image_batch(inputs_mm)])
    return outputs, (time.monotonic() - started) / max(len(outputs), 1)
