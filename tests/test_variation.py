"""faces/variation.py: deterministic, each switch alone, input and target one person, plausible magnitudes."""
import numpy as np
import pytest

from depth.convention import BACK_PLANE_MM
from depth.rasterise import render_depth_mm
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from faces import variation as V

SUBJECT_SEED, EXPRESSION_SEED, IMAGE_SEED = 3, 4, 5


@pytest.fixture(scope="module")
def model():
    return load_face_model(DEFAULT_FACE_MODEL)


@pytest.fixture(scope="module")
def neutral(model):
    return model.neutral_face_mm(np.random.default_rng(11).standard_normal(model.identity_modes.shape[0]))


def varied_pair(model, neutral, switches, weights=None, seeds=(SUBJECT_SEED, EXPRESSION_SEED, IMAGE_SEED)):
    """(subject, expressive mesh, target image, input image) as the generator renders them."""
    weights = {"jawOpen": 0.8, "browInnerUp_L": 1.0, "browInnerUp_R": 1.0} if weights is None else weights
    subject = V.vary_subject(neutral, model.triangles, model.nose_tip, switches, np.random.default_rng(seeds[0]))
    face = model.expressive_face_mm(subject.neutral_mm, weights)
    face = V.vary_expression(subject, face, V.expression_intensity(weights), switches, np.random.default_rng(seeds[1]))
    target = subject.render(subject.neutral_mm, render_depth_mm)
    depth = V.vary_input_image(subject.render(face, render_depth_mm), switches,
                               np.random.default_rng(seeds[2]))
    return subject, face, target, depth


@pytest.fixture(scope="module")
def plain(model, neutral):
    return varied_pair(model, neutral, V.Switches())


def test_all_switches_off_change_nothing(model, neutral, plain):
    subject, face, target, depth = plain
    weights = {"jawOpen": 0.8, "browInnerUp_L": 1.0, "browInnerUp_R": 1.0}
    assert np.array_equal(subject.neutral_mm, neutral)
    assert np.array_equal(subject.triangles, model.triangles)
    assert np.array_equal(face, model.expressive_face_mm(neutral, weights))
    assert np.array_equal(target, render_depth_mm(neutral, neutral[model.nose_tip], model.triangles))
    assert np.array_equal(depth, render_depth_mm(face, neutral[model.nose_tip], model.triangles))


def test_the_same_seeds_give_the_same_arrays(model, neutral):
    first, second = (varied_pair(model, neutral, V.Switches.all_on()) for _ in range(2))
    for a, b in zip(first[1:], second[1:]):
        assert np.array_equal(a, b)
    assert np.array_equal(first[0].triangles, second[0].triangles)
    other = varied_pair(model, neutral, V.Switches.all_on(), seeds=(SUBJECT_SEED + 1, EXPRESSION_SEED, IMAGE_SEED))
    assert not np.array_equal(first[3], other[3])


@pytest.mark.parametrize("name", V.VARIATIONS)
def test_each_switch_alone_changes_the_pair_and_only_its_own_side(model, neutral, plain, name):
    _, _, plain_target, plain_input = plain
    _, _, target, depth = varied_pair(model, neutral, V.Switches.only(name))
    assert not np.array_equal(depth, plain_input)
    if name in ("whole_face_motion", "mouth_depth", "scanner_noise"):  # the input only
        assert np.array_equal(target, plain_target)
    else:
        assert not np.array_equal(target, plain_target)


def test_turning_a_switch_on_leaves_the_other_variations_draws_alone(model, neutral):
    reshaped = varied_pair(model, neutral, V.Switches.only("reshape"))[0]
    both = varied_pair(model, neutral, V.Switches.only("reshape", "outline"))[0]
    assert np.array_equal(reshaped.neutral_mm, both.neutral_mm)


def test_reshape_keeps_each_expression_displacement_and_stays_within_its_bound(model, neutral):
    for seed in range(6):
        subject = V.vary_subject(neutral, model.triangles, model.nose_tip, V.Switches.only("reshape"),
                                 np.random.default_rng(seed))
        moved = np.linalg.norm(subject.displacement_mm, axis=1)
        assert 1.0 < moved.max() <= V.RESHAPE_LIMIT_MM + 1e-9
        weights = {"mouthSmile_L": 1.0, "jawOpen": 0.5}
        # The field is a function of the neutral positions only: built either way, the expression is the model's.
        expressive = model.expressive_face_mm(subject.neutral_mm, weights)
        assert np.allclose(subject.reshaped(model.expressive_face_mm(neutral, weights)), expressive, atol=1e-9)
        assert np.allclose(expressive - subject.neutral_mm, model.expressive_face_mm(neutral, weights) - neutral,
                           atol=1e-9)


def test_the_reshaped_neutral_nose_tip_is_the_frame_nose_tip(model, neutral):
    subject, _, target, _ = varied_pair(model, neutral, V.Switches.only("reshape"))
    assert np.array_equal(subject.nose_tip_mm, subject.neutral_mm[model.nose_tip])
    assert (abs(target[63:65, 63:65] - BACK_PLANE_MM) <= 1.0).all()
    assert target.max() < BACK_PLANE_MM + 5.0


def test_outline_keeps_the_same_triangles_for_input_and_target_and_crops_neck_and_ears(model, neutral, plain):
    subject, face, target, depth = varied_pair(model, neutral, V.Switches.only("outline"))
    assert 0.3 * len(model.triangles) < len(subject.triangles) < len(model.triangles)
    # One triangle set renders both; what is empty in the target stays empty in the input where nothing moved.
    assert np.array_equal(depth, render_depth_mm(face, subject.nose_tip_mm, subject.triangles))
    plain_target = plain[2]
    assert (target > 0).sum() < 0.85 * (plain_target > 0).sum()
    assert target[-1].max() == 0 and plain_target[-1].max() > 0  # no neck at the image's bottom edge
    assert (target[60:68, 60:68] > 0).all()  # the nose is kept


def test_outline_is_chosen_on_the_neutral_mesh_only(model, neutral):
    mask = V.outline_vertex_mask(neutral, model.nose_tip, np.random.default_rng(1))
    again = V.outline_vertex_mask(neutral, model.nose_tip, np.random.default_rng(1))
    assert np.array_equal(mask, again) and 0 < mask.sum() < len(mask)


def test_whole_face_motion_is_zero_for_a_neutral_expression(model, neutral, plain):
    switches = V.Switches.only("whole_face_motion", "mouth_depth")
    subject, face, target, depth = varied_pair(model, neutral, switches, weights={})
    assert np.array_equal(face, neutral) and np.array_equal(depth, target)


def test_nose_lift_is_within_its_bounds_and_local(model, neutral):
    offsets = neutral - neutral[model.nose_tip]
    lift = V.nose_lift_mm(offsets, V.NOSE_LIFT_MAX_MM)
    assert lift[model.nose_tip, 1] == pytest.approx(V.NOSE_LIFT_MAX_MM)
    assert lift[:, 1].min() >= 0 and lift[:, 1].max() <= V.NOSE_LIFT_MAX_MM
    assert (lift[np.linalg.norm(offsets, axis=1) > 40, 1] < 0.01).all()


def test_whole_face_motion_scales_with_intensity(model, neutral):
    expressive = model.expressive_face_mm(neutral, {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0})
    moves = [np.linalg.norm(V.whole_face_motion(expressive, neutral, model.nose_tip, intensity,
                                                np.random.default_rng(2)) - expressive, axis=1)
             for intensity in (0.0, 0.5, 1.0)]
    assert moves[0].max() == 0
    assert 0.4 < np.median(moves[1][moves[2] > 0.5] / moves[2][moves[2] > 0.5]) < 0.6
    near = np.linalg.norm(neutral - neutral[model.nose_tip], axis=1) < 100
    assert 0.5 < moves[2][near].max() < 15.0


def test_mouth_interior_is_the_models_mouth_socket_teeth_and_tongue(model, neutral):
    groups = np.load(DEFAULT_FACE_MODEL)
    names, vertex_group = list(groups["group_names"]), groups["vertex_group"]
    weight = V.mouth_interior_weight(neutral, model.nose_tip, model.triangles)
    interior = np.isin(vertex_group, [names.index(n) for n in ("mouth_socket", "gums_tongue", "teeth")])
    assert (weight[interior] > 0.5).mean() > 0.7
    face = vertex_group == names.index("face")
    assert (weight[face] > 0.5).mean() < 0.05
    assert weight[model.nose_tip] == 0


def test_mouth_depth_moves_only_the_interior_and_never_in_front_of_the_closed_lips(model, neutral):
    subject = V.vary_subject(neutral, model.triangles, model.nose_tip, V.Switches.only("mouth_depth"),
                             np.random.default_rng(0))
    for seed in range(5):
        shift = V.mouth_depth_displacement_mm(subject.mouth_weight, subject.behind_mm, np.random.default_rng(seed))
        assert (shift[:, :2] == 0).all() and (shift[subject.mouth_weight == 0] == 0).all()
        assert (shift[:, 2] >= -V.MOUTH_BACK_MAX_MM - 1e-9).all()
        assert (shift[:, 2] <= np.maximum(subject.behind_mm - V.MOUTH_MARGIN_MM, 0) + 1e-9).all()


def test_faceted_uses_one_grid_for_input_and_target(model, neutral):
    subject, face, target, depth = varied_pair(model, neutral, V.Switches.only("faceted"))
    step, offset = subject.facet_grid_px
    fine = render_depth_mm(neutral, neutral[model.nose_tip], model.triangles)
    nodes = np.arange(offset, 128, step)
    grid = np.ix_(nodes, nodes)
    corners = fine[grid] > 0
    on_face = corners.copy()  # a node whose right and lower neighbours are on the face: its triangle is kept
    on_face[:-1] &= corners[1:]
    on_face[:, :-1] &= corners[:, 1:]
    on_face[-1], on_face[:, -1] = False, False
    assert np.array_equal(target[grid][on_face], fine[grid][on_face])  # the coarse mesh's vertices are exact
    assert np.abs(target - fine)[(target > 0) & (fine > 0)].mean() < 0.5
    flat = V.faceted_image(np.full((16, 16), 50.0), 3, 1)
    assert np.allclose(flat, 50.0)


def test_scanner_noise_is_on_the_input_only_and_small(model, neutral, plain):
    _, _, target, depth = varied_pair(model, neutral, V.Switches.only("scanner_noise"))
    plain_target, plain_input = plain[2], plain[3]
    assert np.array_equal(target, plain_target)
    assert ((depth > 0) <= (plain_input > 0)).all()  # no surface appears from the background
    both = (depth > 0) & (plain_input > 0)
    assert 0.01 < np.abs(depth - plain_input)[both].mean() < 1.5
