"""Faces off the frame: --random-offset-px moves training pairs, --offset-px moves a test split (depth.dataset.moved)."""
import json

import numpy as np
import pytest

from conftest import TINY_NETWORK, assert_one_line_error, run_program
from depth.dataset import Dataset, moved


def numbered_images(count, size=8):
    return np.arange(count * size * size, dtype=np.float32).reshape(count, size, size, 1) + 1


@pytest.mark.parametrize('rows, cols', [(0, 0), (2, 0), (0, -3), (-1, 4), (7, 7), (-8, 0)])
def test_moved_shifts_every_image_and_fills_what_moves_in_with_no_surface(rows, cols):
    images = numbered_images(2)
    result = moved(images, rows, cols)
    expected = np.zeros_like(images)
    for row in range(8):
        for col in range(8):
            if 0 <= row - rows < 8 and 0 <= col - cols < 8:
                expected[:, row, col] = images[:, row - rows, col - cols]
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == images.dtype


def a_dataset(count=12):
    inputs = numbered_images(count)
    # the target is the input times 2 at every pixel, so a pair moved together stays input x 2 = target
    return Dataset([f'{index:04d}_NE00.png' for index in range(count)], inputs, 2 * inputs)


def offset_of(original, image):
    """(rows, cols) by which `image` is original moved: located by a pixel that survives any move of up to 3 px."""
    [row], [col] = np.nonzero(image[..., 0] == original[3, 3, 0])
    return row - 3, col - 3


def test_random_offsets_move_input_and_target_together_within_the_limit_and_repeat_for_the_same_step():
    dataset = a_dataset()
    inputs, targets, _ = dataset.training_batch(5, 4, seed=3, max_offset_px=2)
    again, _, _ = dataset.training_batch(5, 4, seed=3, max_offset_px=2)
    np.testing.assert_array_equal(inputs, again)
    np.testing.assert_array_equal(targets, 2 * inputs)
    plain, _, _ = dataset.training_batch(5, 4, seed=3)
    offsets = [offset_of(original, image) for original, image in zip(plain, inputs)]
    assert all(abs(rows) <= 2 and abs(cols) <= 2 for rows, cols in offsets)
    for original, image, (rows, cols) in zip(plain, inputs, offsets):
        np.testing.assert_array_equal(image, moved(original[None], rows, cols)[0])
    every_offset = {offset_of(original, image) for step in range(40)
                    for original, image in zip(dataset.training_batch(step, 4, seed=3)[0],
                                               dataset.training_batch(step, 4, seed=3, max_offset_px=1)[0])}
    assert every_offset == {(rows, cols) for rows in (-1, 0, 1) for cols in (-1, 0, 1)}


def test_no_random_offset_leaves_the_batch_as_it_was():
    dataset = a_dataset()
    for flip in (False, True):
        batch = dataset.training_batch(7, 4, seed=1, flip=flip)
        same = dataset.training_batch(7, 4, seed=1, flip=flip, max_offset_px=0)
        for part, other in zip(batch, same):
            np.testing.assert_array_equal(part, other)


def test_training_with_random_offsets_records_them(tiny_data, tmp_path):
    finished = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', tmp_path / 'checkpoints',
                           '--results-dir', tmp_path / 'results', *TINY_NETWORK, '--max-steps', 2,
                           '--random-offset-px', 2)
    assert finished.returncode == 0, finished.stderr
    options = json.loads((tmp_path / 'checkpoints' / 'remove' / 'options.json').read_text())
    assert options['training']['random_offset_px'] == 2


def test_test_mode_with_an_offset_scores_the_moved_pairs_and_says_so(tiny_data, tmp_path):
    checkpoints = tmp_path / 'checkpoints'
    trained = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                          '--results-dir', tmp_path / 'training', *TINY_NETWORK, '--max-steps', 2)
    assert trained.returncode == 0, trained.stderr
    results = tmp_path / 'results'
    finished = run_program('--mode', 'test', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                           '--results-dir', results, '--offset-px', 3, -2)
    assert finished.returncode == 0, finished.stderr
    assert 'moving every test pair 3 px down and -2 px right (--offset-px)' in finished.stdout
    metrics = json.loads((results / 'test_metrics.json').read_text())
    assert metrics['offset_px'] == [3, -2]
    assert 'every pair moved 3 px down and -2 px right (--offset-px)' in (results / 'report.md').read_text()

    import convworking
    from depth.convention import network_to_mm
    test_set = Dataset.load(tiny_data, 'test').moved(3, -2)
    convworking.tf.compat.v1.disable_eager_execution()
    session, network, _ = convworking.restore_for_inference(
        convworking.parse_args(['--mode', 'test', '--checkpoint-dir', str(checkpoints)]))
    with session:
        outputs = network_to_mm(session.run(network.output, {network.inputs: test_set.inputs}))
    targets, inputs = network_to_mm(test_set.targets), network_to_mm(test_set.inputs)
    face = targets > 0

    def mean_rmse(images):
        return np.mean([np.sqrt(np.mean((image - target)[where] ** 2))
                        for image, target, where in zip(images, targets, face)])

    assert metrics['rmse_mm'] == pytest.approx(mean_rmse(outputs), rel=1e-4)
    assert metrics['baselines']['identity']['rmse_mm'] == pytest.approx(mean_rmse(inputs), rel=1e-4)


@pytest.mark.parametrize('arguments, fragments', [
    (['--mode', 'test', '--random-offset-px', '1'], ['--random-offset-px fits --mode train', '--mode test']),
    (['--mode', 'train', '--offset-px', '1', '0'], ['--offset-px fits --mode test', '--mode train']),
    (['--mode', 'infer', '--input', 'x', '--output', 'y', '--offset-px', '0', '1'], ['--offset-px fits --mode test']),
    (['--mode', 'test', '--offset-px', '40', '0'], ['--offset-px', 'from -32 to 32', '40']),
    (['--mode', 'test', '--offset-px', '1'], ['--offset-px', 'expected 2 arguments']),
    (['--mode', 'train', '--random-offset-px', '-1'], ['--random-offset-px', 'from 0 to 32', '-1']),
])
def test_bad_offsets_are_refused_in_one_line(arguments, fragments, tmp_path):
    finished = run_program(*arguments, '--results-dir', tmp_path / 'results', '--checkpoint-dir', tmp_path / 'c')
    assert_one_line_error(finished, *fragments)
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'c').exists()
