"""Faces off the frame: --offset-px moves a test split (depth.dataset.moved) to measure what a registration off by
whole pixels costs."""
import json

import numpy as np
import pytest

from conftest import TINY_NETWORK, assert_one_line_error, run_program
from depth.dataset import Dataset, moved


def numbered_images(count, size=8):
    return np.arange(count * size * size, dtype=np.float32).reshape(count, size, size, 1) + 1


@pytest.mark.parametrize('rows, cols', [(0, 0), (2, 0), (0, -3), (-1, 4), (7, 7), (-8, 0)])
def test_moved_shifts_every_image_and_repeats_the_edge_where_it_moves_in(rows, cols):
    images = numbered_images(2)
    result = moved(images, rows, cols)
    expected = np.zeros_like(images)
    for row in range(8):
        for col in range(8):
            expected[:, row, col] = images[:, min(max(row - rows, 0), 7), min(max(col - cols, 0), 7)]
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == images.dtype


def test_test_mode_with_an_offset_scores_the_moved_pairs_and_says_so(tiny_data, tmp_path):
    checkpoints = tmp_path / 'checkpoints'
    trained = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                          '--results-dir', tmp_path / 'training', *TINY_NETWORK, '--max-steps', 2)
    assert trained.returncode == 0, trained.stderr
    results = tmp_path / 'results'
    finished = run_program('--mode', 'test', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                           '--results-dir', results, '--offset-px', 3, -2)
    assert finished.returncode == 0, finished.stderr
    assert 'every test pair moved 3 px down and -2 px right (--offset-px)' in finished.stdout
    metrics = json.loads((results / 'test_metrics.json').read_text())
    assert metrics['offset_px'] == [3, -2]
    assert 'every test pair moved 3 px down and -2 px right (--offset-px)' in (results / 'report.md').read_text()

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
    (['--mode', 'train', '--offset-px', '1', '0'], ['--offset-px fits --mode test', '--mode train']),
    (['--mode', 'infer', '--input', 'x', '--output', 'y', '--offset-px', '0', '1'], ['--offset-px fits --mode test']),
    (['--mode', 'test', '--offset-px', '40', '0'], ['--offset-px', 'from -32 to 32', '40']),
    (['--mode', 'test', '--offset-px', '1', 'x'], ['--offset-px: must be a whole number from -32 to 32, not x']),
    (['--mode', 'test', '--offset-px', '1'], ['--offset-px', 'expected 2 arguments']),
])
def test_bad_offsets_are_refused_in_one_line(arguments, fragments, tmp_path):
    finished = run_program(*arguments, '--results-dir', tmp_path / 'results', '--checkpoint-dir', tmp_path / 'c')
    assert_one_line_error(finished, *fragments)
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'c').exists()
