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
