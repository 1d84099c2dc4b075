"""The model-fit baseline (evaluation.baselines.model_fit_outputs, scanning.alignment.fitted_neutral_depth_mm)
on a face rendered from known weights: the field's usual neutraliser must recover that face's neutral."""
import numpy as np
import pytest

from evaluation.baselines import model_fit_outputs, model_fit_sample
from evaluation.metrics import inside_face_mask
from faces.expressions import prototype_weights
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from scanning.synthetic import exact_depth_mm, new_subject


@pytest.fixture(scope='module')
def smiling_face():
    model = load_face_model(DEFAULT_FACE_MODEL)
    neutral, face = new_subject(model, np.random.default_rng(5), prototype_weights('HA', 0.75, model.expression_names))
    return exact_depth_mm(model, neutral, face), exact_depth_mm(model, neutral, neutral)


def test_the_fit_recovers_the_neutral_face_of_a_rendered_expression_within_0_3_mm_inside_the_face(smiling_face):
    expressive, neutral = smiling_face
    outputs, seconds = model_fit_outputs(expressive[np.newaxis])
    inside = inside_face_mask(neutral)[0]
    error = np.abs(outputs[0] - neutral)[inside]
    assert np.median(error) <= 0.3, np.median(error)
    # and it removed the smile: far closer to the neutral face than the input is
    assert np.sqrt(np.mean(error ** 2)) < 0.5 * np.sqrt(np.mean((expressive - neutral)[inside] ** 2))
    assert outputs.shape == (1, 128, 128) and seconds > 0


def test_the_sample_is_every_nth_image_from_the_first():
    assert list(model_fit_sample(45, 20)) == [0, 20, 40]


@pytest.mark.parametrize('with_expression', [False, True])
def test_the_weight_solver_meets_the_bounds_and_solves_the_free_unknowns_exactly(with_expression):
    """Pose step, identity and expression weights of a random point-to-plane system: expression weights within
    0..1 (held at 0 without expression), and the free unknowns the ridge least-squares answer given the fixed."""
    from scanning.alignment import RIDGE_EXPRESSION_MM2, RIDGE_IDENTITY_MM2, _solve_pose_and_weights
    identity_count, expression_count = 5, 4
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(200, 6 + identity_count + expression_count))
    values = rows @ np.concatenate([rng.normal(size=6 + identity_count), [-0.5, 0.3, 1.7, 0.6]]) \
        + 0.01 * rng.normal(size=200)
    solution = _solve_pose_and_weights(rows, values, identity_count, with_expression, ridge_factor=1.0)
    expression = solution[6 + identity_count:]
    if with_expression:
        assert expression.min() >= 0 and expression.max() <= 1
        assert expression[0] == 0 and expression[2] == 1 and 0 < expression[1] < 1 and 0 < expression[3] < 1
    else:
        assert np.all(expression == 0)
    free = np.r_[np.ones(6 + identity_count, bool), (expression > 0) & (expression < 1)]
    ridge = np.r_[np.zeros(6), np.full(identity_count, RIDGE_IDENTITY_MM2),
                  np.full(expression_count, RIDGE_EXPRESSION_MM2)]
    known = rows[:, ~free] @ solution[~free]
    expected = np.linalg.solve(rows[:, free].T @ rows[:, free] + np.diag(ridge[free]),
                               rows[:, free].T @ (values - known))
    np.testing.assert_allclose(solution[free], expected, rtol=1e-9, atol=1e-9)
