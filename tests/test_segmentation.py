"""--task segment: the LFW Part Labels split and loading, the two metrics, and a tiny network that learns.

Everything runs on small synthetic images written as JPEGs into a temporary folder, never the shared data.
"""
import json
import os

import cv2
import numpy as np
import pytest

from conftest import REPO, TINY_NETWORK, run_program
from depth.dataset import DataError
from evaluation.metrics import iou_per_class, mean_iou, pixel_accuracy
from support.paths import resolve_recorded_path
from test_command_line import assert_one_line_error
from training import lfw_parts


def synthetic_scene(rng):
    """A bright noisy ellipse (the 'face') on a darker noisy background, and its mask (uint8 0/255)."""
    rows, cols = np.mgrid[:128, :128]
    centre_row, centre_col = rng.uniform(44, 84, 2)
    half_height, half_width = rng.uniform(18, 34, 2)
    face = ((rows - centre_row) / half_height) ** 2 + ((cols - centre_col) / half_width) ** 2 <= 1
    grey = np.clip(np.where(face, 180, 80) + rng.normal(0, 20, face.shape), 0, 255)
    return grey.astype(np.uint8), np.where(face, 255, 0).astype(np.uint8)


def write_lfw_like(root, count=20, seed=0, quality=75):
    """DATA/inputs/*.jpg (RGB, like LFW), DATA/targets_face_only/*.jpg and DATA/targets/*.jpg (grey masks)."""
    rng = np.random.default_rng(seed)
    for folder in ('inputs',) + lfw_parts.TARGET_FOLDERS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for index in range(count):
        name = f"Person_{(index * 7) % count:02d}_0001.jpg"   # listed out of order on purpose
        grey, mask = synthetic_scene(rng)
        jpeg = [cv2.IMWRITE_JPEG_QUALITY, quality]
        cv2.imwrite(os.path.join(root, 'inputs', name), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), jpeg)
        cv2.imwrite(os.path.join(root, 'targets_face_only', name), mask, jpeg)
        cv2.imwrite(os.path.join(root, 'targets', name), cv2.dilate(mask, np.ones((9, 9), np.uint8)), jpeg)
    return str(root)


@pytest.fixture(scope='module')
def lfw_data(tmp_path_factory):
    return write_lfw_like(tmp_path_factory.mktemp('lfw'))


# ------------------------------------------------------------------------------------------------- split

@pytest.mark.parametrize('count, sizes', [(2927, (2048, 439, 440)), (20, (14, 3, 3)), (7, (4, 1, 2)),
                                          (100, (70, 15, 15))])
def test_split_is_sorted_sized_disjoint_and_complete(count, sizes):
    names = [f"name_{i:05d}.jpg" for i in np.random.default_rng(count).permutation(count)]
    split = lfw_parts.split_names(names)
    assert tuple(len(split[s]) for s in lfw_parts.SPLITS) == sizes
    assert split['train'] + split['valid'] + split['test'] == sorted(names)   # in order, disjoint, complete
    assert split == lfw_parts.split_names(sorted(names, reverse=True))         # the listing order is irrelevant


def test_load_reads_the_split_in_sorted_order(lfw_data):
    expected = lfw_parts.split_names(os.listdir(os.path.join(lfw_data, 'inputs')))
    for split in lfw_parts.SPLITS:
        dataset = lfw_parts.load(lfw_data, split)
        assert dataset.names == expected[split]
        assert dataset.inputs.shape == dataset.targets.shape == (len(dataset), 128, 128, 1)
        assert dataset.inputs.dtype == dataset.targets.dtype == np.float32
        assert 0 <= dataset.inputs.min() and dataset.inputs.max() <= 1
        assert set(np.unique(dataset.targets)) <= {0.0, 1.0}
    grey = cv2.imread(os.path.join(lfw_data, 'inputs', expected['test'][0]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(lfw_parts.load(lfw_data, 'test').inputs[0, ..., 0], grey / np.float32(255))
    face_only, with_hair = (lfw_parts.load(lfw_data, 'train', targets).targets for targets in lfw_parts.TARGET_FOLDERS)
    assert with_hair.sum() > face_only.sum()   # the 'targets' masks here are the dilated face masks


def test_a_jpeg_mask_thresholds_back_to_the_binary_mask(tmp_path):
    np.testing.assert_array_equal(lfw_parts.mask_from_grey(np.array([0, 100, 127, 128, 200, 255])),
                                  [0, 0, 0, 1, 1, 1])
    _, mask = synthetic_scene(np.random.default_rng(3))
    path = str(tmp_path / 'mask.jpg')
    cv2.imwrite(path, mask, [cv2.IMWRITE_JPEG_QUALITY, 50])
    grey = lfw_parts.read_grey(path)
    assert len(np.unique(grey)) > 2                              # JPEG scattered the values around 0 and 255
    recovered = lfw_parts.mask_from_grey(grey)
    assert recovered.dtype == np.float32 and set(np.unique(recovered)) == {0.0, 1.0}
    assert np.mean(recovered != (mask > 0)) < 0.002              # at most a few pixels on the outline flip


@pytest.mark.parametrize('damage, fragments', [
    (lambda root: os.remove(os.path.join(root, 'targets_face_only', sorted(os.listdir(root + '/inputs'))[5])),
     ('Person_05_0001.jpg', 'missing', 'targets_face_only')),
    (lambda root: os.rename(os.path.join(root, 'inputs'), os.path.join(root, 'photos')), ('inputs', 'not found')),
    (lambda root: cv2.imwrite(os.path.join(root, 'inputs', 'Person_03_0001.jpg'), np.zeros((64, 128), np.uint8)),
     ('Person_03_0001.jpg', '128 x 64')),
])
def test_bad_data_is_a_data_error_naming_the_file(tmp_path, damage, fragments):
    root = write_lfw_like(tmp_path / 'data')
    damage(root)
    with pytest.raises(DataError) as error:
        for split in lfw_parts.SPLITS:
            lfw_parts.load(root, split)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert '\n' not in str(error.value)


# ----------------------------------------------------------------------------------------------- metrics

def numpy_metrics(outputs, targets):
    """Pixel accuracy and mean IoU from a 2 x 2 confusion matrix counted pixel by pixel."""
    confusion = np.zeros((2, 2))
    for predicted, true in zip((np.ravel(outputs) >= 0.5).astype(int), np.ravel(targets).astype(int)):
        confusion[true, predicted] += 1
    accuracy = np.trace(confusion) / confusion.sum()
    ious = [confusion[c, c] / (confusion[c, :].sum() + confusion[:, c].sum() - confusion[c, c]) for c in (0, 1)]
    return accuracy, ious


def test_accuracy_and_iou_match_a_confusion_matrix():
    rng = np.random.default_rng(1)
    targets = (rng.random((3, 16, 16, 1)) < 0.3).astype(np.float32)
    outputs = np.clip(targets * 0.6 + rng.random(targets.shape) * 0.55, 0, 1).astype(np.float32)
    accuracy, ious = numpy_metrics(outputs, targets)
    assert 0.5 < accuracy < 0.95                                  # a case with errors of both kinds
    assert pixel_accuracy(outputs, targets) == pytest.approx(accuracy)
    assert iou_per_class(outputs, targets) == pytest.approx(ious)
    assert mean_iou(outputs, targets) == pytest.approx(np.mean(ious))


def test_metrics_by_hand():
    targets = np.array([[0, 0, 1, 1]], np.float32)
    outputs = np.array([[0.1, 0.7, 0.5, 0.2]], np.float32)     # 0.5 counts as face
    assert pixel_accuracy(outputs, targets) == pytest.approx(0.5)
    assert iou_per_class(outputs, targets) == pytest.approx((1 / 3, 1 / 3))
    everything_background = np.zeros((1, 4), np.float32)       # the face class is absent from both: left out
    assert mean_iou(everything_background, everything_background) == 1.0


# ------------------------------------------------------------------------------------------------ learning

def test_a_tiny_segmentation_network_overfits_a_few_masks(lfw_data):
    from convworking import ARCHITECTURE_DEFAULTS, Network, TrainingSetup, tf
    from training.tasks import TASKS
    train = lfw_parts.load(lfw_data, 'train')
    inputs, targets = train.inputs[:4], train.targets[:4]
    architecture = dict(ARCHITECTURE_DEFAULTS, task='segment', channels=8, kernel_size=3, residual=False,
                        skip_links='none', batch_norm=False)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        setup = TrainingSetup(learning_rate=0.01, decay_steps=10 ** 6, loss='bce')
        network = Network(architecture, training=setup)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for _ in range(150):
                session.run(network.train_op, {network.inputs: inputs, network.targets: targets,
                                               network.is_training: True})
            outputs = session.run(network.output, {network.inputs: inputs})
    assert 0 <= outputs.min() and outputs.max() <= 1                            # sigmoid probabilities
    assert pixel_accuracy(outputs, targets) > 0.97
    assert mean_iou(outputs, targets) > 0.9
    assert TASKS['segment'].valid_score(outputs, targets) < 3                  # 100 - accuracy in %


# ------------------------------------------------------------------------------------------- command line

def test_train_then_test_writes_metrics_that_match_numpy(lfw_data, tmp_path):
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    trained = run_program('--mode', 'train', '--task', 'segment', '--data', lfw_data, '--checkpoint-dir', checkpoints,
                          '--results-dir', results, *TINY_NETWORK, '--max-steps', 6, '--validate-every', 3,
                          '--plot-every', 6)
    assert trained.returncode == 0, trained.stderr
    assert 'valid accuracy' in trained.stdout and os.path.exists(results / 'step_000006.png')
    options = json.loads((checkpoints / 'segment' / 'options.json').read_text())
    assert options['architecture']['residual'] is False and options['training']['targets'] == 'targets_face_only'
    assert options['training']['loss'] == 'rmse'

    tested = run_program('--mode', 'test', '--task', 'segment', '--data', lfw_data, '--checkpoint-dir', checkpoints,
                         '--results-dir', tmp_path / 'test')
    assert tested.returncode == 0, tested.stderr
    metrics = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())
    assert os.path.exists(tmp_path / 'test' / 'test_grid_1.png')
    assert metrics['split'] == dict(train=14, valid=3, test=3, rule=metrics['split']['rule'])

    import convworking
    options = convworking.parse_args(['--mode', 'test', '--task', 'segment', '--checkpoint-dir', str(checkpoints)])
    convworking.tf.compat.v1.disable_eager_execution()   # as main() does (and test_command_line.py)
    session, network, prefix = convworking.restore_for_inference(options)
    test_set = lfw_parts.load(lfw_data, 'test')
    with session:
        outputs = session.run(network.output, {network.inputs: test_set.inputs})
    accuracy, ious = numpy_metrics(outputs, test_set.targets)
    assert resolve_recorded_path(metrics['checkpoint']) == os.path.abspath(prefix)
    assert metrics['n_images'] == 3
    assert metrics['pixel_accuracy'] == pytest.approx(100 * accuracy, abs=1e-3)
    assert metrics['mean_iou'] == pytest.approx(100 * np.nanmean(ious), abs=1e-3)


def test_missing_mask_is_a_one_line_error(tmp_path):
    root = write_lfw_like(tmp_path / 'data', count=8)
    os.remove(os.path.join(root, 'targets', 'Person_02_0001.jpg'))
    finished = run_program('--mode', 'train', '--task', 'segment', '--data', root, '--targets', 'targets',
                           '--checkpoint-dir', tmp_path / 'c', '--results-dir', tmp_path / 'r', *TINY_NETWORK)
    assert_one_line_error(finished, 'Person_02_0001.jpg', 'missing')


def test_task_defaults_and_options_that_do_not_fit(capsys):
    import convworking
    segment = convworking.parse_args(['--mode', 'test', '--task', 'segment'])
    assert segment.data == os.path.normpath(os.path.join(REPO, '..', 'shared', 'lfw_part_labels', 'data128_128'))
    assert segment.results_dir == os.path.join(REPO, 'results', 'segment')
    assert (segment.targets, segment.loss, segment.loss_region, segment.residual) == \
        ('targets_face_only', 'rmse', 'image', False)
    remove = convworking.parse_args(['--mode', 'test'])
    assert (remove.data, remove.results_dir) == (os.path.join(REPO, 'data128_128'), os.path.join(REPO, 'results'))
    assert (remove.mirror_average, segment.mirror_average) == (True, False)
    assert (remove.deadband_mm, segment.deadband_mm) == (convworking.DEFAULT_DEADBAND_MM, 0.0)
    assert convworking.parse_args(['--mode', 'train']).deadband_mm == 0.0  # validation scores the network alone
    assert convworking.parse_args(['--mode', 'test', '--deadband-mm', '0']).deadband_mm == 0.0
    assert (remove.deadband_relief, segment.deadband_relief) == (convworking.DEFAULT_DEADBAND_RELIEF, 0.0)
    assert convworking.parse_args(['--mode', 'train']).deadband_relief == 0.0
    assert convworking.parse_args(['--mode', 'test', '--deadband-relief', '0.3']).deadband_relief == 0.3
    assert (remove.background_weight, segment.background_weight) == (convworking.DEFAULT_BACKGROUND_WEIGHT, 0.0)
    assert convworking.parse_args(['--mode', 'train', '--loss-region', 'image']).background_weight == 0.0
    assert convworking.parse_args(['--mode', 'train', '--background-weight', '0.05']).background_weight == 0.05
    assert (remove.plain_repeats, segment.plain_repeats) == (convworking.DEFAULT_PLAIN_REPEATS, 0)
    assert convworking.parse_args(['--mode', 'train', '--task', 'mask']).plain_repeats == 0  # its shipped recipe
    assert convworking.parse_args(['--mode', 'train', '--plain-repeats', '2']).plain_repeats == 2
    assert convworking.parse_args(['--mode', 'test', '--no-mirror-average']).mirror_average is False
    assert convworking.parse_args(['--mode', 'train', '--task', 'segment', '--loss', 'bce']).loss == 'bce'
    for argv, fragment in ((['--task', 'segment', '--residual'], '--residual'),
                           (['--task', 'segment', '--loss', 'mse'], '--loss mse'),
                           (['--task', 'segment', '--loss-region', 'face'], '--loss-region face'),
                           (['--targets', 'targets'], '--targets'),
                           (['--mirror-average'], '--mirror-average'),
                           (['--deadband-mm', '0.3'], '--deadband-mm'),
                           (['--deadband-mm', '-0.1'], '--deadband-mm'),
                           (['--deadband-relief', '0.1'], '--deadband-relief'),
                           (['--deadband-relief', '-1'], '--deadband-relief'),
                           (['--task', 'segment', '--background-weight', '0.1'], '--background-weight'),
                           (['--task', 'segment', '--neutral-repeats', '2'], '--neutral-repeats'),
                           (['--task', 'segment', '--plain-repeats', '1'], '--plain-repeats'),
                           (['--generated-variations', '--plain-repeats', '1'], '--plain-repeats'),
                           (['--generated-subjects', '0', '--plain-repeats', '1'], '--plain-repeats'),
                           (['--plain-repeats', '-1'], '--plain-repeats'),
                           (['--loss-region', 'image', '--background-weight', '0.1'], '--loss-region image')):
        with pytest.raises(SystemExit) as stopped:
            convworking.parse_args(['--mode', 'train'] + argv)
        assert stopped.value.code == 2
        message = capsys.readouterr().err.strip()
        assert len(message.splitlines()) == 1 and fragment in message, message
    with pytest.raises(SystemExit) as stopped:
        convworking.parse_args(['--mode', 'test', '--task', 'segment', '--deadband-mm', '0.2'])
    assert stopped.value.code == 2 and '--deadband-mm' in capsys.readouterr().err
