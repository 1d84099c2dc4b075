"""Generic variations of a rendered subject, so that training faces are not all one linear model's faces.

Every training face comes from the ICT Face Model Light, and a network trained on them only is barely better
than doing nothing on faces from another model built from real scans. This module varies the rendered
subjects in ways real scans and other face models differ from the ICT model in general (not in the ways of
any one other model):

  reshape            identities outside the model's span: smooth non-linear warps of the vertex positions
  outline            outlines as scanners and other models leave them: cropped, no neck, no ears
  whole_face_motion  expressions that move the whole face: the upper or lower face turns, the outline drifts,
                     the nose tip lifts
  mouth_depth        mouth interiors of different depths
  faceted            coarse faceted meshes (re-rendered from a coarse mesh of the rendered image)
  scanner_noise      scanner noise on the input image: Gaussian noise, low-frequency bumps, small holes
  warp               another kind of reshaping, held out from training for validation: a random smooth
                     polynomial field over the whole face

Input and target stay ONE person: a subject's reshaping, outline and coarse grid are drawn once, from the
NEUTRAL mesh, and applied to its neutral (the target) and to every expressive mesh (the inputs) alike; the
target is rendered neutral, in the frame of the reshaped neutral's nose tip. Whole-face motion and mouth depth
change expressive meshes only, and scanner noise the input image only.

How faces.generator.render_subject uses it (`render_depth_mm` is depth.rasterise's renderer):

    subject = vary_subject(neutral, model.triangles, model.nose_tip, switches, subject_rng)
    target = subject.render(subject.neutral_mm, render_depth_mm)
    for each render:
        face = model.expressive_face_mm(subject.neutral_mm, weights)   # the reshaped neutral + expression
        face = vary_expression(subject, face, expression_intensity(weights), switches, render_rng)
        (pose jitter about subject.nose_tip_mm, as before)
        depth = vary_input_image(subject.render(face, render_depth_mm), switches, render_rng)

(`subject.reshaped(face)` gives the same reshaped expressive mesh from an expressive mesh of the original
neutral.) Every random choice comes from the numpy Generator passed in, so a seed gives the same arrays. Each
call first draws one seed per variation whether or not its switch is on, so turning one variation on or off
leaves the others' draws as they were.

Coordinates are the face model's, in mm: x to the subject's left as seen by the camera (right of the image),
y up, z towards the camera. Positions of face regions are given relative to the neutral nose tip, in mm, from
average adult anatomy (the nose tip about 80 mm above the chin, the jaw angles about 115 mm apart, the ear
canals about 95 mm behind the nose tip); they place smooth, wide bumps and need no landmarks of any model.
"""
from dataclasses import dataclass, fields

import numpy as np

from depth.rasterise import rasterise_depth

VARIATIONS = ("reshape", "outline", "whole_face_motion", "mouth_depth", "faceted", "scanner_noise", "warp")
# warp is the reshaping that no training run uses: the held-out validation family is made with it (see
# faces.generated), so that its score measures generalisation to identities of a kind training never saw.


@dataclass(frozen=True)
class Switches:
    """Which variations are on; all off leaves every mesh, triangle and image exactly as it was."""
    reshape: bool = False
    outline: bool = False
    whole_face_motion: bool = False
    mouth_depth: bool = False
    faceted: bool = False
    scanner_noise: bool = False
    warp: bool = False

    @classmethod
    def all_on(cls):
        return cls(**{name: True for name in VARIATIONS})

    @classmethod
    def only(cls, *names):
        """Switches with just these variations on; ValueError for a name that is not a variation."""
        unknown = sorted(set(names) - set(VARIATIONS))
        if unknown:
            raise ValueError(f"unknown variations {', '.join(unknown)}; known: {', '.join(VARIATIONS)}")
        return cls(**{name: name in names for name in VARIATIONS})

    def names(self):
        return tuple(field.name for field in fields(self) if getattr(self, field.name))


# ---------------------------------------------------------------------------------------------------------
# Amplitudes. A face is about 150 mm wide and 200 mm high; the ICT identity modes vary it by roughly +-10 mm.
# ---------------------------------------------------------------------------------------------------------
# reshape: global proportions (fractions of the distance from the nose tip).
RESHAPE_SCALE_MAX = 0.04  # width, height and depth each scaled by up to +-4 % (+-3.5 mm at the face's edge)
RESHAPE_UPPER_LOWER_MAX = 0.04  # upper and lower face heights changed by up to +-4 % relative to each other
RESHAPE_SHEAR_MAX = 0.015  # a mild lateral lean of the face (1.5 mm per 100 mm of height): asymmetry
# reshape: local warps, mm at the centre of each smooth (Gaussian) region.
NOSE_PROJECTION_MAX_MM = 3.0  # the nose tip further out or in
NOSE_LENGTH_MAX_MM = 2.5  # the nose tip lower or higher
NOSE_WIDTH_MAX = 0.2  # the nose's wings spread or narrowed by up to 20 % of their distance from the midline
NOSE_BRIDGE_MAX_MM = 2.0  # a hump or a flat bridge
NOSE_DEVIATION_MAX_MM = 1.2  # a nose a little off the midline
LIPS_MAX_MM = 1.5  # fuller or thinner lips
CHIN_PROJECTION_MAX_MM = 4.0
CHIN_LENGTH_MAX_MM = 4.0
JAW_WIDTH_MAX_MM = 4.0  # each jaw angle outwards or inwards
CHEEK_MAX_MM = 2.5  # fuller or hollower cheeks (forwards and outwards)
BROW_RIDGE_MAX_MM = 2.0
FOREHEAD_MAX_MM = 3.0  # a more sloping or a more upright forehead
ASYMMETRY_MAX = 0.3  # the left and right amplitudes of a paired warp differ by up to +-30 %
# Whatever the draws, no vertex moves more than this: the whole field is scaled down when one would (the
# maxima above add up to more; about one subject in three is scaled down, mostly by the neck's far vertices).
RESHAPE_LIMIT_MM = 8.0

# outline: kept region of the neutral face, mm from the nose tip.
OUTLINE_HALF_WIDTH_MM = (62.0, 85.0)  # half width of the kept (super-)ellipse
OUTLINE_UP_MM = (70.0, 105.0)  # its extent up the forehead
OUTLINE_DOWN_MM = (65.0, 90.0)  # its extent down to the chin (the chin is about 80 mm below the nose tip)
OUTLINE_CENTRE_OFFSET_MM = (5.0, 8.0)  # its centre's x and y offsets, up to +- this
OUTLINE_EXPONENT = (2.0, 3.0)  # 2 = an ellipse, larger = squarer
OUTLINE_WOBBLE_MAX = 0.04  # its radius wobbles by up to +- 4 % per harmonic, harmonics 2 to 4
OUTLINE_DEPTH_MM = (65.0, 110.0)  # the sides cut where the face is this far behind the nose tip (ears 90-100)
OUTLINE_SIDES_MM = 50.0  # ... the sides being further than this from the midline (not the mouth's inside)
OUTLINE_CHIN_PLANE_SLANT_DEG = (0.0, 40.0)  # the cut below the chin slants back, removing the neck
OUTLINE_CHIN_PLANE_MM = (-100.0, -72.0)  # its height at the nose tip's depth
OUTLINE_HAIRLINE_MM = (60.0, 110.0)  # a straight cut at the hairline, this far above the nose tip

# whole_face_motion, at expression intensity 1 (it scales linearly with the intensity).
HEAD_PIVOT_Y_MM = (-10.0, 20.0)  # the rotations' pivot: between the ear canals and the middle of the head,
HEAD_PIVOT_Z_MM = (-100.0, -60.0)  # drawn anew for each expression
UPPER_FACE_TILT_MAX_DEG = 4.0  # pitch of the upper face (a surprised face's forehead tilts 3-4 degrees)
LOWER_FACE_TILT_MAX_DEG = 3.0  # pitch of the lower face, the reverse
SIDE_TURN_MAX_DEG = 1.5  # yaw and roll of the moving part
MOTION_BLEND_MM = (-40.0, 15.0)  # the upper face's share of the motion rises from 0 to 1 over these heights
OUTLINE_DRIFT_MAX_MM = 5.0  # each side of the face's periphery drifts by up to this (any direction)
OUTLINE_DRIFT_RADIUS_MM = (45.0, 95.0)  # the drift rises from 0 at the first distance from the nose to 1
NOSE_LIFT_MAX_MM = 2.5  # the nose tip rises by 0 to this (anger and disgust wrinkle the nose upwards)
NOSE_LIFT_SIGMA_MM = 9.0  # width of the nose lift's smooth bump

# mouth_depth: the mouth interior (vertices behind the closed lips) moves back or forwards, mm.
# ICT's mouth socket is deep: an open mouth shows surfaces 60-90 mm behind the lips, where a scan sees teeth
# and tongue 10-30 mm behind them. So the interior mostly moves forwards, flattening against the limit below.
MOUTH_BACK_MAX_MM = 15.0  # a deeper mouth, as a scan seeing far in (or through: beyond the back plane is 0)
MOUTH_FORWARD_MAX_MM = 50.0  # a shallower one, as a model whose mouth is closed by a membrane behind the lips
MOUTH_MARGIN_MM = 2.0  # moved forwards, the interior stays at least this far behind the closed lips' surface
MOUTH_CENTRE_MM = np.array([0.0, -36.0])  # x, y of the mouth from the nose tip
MOUTH_HALF_AXES_MM = np.array([42.0, 28.0])  # the region searched for the interior
MOUTH_TOP_MM = (-14.0, -20.0)  # ... starting below the nostrils: weight 0 above the first height, 1 below the second
MOUTH_INTERIOR_BEHIND_MM = (3.0, 8.0)  # a vertex this far behind the neutral surface is 0 .. 1 interior
MOUTH_GRID_MM = 1.0  # pixel pitch of the neutral surface the interior is measured against

# faceted
FACET_STEP_PX = (2, 4)  # the coarse mesh's vertices are every 2 to 4 pixels (3 to 6 mm) apart

# scanner_noise, mm on the depth image (face pixels only)
NOISE_SD_MM = (0.05, 0.4)  # Gaussian noise per pixel: structured-light and time-of-flight scanners
BUMPS_MAX_MM = 0.8  # low-frequency bumps: calibration and multi-view registration errors
BUMPS_GRID = 5  # ... a smooth field interpolated from this many random values per side
HOLES_MAX = 4  # 0 to this many small holes: specular spots, eyebrows, occlusions
HOLE_RADIUS_PX = (1.0, 3.5)
HOLE_EMPTY_PROBABILITY = 0.5  # a hole is left empty (0, no surface); otherwise filled flat from its rim


# ---------------------------------------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------------------------------------
def smoothstep(value, start, end):
    """0 at `start`, 1 at `end` (either may be the larger), smooth (C1) in between."""
    t = np.clip((np.asarray(value, np.float64) - start) / (end - start), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gaussian(offsets_mm, centre_mm, sigma_mm):
    """(V,) smooth bump, 1 at the centre: exp(-|p - c|^2 / (2 sigma^2)) of (V, 3) offsets from the nose tip."""
    distance2 = ((offsets_mm - np.asarray(centre_mm, np.float64)) ** 2).sum(axis=1)
    return np.exp(-distance2 / (2.0 * sigma_mm ** 2))


def _variation_rngs(rng):
    """One Generator per variation, drawn whatever the switches, so each variation's draws are its own."""
    seeds = rng.integers(0, 2 ** 63, size=len(VARIATIONS))
    return {name: np.random.default_rng(int(seed)) for name, seed in zip(VARIATIONS, seeds)}


def expression_intensity(expression_weights) -> float:
    """0..1: the largest weight of an expression (shape name -> weight), 0 for the neutral face."""
    return float(np.clip(max((abs(w) for w in expression_weights.values()), default=0.0), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------------------
# 1. reshape
# ---------------------------------------------------------------------------------------------------------
def reshape_displacement_mm(neutral_mm, nose_tip_index, rng) -> np.ndarray:
    """(V, 3) smooth displacement, mm, of each vertex, a function of the neutral positions only.

    WHY: every ICT identity is a linear combination of 100 modes of light-stage scans, so proportions and
    feature shapes outside their span never occur in training, while real people (and other models' faces)
    have them. A sum of smooth warps - global proportions (width, height, depth, upper versus lower face, a
    slight lean), and Gaussian-weighted local ones at the nose (projection, length, width of the wings,
    bridge, deviation), lips, chin (projection, length), jaw angles (width), cheeks, brow ridge and forehead,
    each pair a little asymmetric - makes identities the model cannot. The field is added to the neutral and
    to every expressive mesh alike, so an expression's displacement is exactly what the model gave.
    """
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    x, y, z = offsets.T
    field = np.zeros_like(offsets)

    def uniform(limit):
        return rng.uniform(-limit, limit)

    def sided(limit):
        """(left, right) amplitudes: one draw, each side scaled by 1 +- the asymmetry."""
        amplitude, asymmetry = uniform(limit), uniform(ASYMMETRY_MAX)
        return amplitude * (1 + asymmetry), amplitude * (1 - asymmetry)

    # Global proportions about the nose tip.
    field += offsets * rng.uniform(-RESHAPE_SCALE_MAX, RESHAPE_SCALE_MAX, 3)
    upper_lower = uniform(RESHAPE_UPPER_LOWER_MAX)
    field[:, 1] += y * upper_lower * np.tanh(y / 20.0)  # upper and lower face heights change oppositely
    field[:, 0] += y * uniform(RESHAPE_SHEAR_MAX)

    # The nose.
    nose = gaussian(offsets, (0, 0, 0), 12.0)
    field[:, 2] += uniform(NOSE_PROJECTION_MAX_MM) * nose
    field[:, 1] += uniform(NOSE_LENGTH_MAX_MM) * nose
    field[:, 0] += uniform(NOSE_DEVIATION_MAX_MM) * gaussian(offsets, (0, -5, -10), 14.0)
    field[:, 0] += uniform(NOSE_WIDTH_MAX) * x * gaussian(offsets, (0, -10, -18), 12.0)
    field[:, 2] += uniform(NOSE_BRIDGE_MAX_MM) * gaussian(offsets, (0, 22, -20), 9.0)
    # Lips and chin.
    field[:, 2] += uniform(LIPS_MAX_MM) * gaussian(offsets, (0, -36, -16), 10.0)
    chin = gaussian(offsets, (0, -78, -27), 15.0)
    field[:, 2] += uniform(CHIN_PROJECTION_MAX_MM) * chin
    field[:, 1] -= uniform(CHIN_LENGTH_MAX_MM) * chin
    # Paired regions: each side's amplitude differs a little from the other's.
    jaw = sided(JAW_WIDTH_MAX_MM)
    cheek_forward, cheek_out = sided(CHEEK_MAX_MM), sided(CHEEK_MAX_MM / 2)
    brow = sided(BROW_RIDGE_MAX_MM)
    for side, sign in ((0, 1.0), (1, -1.0)):  # the subject's left (x > 0), then right
        field[:, 0] += sign * jaw[side] * gaussian(offsets, (sign * 58, -50, -68), 20.0)
        cheek = gaussian(offsets, (sign * 45, -10, -35), 18.0)
        field[:, 2] += cheek_forward[side] * cheek
        field[:, 0] += sign * cheek_out[side] * cheek
        field[:, 2] += brow[side] * gaussian(offsets, (sign * 35, 45, -28), 15.0)
    field[:, 2] += uniform(FOREHEAD_MAX_MM) * gaussian(offsets, (0, 85, -40), 30.0)

    largest = np.linalg.norm(field, axis=1).max(initial=0.0)
    if largest > RESHAPE_LIMIT_MM:
        field *= RESHAPE_LIMIT_MM / largest
    return field


WARP_MAX_MM = (3.0, 7.0)  # the held-out reshaping's largest displacement over the face
WARP_EXTENT_MM = np.array([75.0, 95.0])  # x and y half extents of the face the polynomials are normalised to
WARP_DEGREES = (2, 3)  # total degrees of the polynomial terms: non-linear only (reshape covers the affine part)


def warp_displacement_mm(neutral_mm, nose_tip_index, rng) -> np.ndarray:
    """(V, 3) a random smooth polynomial displacement (mm) of each vertex, a function of the neutral positions,
    zero at the nose tip (which frames the image).

    WHY: validation must measure identities of a kind no training draws from. reshape moves named regions
    (nose, chin, jaw, ...) by Gaussian bumps; this moves the whole face by products of Legendre polynomials of
    degrees 2 and 3 in the frontal coordinates, a different family of shapes. No training run uses it.
    """
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    u, v = np.clip(offsets[:, :2] / WARP_EXTENT_MM, -1.5, 1.5).T
    legendre = [np.ones_like(u), u, 0.5 * (3 * u ** 2 - 1), 0.5 * (5 * u ** 3 - 3 * u)], \
               [np.ones_like(v), v, 0.5 * (3 * v ** 2 - 1), 0.5 * (5 * v ** 3 - 3 * v)]
    terms = [legendre[0][i] * legendre[1][j] for i in range(4) for j in range(4) if i + j in WARP_DEGREES]
    field = np.stack(terms, axis=1) @ rng.normal(size=(len(terms), 3))
    field -= field[nose_tip_index]
    on_face = np.linalg.norm(offsets[:, :2], axis=1) < WARP_EXTENT_MM.min()
    largest = np.linalg.norm(field[on_face], axis=1).max(initial=0.0)
    return field * (rng.uniform(*WARP_MAX_MM) / largest if largest > 0 else 0.0)


# ---------------------------------------------------------------------------------------------------------
# 2. outline
# ---------------------------------------------------------------------------------------------------------
def outline_vertex_mask(neutral_mm, nose_tip_index, rng) -> np.ndarray:
    """(V,) bool: the vertices a cropped face keeps, chosen on the neutral mesh.

    WHY: the ICT mesh is a whole head front with neck and ears, so every training face ends in the same
    outline far out at the sides, while scans and models built from them end in a cliff: cut at the chin (no
    neck), at the hairline, and at the sides where the scanner no longer saw the surface (no ears), each crop
    a little different. Kept: inside a random super-ellipse about the nose tip (random half-axes, centre
    offset and a smooth wobble of its radius), above a chin plane slanting back under the jaw, below a
    hairline, and at the sides less than a random depth behind the nose tip.
    """
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    x, y, z = offsets.T
    half_width = rng.uniform(*OUTLINE_HALF_WIDTH_MM)
    up, down = rng.uniform(*OUTLINE_UP_MM), rng.uniform(*OUTLINE_DOWN_MM)
    centre = rng.uniform(-1, 1, 2) * OUTLINE_CENTRE_OFFSET_MM
    exponent = rng.uniform(*OUTLINE_EXPONENT)
    wobble = rng.uniform(-OUTLINE_WOBBLE_MAX, OUTLINE_WOBBLE_MAX, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    depth = rng.uniform(*OUTLINE_DEPTH_MM)
    slant = np.tan(np.radians(rng.uniform(*OUTLINE_CHIN_PLANE_SLANT_DEG)))
    chin_plane = rng.uniform(*OUTLINE_CHIN_PLANE_MM)
    hairline = rng.uniform(*OUTLINE_HAIRLINE_MM)

    u = (x - centre[0]) / half_width
    v = (y - centre[1]) / np.where(y > centre[1], up, down)
    angle = np.arctan2(v, u)
    radius_scale = 1 + sum(w * np.cos(k * angle + p) for k, w, p in zip((2, 3, 4), wobble, phases))
    inside = (np.abs(u) ** exponent + np.abs(v) ** exponent) ** (1 / exponent) <= radius_scale
    above_chin = y > chin_plane - slant * z  # z < 0 behind the nose tip: the plane rises towards the neck
    seen_from_front = (z > -depth) | (np.abs(x) < OUTLINE_SIDES_MM)
    return inside & above_chin & (y < hairline) & seen_from_front


def kept_triangles(triangles, vertex_mask) -> np.ndarray:
    """The triangles whose three corners are all kept."""
    return triangles[vertex_mask[triangles].all(axis=1)]


# ---------------------------------------------------------------------------------------------------------
# 3. whole_face_motion
# ---------------------------------------------------------------------------------------------------------
def rotation_matrices(rotation_vectors) -> np.ndarray:
    """(V, 3, 3) rotations of (V, 3) axis-angle vectors (radians), by Rodrigues' formula."""
    angle = np.linalg.norm(rotation_vectors, axis=1)
    axis = rotation_vectors / np.where(angle > 0, angle, 1.0)[:, None]
    kx, ky, kz = axis.T
    zero = np.zeros_like(kx)
    cross = np.stack([np.stack([zero, -kz, ky], 1), np.stack([kz, zero, -kx], 1), np.stack([-ky, kx, zero], 1)], 1)
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + sin * cross + (1 - cos) * (cross @ cross)


def blended_rotation(face_mm, neutral_offsets_mm, pivot_mm, upper_deg, lower_deg) -> np.ndarray:
    """The face with its upper part turned by `upper_deg` (pitch, yaw, roll in degrees) and its lower part by
    `lower_deg` about `pivot_mm`, the share of each blended smoothly by the NEUTRAL height of a vertex."""
    upper_share = smoothstep(neutral_offsets_mm[:, 1], *MOTION_BLEND_MM)[:, None]
    # (pitch about x, yaw about y, roll about z) taken as an axis-angle vector: exact for small angles.
    vectors = np.radians(upper_share * np.asarray(upper_deg) + (1 - upper_share) * np.asarray(lower_deg))
    return np.einsum("vij,vj->vi", rotation_matrices(vectors), face_mm - pivot_mm) + pivot_mm


def outline_drift_mm(neutral_offsets_mm, left_mm, right_mm) -> np.ndarray:
    """(V, 3) drift of the periphery: 0 near the nose, `left_mm` / `right_mm` at the left / right edges."""
    x, y = neutral_offsets_mm[:, 0], neutral_offsets_mm[:, 1]
    share = smoothstep(np.hypot(x, y), *OUTLINE_DRIFT_RADIUS_MM)[:, None]
    left = (0.5 + 0.5 * np.tanh(x / 20.0))[:, None]
    return share * (left * np.asarray(left_mm) + (1 - left) * np.asarray(right_mm))


def nose_lift_mm(neutral_offsets_mm, lift_mm) -> np.ndarray:
    """(V, 3) upward displacement: `lift_mm` at the nose tip, a smooth bump falling off over the nose."""
    displacement = np.zeros_like(neutral_offsets_mm)
    displacement[:, 1] = lift_mm * gaussian(neutral_offsets_mm, (0, 0, 0), NOSE_LIFT_SIGMA_MM)
    return displacement


def whole_face_motion(face_mm, neutral_mm, nose_tip_index, intensity, rng) -> np.ndarray:
    """The expressive mesh moved as a whole by an expression of this intensity (0..1, 0 = unchanged).

    WHY: ICT's expressions leave forehead, nose and outline nearly still, while in scans (and models built
    from them) an expression moves the whole face: raised brows tilt the upper face by a few degrees, an open
    jaw turns the lower face and pulls the outline, a wrinkled nose lifts the nose tip. Here: a small
    rotation of the upper face and one of the lower face about a pivot near the ear canals, blended
    smoothly across the face's height (the pivot drawn between the ear canals and the middle of the head, so
    the nose tip moves 0-5 mm); a drift of each side's periphery; a lift of the nose tip. All relative
    to the neutral frame, all scaled with the intensity, each drawn with a random sign (not one model's).
    """
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    upper = rng.uniform(-1, 1, 3) * [UPPER_FACE_TILT_MAX_DEG, SIDE_TURN_MAX_DEG, SIDE_TURN_MAX_DEG]
    lower = rng.uniform(-1, 1, 3) * [LOWER_FACE_TILT_MAX_DEG, SIDE_TURN_MAX_DEG, SIDE_TURN_MAX_DEG]
    drift = [_vector_in_ball(rng, OUTLINE_DRIFT_MAX_MM) for _ in range(2)]
    lift = rng.uniform(0, NOSE_LIFT_MAX_MM)
    pivot = neutral_mm[nose_tip_index] + [0.0, rng.uniform(*HEAD_PIVOT_Y_MM), rng.uniform(*HEAD_PIVOT_Z_MM)]
    if intensity == 0:  # a neutral face stays exactly as it was (not even rounded by a zero rotation)
        return face_mm
    moved = blended_rotation(face_mm, offsets, pivot, intensity * upper, intensity * lower)
    return moved + outline_drift_mm(offsets, *(intensity * d for d in drift)) + nose_lift_mm(offsets, intensity * lift)


def _vector_in_ball(rng, radius):
    """A random vector of length at most `radius`, uniform in direction and in length."""
    direction = rng.standard_normal(3)
    return direction / np.linalg.norm(direction) * rng.uniform(0, radius)


# ---------------------------------------------------------------------------------------------------------
# 4. mouth_depth
# ---------------------------------------------------------------------------------------------------------
def depth_behind_surface_mm(neutral_mm, nose_tip_index, triangles) -> np.ndarray:
    """(V,) how far each vertex lies behind the neutral's front surface seen along -z, mm (0 outside the mouth
    region's grid and for visible vertices). The surface is rasterised on a MOUTH_GRID_MM grid."""
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    half = MOUTH_HALF_AXES_MM + 5.0
    columns, rows = (np.ceil(2 * half / MOUTH_GRID_MM).astype(int) + 1)
    frame = np.empty_like(offsets)
    frame[:, 0] = (offsets[:, 0] - (MOUTH_CENTRE_MM[0] - half[0])) / MOUTH_GRID_MM
    frame[:, 1] = ((MOUTH_CENTRE_MM[1] + half[1]) - offsets[:, 1]) / MOUTH_GRID_MM
    lowest = offsets[:, 2].min() - 1.0
    frame[:, 2] = offsets[:, 2] - lowest  # positive, so the rasteriser's 0 is 'no surface'
    surface = rasterise_depth(frame, triangles, rows, columns)
    column = np.rint(frame[:, 0]).astype(int)
    row = np.rint(frame[:, 1]).astype(int)
    on_grid = (column >= 0) & (column < columns) & (row >= 0) & (row < rows)
    behind = np.zeros(len(offsets))
    seen = surface[row[on_grid], column[on_grid]]
    behind[on_grid] = np.where(seen > 0, seen - frame[on_grid, 2], 0.0)
    return np.maximum(behind, 0.0)


def mouth_interior_weight(neutral_mm, nose_tip_index, triangles) -> np.ndarray:
    """(V,) 0..1: how much each vertex belongs to the mouth interior, from the neutral geometry alone.

    Interior = in the region of the mouth (an ellipse below the nostrils) and hidden behind the closed lips
    by more than a few mm; the weight rises smoothly with that depth, so the lips stay put and the socket,
    teeth and tongue behind them move together. On the ICT model these are its mouth socket, gums, tongue
    and teeth groups (and the inner lip surfaces a little).
    """
    offsets = neutral_mm - neutral_mm[nose_tip_index]
    in_ellipse = (((offsets[:, :2] - MOUTH_CENTRE_MM) / MOUTH_HALF_AXES_MM) ** 2).sum(axis=1)
    region = smoothstep(in_ellipse, 1.0, 0.8) * smoothstep(offsets[:, 1], *MOUTH_TOP_MM)
    behind = depth_behind_surface_mm(neutral_mm, nose_tip_index, triangles)
    return region * smoothstep(behind, *MOUTH_INTERIOR_BEHIND_MM)


def mouth_depth_displacement_mm(interior_weight, behind_mm, rng) -> np.ndarray:
    """(V, 3) displacement along z of the mouth interior: back by up to MOUTH_BACK_MAX_MM or forwards by up to
    MOUTH_FORWARD_MAX_MM (never nearer than MOUTH_MARGIN_MM behind the closed lips' surface).

    WHY: where an open mouth shows its interior, the ICT model shows its own mouth socket, teeth and tongue
    at one depth; scans see into a mouth as far as their light reaches (or not at all), and other models
    close the mouth with a shallow membrane, so the depth inside an open mouth differs from data to data.
    """
    shift = rng.uniform(-MOUTH_FORWARD_MAX_MM, MOUTH_BACK_MAX_MM)  # positive = backwards
    dz = -shift * interior_weight
    forward_limit = np.maximum(behind_mm - MOUTH_MARGIN_MM, 0.0)
    displacement = np.zeros((len(interior_weight), 3))
    displacement[:, 2] = np.minimum(dz, forward_limit)
    return displacement


# ---------------------------------------------------------------------------------------------------------
# 5. faceted
# ---------------------------------------------------------------------------------------------------------
def faceted_image(depth_mm, step_px, offset_px) -> np.ndarray:
    """The depth image (mm) re-rendered from a coarse mesh: its pixels every `step_px` rows and columns
    (the grid shifted by `offset_px`, 0 <= offset < step) as vertices, each grid square split into two
    triangles along its main diagonal, depth interpolated linearly in each triangle. A triangle with a
    corner on the background (0) is dropped, so the outline becomes a coarse staircase.

    WHY: scans meshed at a sensor's coarse resolution, decimated meshes and low-resolution models show flat
    facets and a jagged outline, not the ICT mesh's fine, smooth surface. The decimation is in the image
    plane (dropping pixels and re-triangulating them), not by clustering the mesh's vertices: clusters of the
    neutral mesh either join the closed lips, and then web across an opening mouth, or keep them apart, and
    then open a crack between them in the neutral face. The same grid is used for a subject's input and target.
    """
    depth_mm = np.asarray(depth_mm, np.float64)
    height, width = depth_mm.shape

    def nodes_and_fractions(size):
        """The grid node before each pixel (index into the node list), the fraction of the way to the next."""
        first = offset_px - step_px if offset_px > 0 else 0
        nodes = np.arange(first, size + step_px, step_px)
        before = np.searchsorted(nodes, np.arange(size), side="right") - 1
        return np.clip(nodes, 0, size - 1), before, (np.arange(size) - nodes[before]) / step_px

    row_nodes, row_before, v = nodes_and_fractions(height)
    column_nodes, column_before, u = nodes_and_fractions(width)
    grid = depth_mm[np.ix_(row_nodes, column_nodes)]
    r, c = row_before[:, None], column_before[None, :]
    v, u = v[:, None], u[None, :]
    d00, d01, d10, d11 = grid[r, c], grid[r, c + 1], grid[r + 1, c], grid[r + 1, c + 1]
    lower = u + v <= 1.0  # the triangle (00, 01, 10), else (11, 10, 01)
    interpolated = np.where(lower, d00 + u * (d01 - d00) + v * (d10 - d00),
                            d11 + (1 - u) * (d10 - d11) + (1 - v) * (d01 - d11))
    corners_on_face = np.where(lower, (d00 > 0) & (d01 > 0) & (d10 > 0), (d11 > 0) & (d10 > 0) & (d01 > 0))
    return np.where(corners_on_face, interpolated, 0.0)


# ---------------------------------------------------------------------------------------------------------
# 6. scanner_noise
# ---------------------------------------------------------------------------------------------------------
def smooth_field(rng, shape, grid) -> np.ndarray:
    """A smooth random field, sd about 1, bilinearly interpolated from a grid x grid array of N(0, 1)."""
    coarse = rng.standard_normal((grid, grid))
    rows = np.linspace(0, grid - 1, shape[0])
    columns = np.linspace(0, grid - 1, shape[1])
    along_rows = np.stack([np.interp(rows, np.arange(grid), coarse[:, k]) for k in range(grid)], axis=1)
    return np.stack([np.interp(columns, np.arange(grid), line) for line in along_rows])


def add_scanner_noise(depth_mm, rng) -> np.ndarray:
    """The depth image (mm) as a scanner might have seen it; the background (0) stays 0.

    WHY: the network is applied to scans, which the synthetic renders are not: per-pixel noise
    (NOISE_SD_MM, structured light and time of flight), low-frequency bumps (calibration and registration
    errors between views) and small holes (specular spots, eyebrows, occlusions), left empty or filled flat
    from their rim as a hole-filling step would. Only ever applied to the input: the target stays clean.
    """
    face = depth_mm > 0
    noisy = depth_mm + face * rng.normal(0.0, rng.uniform(*NOISE_SD_MM), depth_mm.shape)
    noisy += face * rng.uniform(0, BUMPS_MAX_MM) * smooth_field(rng, depth_mm.shape, BUMPS_GRID)
    face_pixels = np.argwhere(face)
    rows, columns = np.indices(depth_mm.shape)
    for _ in range(rng.integers(0, HOLES_MAX + 1) if len(face_pixels) else 0):
        row, column = face_pixels[rng.integers(len(face_pixels))]
        radius = rng.uniform(*HOLE_RADIUS_PX)
        distance = np.hypot(rows - row, columns - column)
        hole = (distance <= radius) & face
        rim = (distance > radius) & (distance <= radius + 1.5) & face
        empty = rng.random() < HOLE_EMPTY_PROBABILITY
        noisy[hole] = 0.0 if empty or not rim.any() else noisy[rim].mean()
    return np.where(face, noisy, 0.0)


# ---------------------------------------------------------------------------------------------------------
# The entry points.
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubjectVariation:
    """One subject's variations, drawn from its neutral mesh: the same for its target and all its inputs."""
    neutral_mm: np.ndarray  # (V, 3) the (reshaped) neutral; build expressive meshes on it
    nose_tip_index: int
    displacement_mm: np.ndarray  # (V, 3) the reshaping added to the model's neutral (zeros when off)
    triangles: np.ndarray  # (T', 3) the kept triangles (outline), indices of the vertices
    facet_grid_px: tuple = None  # (step, offset) of the coarse mesh in the image when faceted, else None
    mouth_weight: np.ndarray = None  # (V,) 0..1 mouth interior, when mouth_depth is on
    behind_mm: np.ndarray = None  # (V,) depth behind the neutral surface, when mouth_depth is on

    @property
    def nose_tip_mm(self):
        """The frame's nose tip: the reshaped neutral's; input and target are both framed on it."""
        return self.neutral_mm[self.nose_tip_index]

    def reshaped(self, face_mm):
        """An expressive mesh built on the model's (unreshaped) neutral, reshaped like the neutral."""
        return face_mm + self.displacement_mm

    def render(self, face_mm, render_depth_mm):
        """render_depth_mm(face, nose tip, kept triangles) (depth.rasterise's renderer) of a face of this subject,
        re-rendered from the coarse mesh when faceted. Use it for the target and the inputs alike."""
        depth = render_depth_mm(face_mm, self.nose_tip_mm, self.triangles)
        return depth if self.facet_grid_px is None else faceted_image(depth, *self.facet_grid_px)


def vary_subject(neutral_mm, triangles, nose_tip_index, switches: Switches, rng) -> SubjectVariation:
    """Draw a subject's reshaping, outline, coarse grid and mouth interior from its neutral mesh (mm) and the rng."""
    rngs = _variation_rngs(rng)
    neutral_mm = np.asarray(neutral_mm, np.float64)
    triangles = np.asarray(triangles)
    displacement = np.zeros_like(neutral_mm)
    if switches.reshape:
        displacement = reshape_displacement_mm(neutral_mm, nose_tip_index, rngs["reshape"])
    if switches.warp:
        displacement = displacement + warp_displacement_mm(neutral_mm, nose_tip_index, rngs["warp"])
    reshaped = neutral_mm + displacement
    kept = triangles
    if switches.outline:
        kept = kept_triangles(triangles, outline_vertex_mask(reshaped, nose_tip_index, rngs["outline"]))
    variation = SubjectVariation(reshaped, int(nose_tip_index), displacement, kept)
    if switches.faceted:
        step = int(rngs["faceted"].integers(FACET_STEP_PX[0], FACET_STEP_PX[1] + 1))
        variation = _with(variation, facet_grid_px=(step, int(rngs["faceted"].integers(step))))
    if switches.mouth_depth:
        behind = depth_behind_surface_mm(reshaped, nose_tip_index, triangles)
        weight = mouth_interior_weight(reshaped, nose_tip_index, triangles)
        variation = _with(variation, mouth_weight=weight, behind_mm=behind)
    return variation


def _with(variation, **changes):
    return SubjectVariation(**{**variation.__dict__, **changes})


def vary_expression(subject: SubjectVariation, expressive_mm, intensity, switches: Switches, rng) -> np.ndarray:
    """(V, 3) an expressive mesh of the subject (built on subject.neutral_mm) with whole-face motion and
    mouth depth varied; `intensity` 0..1 is the expression's strength (expression_intensity of its weights)."""
    rngs = _variation_rngs(rng)
    face = np.asarray(expressive_mm, np.float64)
    if switches.whole_face_motion:
        face = whole_face_motion(face, subject.neutral_mm, subject.nose_tip_index, intensity,
                                 rngs["whole_face_motion"])
    if switches.mouth_depth and intensity > 0:  # a neutral mouth is closed: its interior is never seen
        if subject.mouth_weight is None:
            raise ValueError("the subject was drawn with mouth_depth off; draw it with the same switches")
        face = face + mouth_depth_displacement_mm(subject.mouth_weight, subject.behind_mm, rngs["mouth_depth"])
    return face


def vary_input_image(depth_mm, switches: Switches, rng) -> np.ndarray:
    """The rendered input depth image (mm) with scanner noise when switched on; never apply it to a target."""
    rngs = _variation_rngs(rng)
    if not switches.scanner_noise:
        return depth_mm
    return add_scanner_noise(np.asarray(depth_mm, np.float64), rngs["scanner_noise"])
