"""The mask network (--task mask): its data, its start from the input's own face, its test mode, and the
background it decides for remove (inference.background.Background)."""
import json

import numpy as np
import pytest

from conftest import TINY_NETWORK, assert_one_line_error, checkpoint_probabilities, run_program
from depth.convention import network_to_mm
from depth.dataset import Dataset
from inference.background import INSIDE_THRESHOLD_MM, MASK_PROBABILITY, Background
from training.tasks import TASKS, DataSource


def test_the_mask_task_trains_on_the_removal_pairs_with_each_target_reduced_to_its_face(tiny_data):
    train, valid, family = TASKS['mask'].load_for_training(DataSource(tiny_data))
    pairs = Dataset.load(tiny_data, 'valid')
    assert family is None and valid.names == pairs.names
    assert np.array_equal(valid.inputs, pairs.inputs)
    assert np.array_equal(valid.targets, (pairs.targets > 0).astype(np.float32))
    assert set(np.unique(train.targets)) == {0.0, 1.0}


def test_a_fresh_residual_mask_network_starts_from_the_input_face(tiny_data):
    import tensorflow as tf
    from convworking import ARCHITECTURE_DEFAULTS, Network
    faces = Dataset.load(tiny_data, 'test').inputs
    architecture = dict(ARCHITECTURE_DEFAULTS, task='mask', channels=8, kernel_size=3)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        network = Network(architecture)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            probability = session.run(network.output, {network.inputs: faces})
    assert probability.shape == faces.shape
    agreement = np.mean((probability >= 0.5) == (faces > 0))
    assert agreement > 0.99, agreement


def test_test_mode_scores_the_mask_and_the_input_face_as_numpy_does(tiny_data, tiny_mask, tmp_path):
    done = run_program('--mode', 'test', '--task', 'mask', '--checkpoint', tiny_mask, '--data', tiny_data,
                       '--results-dir', tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / 'test_metrics.json').read_text())
    test = Dataset.load(tiny_data, 'test')
    truth = test.targets[..., 0] > 0
    predicted = checkpoint_probabilities(tiny_mask, network_to_mm(test.inputs[..., 0])) >= 0.5
    for block, mask in ((metrics, predicted), (metrics['input_face'], test.inputs[..., 0] > 0)):
        assert block['pixel_accuracy'] == pytest.approx(100 * np.mean(mask == truth), abs=1e-3)
        assert block['false_face_share'] == pytest.approx(100 * np.mean(mask & ~truth), abs=1e-3)
        assert block['missing_face_share'] == pytest.approx(100 * np.mean(~mask & truth), abs=1e-3)
    assert metrics['n_images'] == len(test) and "the input's own face: pixel accuracy" in done.stdout


def test_the_background_the_mask_decides_keeps_output_where_it_says_face_and_above_the_back_plane():
    output_mm = np.array([[50.0, 50.0, 0.5], [30.0, 2.0, 20.0]])
    probability = np.array([[0.9, 0.2, 0.9], [MASK_PROBABILITY, 0.7, 0.4]])
    background = Background(face_probability=lambda inputs_mm: probability, mask_checkpoint='m/best-1')
    written = background.apply(output_mm, np.zeros_like(output_mm))
    assert np.array_equal(written, [[50.0, 0, 0], [30.0, 2.0, 0]])
    assert INSIDE_THRESHOLD_MM > 0.5
    assert background.describe() == {'rule': 'mask', 'mask_checkpoint': 'm/best-1',
                                      'mask_probability': MASK_PROBABILITY,
                                      'inside_threshold_mm': INSIDE_THRESHOLD_MM}
    assert Background(12.0).describe()['rule'] == 'input'


@pytest.mark.parametrize('argv, fragments', [
    (['--mode', 'train', '--background', 'mask'], ('--background fits --task remove in test, infer and export',)),
    (['--mode', 'test', '--background', 'input', '--mask-checkpoint', 'x'],
     ('--mask-checkpoint fits --background mask',)),
    (['--mode', 'test', '--threshold-mm', '5'], ('--threshold-mm fits --background input',)),
    (['--mode', 'infer', '--task', 'mask', '--input', 'x', '--output', 'y'],
     ('--mode infer does not fit --task mask',)),
    (['--mode', 'test', '--background', 'outline'], ("--background: invalid choice: 'outline'",)),
])
def test_background_options_that_do_not_fit_are_refused_in_one_line(argv, fragments, tmp_path):
    assert_one_line_error(run_program(*argv, '--results-dir', tmp_path / 'results'), *fragments)
    assert not (tmp_path / 'results').exists()


def test_a_missing_or_wrong_mask_checkpoint_is_refused_in_one_line_before_anything_is_written(
        tiny_data, tiny_mask, tmp_path):
    folder = tmp_path / 'scans'
    folder.mkdir()
    from depth.png import write_depth_png
    write_depth_png(folder / 'face.png', network_to_mm(Dataset.load(tiny_data, 'test').inputs[0, ..., 0]), 16)
    trained = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', tmp_path / 'checkpoints',
                          '--results-dir', tmp_path / 'results', '--max-steps', 2, *TINY_NETWORK)
    assert trained.returncode == 0, trained.stderr
    for given, fragments in ((tmp_path / 'nowhere', ('nowhere: no checkpoint found', '--mask-checkpoint')),
                             (tmp_path / 'checkpoints' / 'remove',
                              ('--mask-checkpoint', 'holds a --task remove checkpoint, not a --task mask one'))):
        done = run_program('--mode', 'infer', '--mask-checkpoint', given, '--input', folder, '--output',
                           tmp_path / 'neutral')
        assert_one_line_error(done, *fragments)
        assert not (tmp_path / 'neutral').exists()
