"""From a raw 3D face scan to a depth image under the project's convention (version 1, see README).

The steps, each a function below:
  1. units: the scan's size says whether it is in metres, centimetres or millimetres (or the caller says);
  2. a coarse start: the nose as the most prominent point seen from the front (+z of the scan);
  3. registration against the face model (face_model.py): first rigid, on the upper face (forehead, eyes,
     nose), which expressions move little, from a grid of starting turns, briefly on a few points, then in
     full from the best; then with the identity, on the points expressions move least; then together with
     the identity and expression weights on the whole face (expression weights kept within 0..1, as the
     model's blend shapes are meant), so that neither the subject's own shape nor the expression biases the
     pose (from the neutral face, a half-open jaw and puffed cheeks, whichever fits closest). The fitted
     neutral face (identity only) gives the nose tip the convention frames the image on;
  4. a crop to what lies near the fitted face (hair, shoulders, background go);
  5. rendering: a mesh with the project's z-buffer rasteriser, a point cloud by splatting (a plane fitted at
     each pixel); then the image is cut to the fitted face's outline and its gaps filled from the fitted face.

Nearest neighbours come from OpenCV's FLANN k-d tree (OpenCV is a dependency already); numpy does the rest.
"""
from dataclasses import dataclass, replace

import cv2
import numpy as np

from depth.convention import BACK_PLANE_MM, IMAGE_CENTRE, IMAGE_SIZE, PIXEL_PITCH_MM, image_frame
from depth.rasterise import render_depth_mm
from faces.expressions import EXCLUDED_FROM_MIXTURES
from faces.generator import rotated_about
from faces.model import MM_PER_MODEL_UNIT, FaceModel

MM_PER_SCAN_UNIT = {'mm': 1.0, 'cm': 10.0, 'm': 1000.0}
FLANN_SINGLE_KD_TREE = 4  # FLANN's algorithm number (cv::flann::FLANN_INDEX_KDTREE_SINGLE)
TYPICAL_SCAN_SIZE_MM = 250.0  # a face, perhaps with some hair and neck: the size the units are judged by
MIN_POINTS = 1000  # fewer cannot sample a face finely enough for the 1.5 mm pixels
# The extents a scan may have, in mm, once its units are known. Grids over the scan (prominent_points' 2 mm
# cells) grow with its extent: a face in um read as mm, or one stray vertex 100 m away, would ask for tens of
# gigabytes. A face is about 150 mm wide and 200 mm tall, so less than MIN_FACE_SPAN_MM across x or y is no
# face (or wrong units); points beyond MAX_SCAN_SPAN_MM of the scan's median are strays, not a head.
MIN_FACE_SPAN_MM = 50.0
MAX_SCAN_SPAN_MM = 1500.0
# Model vertices the registration matches, of the 6,776 the convention's camera sees. The frame's precision grows
# with them: on 27 synthetic scans (scan_benchmark.py, seed 2026) 2,500 left the frame 0.19 degrees off on average
# (27 scans: 26 within the 0.5 mm bound, prepare -> infer 1.27 mm), 6,000 0.15 degrees (27 within, 1.19 mm),
# for 5.5 s instead of 3.6 s per scan (6.6 s with the puffed-cheek start below).
TEMPLATE_POINTS = 6000
SEARCH_RADIUS_MM = 160.0  # scan points this far from the coarse nose can be face; the rest is ignored
CROP_MM = 8.0  # scan points farther than this from the fitted face are hair, shoulders or background
# (yaw, pitch) the rigid registration starts from: the promised range's corners and middles. Each start gets a
# short trial on a few points; only the best is refined in full (a trial costs a tenth of a full refinement).
START_TURNS_DEG = tuple((yaw, pitch) for yaw in (-20, 0, 20) for pitch in (-12, 0, 12))
# The most prominent points tried as the nose, in turn, until one's best turn matches the upper face well. An open
# mouth's lips and raised brows can stand out more than the nose: a full surprise at pitch and roll -12 had its
# nose fifth (with three tried, the best wrong start matched 62 % of the upper face and the scan was refused).
NOSE_CANDIDATES = 5
TRIAL_POINTS, TRIAL_ITERATIONS = 300, 12
# Then the pose with the identity alone on the steady points (those no expression shape moves STEADY_MM or
# more: forehead, nose), then the pose with identity and expression on the whole face: the rigid pose against
# the mean face is a few degrees off (faces differ), and a full fit from there let expression weights make up
# for the turn (4 of 27 synthetic scans at 0.5 to 1.4 mm median height error); on the upper face the identity
# took brows lowered by anger for the subject's own.
RIGID_ITERATIONS, IDENTITY_ITERATIONS, SHAPE_ITERATIONS = 25, 20, 40
STEADY_MM = 3.0
NOSE_RADIUS_MM = 25.0
# The whole-face fit runs from each of these expressions (shape name -> weight, the rest 0) and keeps the fit
# closest to the scan: expressions that change the face's volume have fits that stop in a wrong basin when they
# start from the neutral face. From the closed mouth alone, the fit of a wide-open mouth stayed with the lips
# closed over the opening (jawOpen with mouthClose), although the true weights fit the scan closer: 3 of 27
# synthetic scans of surprise and fear came out 4-8 mm wrong around the mouth (scan_benchmark.py, infer's RMSE:
# 1.39 -> 1.28 mm). Puffed cheeks (0.87) were explained by frowns, dimples and a wider identity, 2 degrees off
# (median height error 2.8 mm); from puffed cheeks the fit finds them (0.21 mm).
WHOLE_FACE_STARTS = ({}, {'jawOpen': 0.5}, {'cheekPuff_L': 1.0, 'cheekPuff_R': 1.0})
# Shapes the fit leaves out: gaze (eyeLook*) turns the eyeballs and barely changes depth (make_dataset leaves it
# out of mixtures for the same reason), so its weights only fitted noise (0.2-0.5 where the faces had none) and
# tilted the frame: the three seeds of scan_benchmark.py went from 80 to 81 of 81 scans within 0.5 mm, the
# median height error from 0.18-0.21 to 0.17-0.20 mm.
UNFITTED_SHAPES = EXCLUDED_FROM_MIXTURES
# Matches farther than this many times the median match distance are left out (and never below the floor): hair
# and the rims of holes; 3 left a scanner's scan of a smiling face at 0.54 mm, 2 at 0.40 mm. With 6,000 points,
# 1.5 instead of 2 left the worst of 81 synthetic scans at 0.43 instead of 0.49 mm and prepare -> infer at 1.18
# instead of 1.20 mm (mean of seeds 2026, 7, 11); a floor of 0.75 mm instead of 1 did worse (seed 11: 0.45 mm).
OUTLIER_FACTOR = 1.5
OUTLIER_FLOOR_MM = 1.0
# Matches are first taken within this distance, shrinking by a fifth each iteration to the bound above. The
# identity stage starts close, from a rigid pose already found: from 20 mm, the forehead took hair for skin
# (a two-view scan with hair at 0.61 mm median height error, 0.41 mm from 5 mm).
MATCH_START_MM, IDENTITY_MATCH_START_MM = 20.0, 5.0
# A scan is a face when the rigid upper face of the model finds it near this share of its points (faces:
# 0.74 to 1, turned ones the least; a ball of a head's size: 0.55), and the whole model then fits it this closely.
FACE_INLIER_FRACTION = 0.65
MATCH_MM = 3.0  # a template point with a scan point this near has a match
GOOD_START_INLIER_FRACTION = 0.8  # a nose guess whose best turn matches this much of the upper face is taken
FACE_RESIDUAL_MM = 2.0
# Ridge terms (mm^2) on the weights (identity weights ~ N(0, 1); expression weights 0 to 1, mostly 0). They
# start RIDGE_START_FACTOR times stronger and relax by RIDGE_RELAXATION per iteration: a shape fitted in full
# from the first, loose matches of a face still turned a few degrees wanders off (identity weights of norm
# 20-25 where faces have about 10), while the final, weak ridge lets the fit follow the scan. On 27 synthetic
# scans (scan_benchmark.py) an identity ridge of 2 mm^2 left 6 above 0.5 mm median height error, 0.1 mm^2 let
# the identity wander in one, 0.5 mm^2 did best.
RIDGE_IDENTITY_MM2 = 0.5
RIDGE_EXPRESSION_MM2 = 0.1
RIDGE_START_FACTOR, RIDGE_RELAXATION = 100.0, 0.8
SPLAT_FRONT_MM = 3.0  # points of a pixel this far behind its front-most point belong to a hidden surface
IN_FRONT_MM = 4.0  # a scan surface this far in front of the fitted face is no skin (see completed_by_fitted_face)
BEHIND_MM = 8.0  # nor is one this far behind it, seen through a hole


class ScanError(ValueError):
    """A scan that cannot be prepared (the message says why, on one line)."""


# ------------------------------------------------------------------------------------------------- units

def scan_size(vertices):
    """The scan's extent (its units): the largest 1st-99th percentile span along x, y, z (spikes ignored)."""
    low, high = np.percentile(vertices, [1, 99], axis=0)
    return float((high - low).max())


def detect_units(vertices):
    """'m', 'cm' or 'mm': the unit that makes the scan closest (on a log scale) to a face's size."""
    size = max(scan_size(vertices), 1e-12)
    return min(MM_PER_SCAN_UNIT, key=lambda unit: abs(np.log(size * MM_PER_SCAN_UNIT[unit] / TYPICAL_SCAN_SIZE_MM)))


# ------------------------------------------------------------------------------------------ the template

@dataclass
class FaceTemplate:
    """What the registration needs of the face model, in mm."""
    mean: np.ndarray  # (V, 3) the model's mean neutral face
    modes: np.ndarray  # (M, V, 3) identity modes, then the expression modes the fit uses (not UNFITTED_SHAPES)
    identity_count: int
    triangles: np.ndarray
    nose_tip: int
    sample: np.ndarray  # indices of the vertices the registration matches: seen from the front, in the image
    upper: np.ndarray  # the part of `sample` on the upper face (forehead, eyes, nose)
    normals: np.ndarray  # (len(sample), 3) unit normals of the mean face at `sample`
    steady: np.ndarray  # the part of `sample` that no expression shape moves by STEADY_MM or more
    starts: list  # WHOLE_FACE_STARTS as (indices in `modes`, weights)

    def face(self, weights):
        """(V, 3) the model face with these identity-then-expression weights."""
        return self.mean + np.einsum('m,mvk->vk', weights, self.modes)

    def neutral_nose_tip(self, weights):
        identity = weights[:self.identity_count]
        return self.mean[self.nose_tip] + identity @ self.modes[:self.identity_count, self.nose_tip]


def face_template(model: FaceModel, seed=0):
    mean = MM_PER_MODEL_UNIT * model.neutral.astype(np.float64)
    identity_modes = MM_PER_MODEL_UNIT * model.identity_modes.astype(np.float64)
    expression_modes = MM_PER_MODEL_UNIT * model.expression_modes.astype(np.float64)
    seen = vertices_seen_from_front(mean, model.triangles, mean[model.nose_tip])
    sample = np.random.default_rng(seed).permutation(seen)[:TEMPLATE_POINTS]
    relative = mean[sample] - mean[model.nose_tip]
    # Above the base of the nose and inside the outer eye corners: forehead, brows, eyes and nose.
    upper = sample[(relative[:, 1] > -15) & (np.abs(relative[:, 0]) < 55)]
    # The whole-face fit takes every vertex about the nose as well: the image is framed on the fitted nose tip,
    # so its heights err by as much as the fit does there.
    near_nose = seen[np.linalg.norm(mean[seen] - mean[model.nose_tip], axis=1) < NOSE_RADIUS_MM]
    sample = np.concatenate([sample, np.setdiff1d(near_nose, sample)])
    normals = vertex_normals(mean, model.triangles)[sample]
    motion = np.linalg.norm(expression_modes[:, sample], axis=2).max(axis=0)  # by any expression, gaze too
    steady = sample[motion < STEADY_MM]
    chosen = [index for index, name in enumerate(model.expression_names) if not name.startswith(UNFITTED_SHAPES)]
    fitted = [model.expression_names[index] for index in chosen]
    starts = [([len(identity_modes) + fitted.index(name) for name in start], list(start.values()))
              for start in WHOLE_FACE_STARTS]
    return FaceTemplate(mean, np.concatenate([identity_modes, expression_modes[chosen]]), len(identity_modes),
                        model.triangles, model.nose_tip, sample, upper, normals, steady, starts)


def vertices_seen_from_front(vertices, triangles, nose_tip, tolerance_mm=1.5):
    """Indices of the vertices inside the convention's image that a frontal depth camera sees: at most
    tolerance_mm below the surface rendered at their nearest pixel centre (slopes make up the difference)."""
    depth = render_depth_mm(vertices, nose_tip, triangles)
    column, row, height = image_frame(vertices, nose_tip).T
    column, row = np.round(column).astype(int), np.round(row).astype(int)
    inside = (column >= 0) & (column < IMAGE_SIZE) & (row >= 0) & (row < IMAGE_SIZE)
    seen = np.zeros(len(vertices), bool)
    seen[inside] = height[inside] > depth[row[inside], column[inside]] - tolerance_mm
    return np.flatnonzero(seen & (height > 0))


def vertex_normals(vertices, triangles):
    """Area-weighted unit vertex normals of a mesh."""
    corners = vertices[triangles]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.stack([np.bincount(triangles.ravel(), np.repeat(face_normals[:, k], 3), len(vertices))
                        for k in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------- registration

@dataclass
class Registration:
    rotation: np.ndarray  # scan (mm) -> model frame: model = rotation @ scan + translation
    translation: np.ndarray
    weights: np.ndarray  # identity then expression weights of the fitted face
    residual_mm: float  # median distance of the matched template points to the scan
    inlier_fraction: float  # share of the template points with a scan point near them (3 mm)
    capped_error_mm2: float = np.inf  # mean squared distance of the template points to the scan, each capped at 3 mm

    def to_model(self, points):
        return points @ self.rotation.T + self.translation


def prominent_points(points, count, cell_mm=2.0, surround_mm=40.0):
    """The `count` most prominent points seen along -z, most prominent first, each at least surround_mm / 2
    from the others: the nose of a roughly frontal face is one of them, usually the first.

    Prominence is the height above the surroundings on its left, right, upper and lower side, whichever is
    highest: height alone would take the forehead of a face tilted back, or a turned cheek, and a chin
    stands out only above the neck. A median filter first removes isolated spikes."""
    low = points[:, :2].min(axis=0)
    cells = np.floor((points[:, :2] - low) / cell_mm).astype(int)
    columns, rows = cells.max(axis=0) + 1
    height = np.full(rows * columns, -np.inf)
    np.maximum.at(height, cells[:, 1] * columns + cells[:, 0], points[:, 2])
    floor = points[:, 2].min()
    occupied = np.isfinite(height).reshape(rows, columns).astype(np.float32)
    height_map = cv2.medianBlur(np.where(occupied.ravel() > 0, height - floor, 0).reshape(rows, columns)
                                .astype(np.float32), 5)
    size = int(surround_mm / cell_mm) | 1
    prominence = np.where(occupied > 0, np.inf, -np.inf).astype(np.float32)
    for side in _half_windows(size):
        cover = cv2.filter2D(occupied, -1, side, borderType=cv2.BORDER_CONSTANT)
        mean = cv2.filter2D(height_map * occupied, -1, side, borderType=cv2.BORDER_CONSTANT) / np.maximum(cover, 1e-6)
        # A side that is mostly empty (a scan's outline) says nothing: the mean would sink to the floor.
        prominence = np.minimum(prominence, np.where(cover > 0.7, height_map - mean, -np.inf))
    peaks = []
    for _ in range(count):
        row, column = np.unravel_index(np.argmax(prominence), prominence.shape)
        if not np.isfinite(prominence[row, column]):
            break
        peaks.append([low[0] + (column + 0.5) * cell_mm, low[1] + (row + 0.5) * cell_mm,
                      height_map[row, column] + floor])
        cv2.circle(prominence, (int(column), int(row)), size // 2, -np.inf, -1)  # the next peak lies elsewhere
    return np.array(peaks)


def _half_windows(size):
    """Four size x size averaging kernels over the left, right, upper and lower half (centre line excluded)."""
    half = np.zeros((size, size), np.float32)
    half[:, :size // 2] = 1.0 / (size * (size // 2))
    return half, half[:, ::-1].copy(), half.T.copy(), half.T[::-1].copy()


def small_rotation(omega):
    """The rotation matrix of the rotation vector omega (Rodrigues)."""
    return cv2.Rodrigues(np.asarray(omega, np.float64).reshape(3, 1))[0]


def nearest_neighbour_index(points):
    """OpenCV's FLANN single k-d tree of points: exact and deterministic answers, and on 50,000 points 6x
    faster to build and 20x faster to ask than FLANN's randomised trees (whose approximate answers moved the
    median height error of a scan by up to 0.1 mm from one run to the next)."""
    return cv2.flann_Index(points.astype(np.float32), dict(algorithm=FLANN_SINGLE_KD_TREE, leaf_max_size=10))


def nearest_indexed(index, queries):
    """(indices, squared distances) of the nearest indexed point to each query."""
    found, squared = index.knnSearch(queries.astype(np.float32), 1, params=dict(checks=-1))
    return found[:, 0], squared[:, 0]


class NearestScanPoint:
    """Nearest scan points to query points, with a k-d tree built once per scan."""

    def __init__(self, points):
        self.points = points
        self.index = nearest_neighbour_index(points)

    def __call__(self, queries):
        return self.points[nearest_indexed(self.index, queries)[0]]


def register(points, template: FaceTemplate):
    """The Registration of scan points (mm) to the face model; see the module doc."""
    best_per_peak = []
    trial_points = template.upper[:TRIAL_POINTS]  # template.sample (and so upper) is in random order
    for nose_guess in prominent_points(points, NOSE_CANDIDATES):
        nearest = NearestScanPoint(points[np.linalg.norm(points - nose_guess, axis=1) < SEARCH_RADIUS_MM])
        trials = []
        for yaw, pitch in START_TURNS_DEG:
            rotation = rotated_about(np.eye(3), np.zeros(3), yaw, pitch, 0).T
            start = Registration(rotation, template.mean[template.nose_tip] - rotation @ nose_guess,
                                 np.zeros(len(template.modes)), np.inf, 0.0)
            trials.append(_refine(start, template, nearest, trial_points, fit_shape=False, iterations=TRIAL_ITERATIONS))
        # The share of points matched picks the turn: the median distance of the matched ones favours a wrong
        # turn that matches few points closely (a face tilted up, 9 degrees off, over the right turn).
        best_trial = max(trials, key=lambda registration: registration.inlier_fraction)
        best_per_peak.append((_refine(best_trial, template, nearest, template.upper, fit_shape=False,
                                      iterations=RIGID_ITERATIONS), nearest))
        # The next peaks only when this one matched the upper face poorly: faces match 0.74 to 1 of it, and the
        # closest turn of a wrong peak (a chin, a brow) can match more points than the nose's, only loosely.
        if best_per_peak[-1][0].inlier_fraction >= GOOD_START_INLIER_FRACTION:
            break
    if not best_per_peak:   # e.g. points sparser than the 2 mm cells of prominent_points leave every side empty
        raise ScanError("does not look like a face (no point stands out above its surroundings as a nose does; "
                        "a scan sampled more coarsely than every 2 mm cannot be read this way)")
    best, nearest = max(best_per_peak, key=lambda candidate: candidate[0].inlier_fraction)
    if best.inlier_fraction < FACE_INLIER_FRACTION:  # no nose, eyes and forehead where a face has them
        raise ScanError(f"does not look like a face (the upper face of the face model finds the scan near only "
                        f"{100 * best.inlier_fraction:.0f} % of its points)")
    return _fit_shape(best, template, nearest)


def register_framed(points, template: FaceTemplate):
    """The Registration of points already in the convention's frame (a depth image's: the neutral nose tip at
    the origin, frontal), so without register's search for the nose and the turn: from the frontal pose at the
    origin, the upper face refined rigidly, then the shape as register fits it."""
    nearest = NearestScanPoint(points)
    start = Registration(np.eye(3), template.mean[template.nose_tip].copy(), np.zeros(len(template.modes)),
                         np.inf, 0.0)
    rigid = _refine(start, template, nearest, template.upper, fit_shape=False, iterations=RIGID_ITERATIONS)
    return _fit_shape(rigid, template, nearest)


def _fit_shape(best, template, nearest):
    """From a rigid registration: the identity on the steady points, then identity and expression on the whole
    face from each of the template's starts, keeping the fit closest to the scan."""
    best = _refine(best, template, nearest, template.steady, fit_shape=True, iterations=IDENTITY_ITERATIONS,
                   with_expression=False, match_start_mm=IDENTITY_MATCH_START_MM)
    fits = []
    for indices, values in template.starts:
        weights = best.weights.copy()
        weights[indices] = values
        fits.append(_refine(replace(best, weights=weights), template, nearest, template.sample, fit_shape=True,
                            iterations=SHAPE_ITERATIONS))
    return min(fits, key=lambda fit: fit.capped_error_mm2)


def _refine(registration, template, nearest, vertices, fit_shape, iterations, with_expression=True,
            match_start_mm=MATCH_START_MM):
    """Iterate point-to-plane ICP (and, fit_shape, the model weights: identity, and expression unless
    with_expression is False) from a registration, matches first taken within match_start_mm."""
    rotation, translation, weights = registration.rotation, registration.translation, registration.weights.copy()
    position = {vertex: i for i, vertex in enumerate(template.sample)}
    normals = template.normals[[position[vertex] for vertex in vertices]]
    modes = template.modes[:, vertices]  # (M, n, 3)
    centre = template.mean[template.nose_tip]
    for iteration in range(iterations):
        target, matched, distance = _matches(template.mean[vertices], modes, weights, nearest, rotation, translation)
        limit = max(match_start_mm * 0.8 ** iteration, OUTLIER_FACTOR * np.median(distance), OUTLIER_FLOOR_MM)
        inlier = distance < limit
        if inlier.sum() < 20:
            break
        # Fitting the shape solves for all weights at once, from the mean face; else they stay as they are.
        base = template.mean[vertices] if fit_shape else target
        if fit_shape:  # the planes of the face fitted so far: an open mouth or a raised brow turns them
            normals = vertex_normals(template.face(weights), template.triangles)[vertices]
        rows, values = point_to_plane_system(matched[inlier] - centre, base[inlier] - centre, normals[inlier],
                                              modes[:, inlier] if fit_shape else None)
        if fit_shape:
            solution = _solve_pose_and_weights(rows, values, template.identity_count, with_expression,
                                               max(1.0, RIDGE_START_FACTOR * RIDGE_RELAXATION ** iteration))
            weights = solution[6:]
        else:
            solution = np.linalg.lstsq(rows, values, rcond=None)[0]
        step = small_rotation(solution[:3])
        rotation = step @ rotation
        translation = step @ (translation - centre) + centre + solution[3:6]
    _, _, distance = _matches(template.mean[vertices], modes, weights, nearest, rotation, translation)
    inlier = distance < MATCH_MM
    residual = float(np.median(distance[inlier])) if inlier.any() else np.inf
    return Registration(rotation, translation, weights, residual, float(inlier.mean()),
                        float(np.mean(np.minimum(distance, MATCH_MM) ** 2)))


def _solve_pose_and_weights(rows, values, identity_count, with_expression, ridge_factor):
    """The least-squares pose step and weights of the point-to-plane system with ridge terms, expression
    weights held within 0..1 (at 0 without expression; bounds met by fixing the weights that cross them and
    solving for the rest, until none crosses and none fixed would move inwards)."""
    unknowns = rows.shape[1]
    ridge = np.zeros(unknowns)
    ridge[6:6 + identity_count] = RIDGE_IDENTITY_MM2 * ridge_factor
    ridge[6 + identity_count:] = RIDGE_EXPRESSION_MM2 * ridge_factor
    # OpenCV's single-threaded products: numpy's threaded BLAS is 3x slower on a busy 2-core machine.
    matrix = cv2.mulTransposed(rows, True) + np.diag(ridge)
    rhs = cv2.gemm(rows, values[:, None], 1, None, 0, flags=cv2.GEMM_1_T).ravel()
    lower, upper = np.full(unknowns, -np.inf), np.full(unknowns, np.inf)
    lower[6 + identity_count:], upper[6 + identity_count:] = 0.0, 1.0 if with_expression else 0.0
    movable = lower < upper  # without expression its weights are held at 0: never to be freed
    solution, free = np.zeros(unknowns), movable.copy()
    for _ in range(2 * unknowns):  # each round fixes or frees at least one weight; it ends in a few
        block = np.ix_(free, free)
        known = matrix[:, ~free] @ solution[~free]
        solution[free] = cv2.solve(matrix[block], (rhs - known)[free][:, None], flags=cv2.DECOMP_CHOLESKY)[1].ravel()
        below, above = free & (solution < lower), free & (solution > upper)
        if below.any() or above.any():
            solution[below], solution[above] = lower[below], upper[above]
            free &= ~(below | above)
            continue
        gradient = matrix @ solution - rhs
        inwards = movable & ~free & (((solution <= lower) & (gradient < 0)) | ((solution >= upper) & (gradient > 0)))
        if not inwards.any():
            break
        free |= inwards
    return solution


def _matches(mean, modes, weights, nearest, rotation, translation):
    """The template points (model frame), the scan point nearest each (moved into the model frame), and their
    distances. Matches come from the template's side: extra scan parts (hair, shoulders) then never pull."""
    target = mean + np.einsum('m,mvk->vk', weights, modes)
    matched = nearest((target - translation) @ rotation) @ rotation.T + translation
    return target, matched, np.linalg.norm(matched - target, axis=1)


def point_to_plane_system(matched, base, normals, modes):
    """Rows and values of the linearised point-to-plane equations n . (q + r x q + t - base - modes . w) = 0,
    coordinates about the nose; unknowns: the rotation vector r, the translation t and (modes given) weights w."""
    columns = [np.cross(matched, normals), normals]
    if modes is not None:
        columns.append(-np.einsum('mvk,vk->vm', modes, normals))
    return np.concatenate(columns, axis=1), np.einsum('vk,vk->v', base - matched, normals)


# ------------------------------------------------------------------------------------------- rendering

@dataclass
class PreparedScan:
    depth_mm: np.ndarray  # (128, 128) the depth image under the convention
    units: str  # the scan's units, as given or detected
    points_mm: np.ndarray  # the scan's points in mm, as the scan had them
    framed_mm: np.ndarray  # the same points in the convention's frame: x, y from the nose tip, z up to it
    kept: np.ndarray  # which points lie on the face (the rest is cropped)
    registration: Registration
    triangles: np.ndarray  # the scan's triangles over points_mm (none for a point cloud)


def prepare_scan(scan, template: FaceTemplate, units=None):
    """The PreparedScan of a mesh_io.Scan (units None: detected); ScanError when it cannot be a face."""
    if len(scan.vertices) < MIN_POINTS:
        raise ScanError(f"has {len(scan.vertices)} points, too few for a face (at least {MIN_POINTS})")
    units = units or detect_units(scan.vertices)
    points, triangles = within_face_extent(scan, units)
    registration = register(points, template)
    if registration.residual_mm > FACE_RESIDUAL_MM:
        raise ScanError(f"does not look like a face in {units} (the face model fits it only within "
                        f"{registration.residual_mm:.1f} mm; --units sets the units)")
    nose_tip = template.neutral_nose_tip(registration.weights)
    in_model = registration.to_model(points)
    fitted_face = template.face(registration.weights)
    kept = near_face(in_model, fitted_face)
    framed = in_model - nose_tip
    depth = framed_depth_mm(triangles, framed, kept, fitted_face - nose_tip, template)
    return PreparedScan(depth, units, points, framed, kept, registration, triangles)


def framed_depth_mm(triangles, framed, kept, fitted_framed, template: FaceTemplate):
    """The depth image of the scan's kept points, already in the convention's frame (`framed`), completed by
    the fitted face (its vertices in the same frame): the scan rendered as a mesh of its triangles, or splatted
    as a point cloud when it has none."""
    if len(triangles) == 0:
        depth = splat_depth_mm(framed[kept])
    else:
        depth = render_depth_mm(framed, np.zeros(3), triangles[kept[triangles].all(axis=1)])
    fitted = render_depth_mm(fitted_framed, np.zeros(3), template.triangles)
    return completed_by_fitted_face(depth, fitted)


def within_face_extent(scan, units):
    """(points in mm, triangles) without the stray points far from the scan's median; ScanError unless the
    scan spans a face (identical, collinear or flat-on-edge points, a face in km or um, the wrong --units).
    The spans are the 1st-99th percentile ones, so that a stray point does not count."""
    with np.errstate(over='ignore', invalid='ignore'):
        points = scan.vertices * MM_PER_SCAN_UNIT[units]
        spans = np.subtract(*np.percentile(points, [99, 1], axis=0))
        kept = (np.abs(points - np.median(points, axis=0)) <= MAX_SCAN_SPAN_MM).all(axis=1)
    if not ((spans[:2] >= MIN_FACE_SPAN_MM).all() and spans.max() <= MAX_SCAN_SPAN_MM
            and _second_spread(points[kept]) >= MIN_FACE_SPAN_MM / 10):
        raise ScanError(f"spans {' x '.join(f'{span:.3g}' for span in spans)} mm in {units}: not a face, which "
                        f"is about 150 x 200 mm (--units sets the units)")
    renumbered = np.cumsum(kept) - 1
    return points[kept], renumbered[scan.triangles[kept[scan.triangles].all(axis=1)]]


def _second_spread(points, sample=10000):
    """The standard deviation across the points' main direction: near 0 for points on a line (however it
    is turned), tens of mm for a face. Infinite for values that cannot be spread (then the spans refuse)."""
    if not np.isfinite(points).all() or len(points) < 3:
        return np.inf if len(points) >= 3 else 0.0
    chosen = points[np.random.default_rng(0).permutation(len(points))[:sample]]
    return np.linalg.svd(chosen - chosen.mean(axis=0), compute_uv=False)[1] / np.sqrt(len(chosen))


def depth_image_points(depth_mm):
    """The surface points (mm) of a depth image in the convention's frame: image_frame's inverse."""
    rows, columns = np.nonzero(depth_mm > 0)
    return np.stack([(columns - IMAGE_CENTRE) * PIXEL_PITCH_MM, (IMAGE_CENTRE - rows) * PIXEL_PITCH_MM,
                     depth_mm[rows, columns] - BACK_PLANE_MM], axis=1)


def fitted_neutral_depth_mm(depth_mm, template: FaceTemplate):
    """The field's usual neutraliser of a depth image: pose, identity and expression of the face model fitted
    to its points, re-rendered with the expression weights at 0 in the image's own pixel frame."""
    registration = register_framed(depth_image_points(depth_mm), template)
    weights = registration.weights.copy()
    weights[template.identity_count:] = 0.0
    in_image = (template.face(weights) - registration.translation) @ registration.rotation  # to_model's inverse
    return render_depth_mm(in_image, np.zeros(3), template.triangles)


def near_face(points, face, distance_mm=CROP_MM):
    """Which points lie within distance_mm of a vertex of the fitted face."""
    return nearest_indexed(nearest_neighbour_index(face), points)[1] < distance_mm ** 2


def splat_depth_mm(framed):
    """A depth image of a point cloud: at each pixel centre, the height of a plane fitted (least squares) to the
    front-most surface's points of the pixel and its eight neighbours. A mean of the pixel's own points sits
    up to half a pixel's rise low on a slope (the sides of the nose, the jaw); the plane does not."""
    column, row, height = image_frame(framed, np.zeros(3)).T
    pixel_column, pixel_row = np.round(column).astype(int), np.round(row).astype(int)
    keep = ((pixel_column >= 0) & (pixel_column < IMAGE_SIZE) & (pixel_row >= 0) & (pixel_row < IMAGE_SIZE)
            & (height > 0))
    column, row, height = column[keep], row[keep], height[keep]
    pixel_column, pixel_row = pixel_column[keep], pixel_row[keep]
    pixels = IMAGE_SIZE * IMAGE_SIZE
    front = np.zeros(pixels)
    np.maximum.at(front, pixel_row * IMAGE_SIZE + pixel_column, height)
    visible = height > front[pixel_row * IMAGE_SIZE + pixel_column] - SPLAT_FRONT_MM
    column, row, height = column[visible], row[visible], height[visible]
    pixel_column, pixel_row = pixel_column[visible], pixel_row[visible]
    sums = np.zeros((pixels, 3, 4))  # per pixel: [1, dx, dy]^T [1, dx, dy, z], summed over its points
    for shift_row in (-1, 0, 1):
        for shift_column in (-1, 0, 1):
            target_row, target_column = pixel_row + shift_row, pixel_column + shift_column
            inside = (target_row >= 0) & (target_row < IMAGE_SIZE) & (target_column >= 0) & (target_column < IMAGE_SIZE)
            # Only points of the target pixel's own front surface: a neighbour on the far side of an edge is not.
            target = target_row * IMAGE_SIZE + target_column
            inside[inside] &= height[inside] > front[target[inside]] - SPLAT_FRONT_MM
            terms = np.stack([np.ones(inside.sum()), column[inside] - target_column[inside],
                              row[inside] - target_row[inside]], axis=1)
            values = np.concatenate([terms, height[inside, None]], axis=1)
            np.add.at(sums, target[inside], terms[:, :, None] * values[:, None, :])
    depth = np.zeros(pixels)
    counted = (sums[:, 0, 0] > 0) & (front > 0)
    mean = sums[counted, 0, 3] / sums[counted, 0, 0]
    matrix, right = sums[counted, :, :3], sums[counted, :, 3]
    solvable = np.abs(np.linalg.det(matrix)) > 1e-3  # points spread over the patch, not on a line
    plane = mean.copy()
    plane[solvable] = np.linalg.solve(matrix[solvable], right[solvable][:, :, None])[:, 0, 0]
    depth[counted] = plane
    return depth.reshape(IMAGE_SIZE, IMAGE_SIZE)


def completed_by_fitted_face(depth_mm, fitted_mm):
    """The scan's depth image within the fitted face's outline; the fitted face where the scan has no surface
    (holes, what the scanner did not see), one more than IN_FRONT_MM in front of the fitted face (a scanner's
    mesh bridging an open mouth or a nostril, hair the crop left, a splat bulging at the outline) or one more
    than BEHIND_MM behind it (the inside of a mesh seen through a hole). The network was trained on complete
    faces with the model's outline. On the 27 synthetic scans of scan_benchmark.py, --mode infer's RMSE (with
    its default 10 mm threshold) was 2.17 mm with holes up to 600 mm^2 inpainted and the rest left empty,
    2.00 mm with the gaps filled, 1.87 mm with plane-fitted splats, 1.76 mm replacing surfaces in front too
    (2 mm: 1.77). Without the threshold, as the test split is measured: 1.28 mm, 1.25 mm replacing surfaces
    behind too (4 mm: about the same; before the fit started from an open jaw too, this rule made it worse, 1.39 ->
    1.49 mm: the fitted mouth, wrongly closed, then replaced what the scanner saw inside an open one)."""
    replaced = (depth_mm <= 0) | (depth_mm > fitted_mm + IN_FRONT_MM) | (depth_mm < fitted_mm - BEHIND_MM)
    return np.where(fitted_mm <= 0, 0.0, np.where(replaced, fitted_mm, depth_mm))
