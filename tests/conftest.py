"""Shared test helpers: a tiny synthetic depth dataset and a way to run the command line."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from depth.png import write_depth_png  # noqa: E402

# A network small enough to train in seconds on 2 cores.
TINY_NETWORK = ['--channels', '8', '--kernel-size', '3', '--batch-size', '4']
# Tests never render the default 640 generated training identities, the held-out family or the 300-face
# recognition gallery (minutes, in the repository's cache), nor fit the face model to test images: a test that
# wants them asks for a few, in a folder of its own.
NO_GENERATED = ['--generated-subjects', '0', '--gallery-subjects', '0', '--family-subjects', '0',
                '--model-fit-every', '0']


def synthetic_pair(rng, name_index):
    """A dome-shaped 'face' (target) and the same dome with a bump (the 'expression') as input, in mm."""
    rows, cols = np.mgrid[:128, :128]
    centre_row, centre_col = rng.uniform(54, 74, 2)
    radius = rng.uniform(30, 40)
    dome = 2 * np.sqrt(np.clip(radius ** 2 - (rows - centre_row) ** 2 - (cols - centre_col) ** 2, 0, None))
    target = np.where(dome > 0, dome + 40, 0)
    bump = rng.uniform(3, 8) * np.exp(-((rows - centre_row - 15) ** 2 + (cols - centre_col) ** 2) / 80)
    return np.where(target > 0, target + bump, 0), target


def deadband_in_numpy(outputs, inputs, deadband, relief_share=0.0, near_neutral_mm=2.0, inside_px=5):
    """What RemovalTask.with_deadband should compute, recomputed in numpy (network scale, N x H x W x 1 or, without
    relief_share, any shape): the change of the input's surface soft-thresholded by `deadband` plus relief_share x
    the input's 3 x 3 range x the image's weight (1 - RMS of the deadbanded change over the inner face, in mm, /
    near_neutral_mm, within [0, 1]), the rest as it is."""
    surface = (inputs > 0) & (outputs > 0)
    change = outputs - inputs
    threshold = deadband
    if relief_share:
        kept = np.where(surface, soft_threshold_in_numpy(change, deadband), 0)
        near_background = window_extreme(inputs <= 0, 2 * inside_px - 1, np.max)
        inner = surface & ~near_background
        count = inner.sum(axis=(1, 2, 3), keepdims=True)
        rms_mm = np.sqrt((kept ** 2 * inner).sum(axis=(1, 2, 3), keepdims=True) / np.maximum(count, 1)) * 127.5
        weight = np.where(count > 0, np.clip(1 - rms_mm / near_neutral_mm, 0, 1), 0)
        relief = window_extreme(inputs, 3, np.max) - window_extreme(inputs, 3, np.min)
        threshold = deadband + relief_share * weight * relief
    return np.where(surface, inputs + soft_threshold_in_numpy(change, threshold), outputs)


def soft_threshold_in_numpy(values, threshold):
    """Each value moved towards 0 by `threshold`, and 0 where it is smaller."""
    return np.sign(values) * np.maximum(np.abs(values) - threshold, 0)


def window_extreme(images, size, extreme):
    """Each pixel's maximum or minimum over the size x size window around it (N x H x W x 1; the window is cut at
    the image's border)."""
    half = size // 2
    padded = np.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode='edge')
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))
    return extreme(windows, axis=(-2, -1))


# The splits hold other subjects (training refuses a subject in two splits): numbered apart, the test split's
# from 0000.
FIRST_SUBJECT = {'test': 0, 'valid': 100, 'train': 200}


def write_synthetic_data(root, counts=(('train', 12), ('valid', 4), ('test', 8)), seed=0):
    rng = np.random.default_rng(seed)
    codes = ['NE', 'HA', 'SA', 'SU']
    for split, count in counts:
        for side in ('inputs', 'targets'):
            os.makedirs(os.path.join(root, side, split), exist_ok=True)
        for index in range(count):
            subject = FIRST_SUBJECT[split] + index // 4
            name = f"{subject:04d}_{codes[index % 4]}{0 if index % 4 == 0 else 1 + index % 3:02d}.png"
            source, target = synthetic_pair(rng, index)
            write_depth_png(os.path.join(root, 'inputs', split, name), target if index % 4 == 0 else source)
            write_depth_png(os.path.join(root, 'targets', split, name), target)
    return str(root)


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    return write_synthetic_data(tmp_path_factory.mktemp('data'))


def run_program(*args, timeout=600):
    """Run convworking.py with the arguments (after NO_GENERATED, which they may override); returns the finished
    process (text stdout/stderr)."""
    return subprocess.run([sys.executable, os.path.join(REPO, 'convworking.py'), *NO_GENERATED, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def wait_for(condition, timeout, interval=0.2):
    """Whether condition() became true within `timeout` seconds (asked every `interval`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def dead_pid():
    """The id of a process that has ended, as the temporaries a killed run left name one."""
    process = subprocess.Popen([sys.executable, '-c', ''])
    process.wait()
    return process.pid


def assert_one_line_error(finished, *fragments):
    """The promise for bad input: exit status 2 and one line on stderr holding every fragment."""
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in finished.stderr, finished.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope='session')
def tiny_mask(tiny_data, tmp_path_factory):
    """The checkpoint prefix of a tiny mask network (--task mask) trained for 10 steps on tiny_data."""
    root = tmp_path_factory.mktemp('mask')
    done = run_program('--mode', 'train', '--task', 'mask', '--data', tiny_data, '--checkpoint-dir',
                       root / 'checkpoints', '--results-dir', root / 'results', '--max-steps', 10, '--validate-every',
                       5, *TINY_NETWORK)
    assert done.returncode == 0, done.stderr
    import tensorflow as tf
    prefix = tf.train.latest_checkpoint(str(root / 'checkpoints' / 'mask'), latest_filename='best_checkpoint')
    assert prefix
    return prefix


def restored_outputs(prefix, architecture, batch, mirror_average=True):
    """A checkpoint's output for a batch (network scale, N x H x W x 1), computed in this process; with
    mirror_average (the default of test, infer and export), averaged here with the mirrored output of the mirrored
    batch."""
    import tensorflow as tf
    from convworking import Network
    with tf.Graph().as_default():
        network = Network(architecture)
        with tf.compat.v1.Session() as session:
            tf.compat.v1.train.Saver(network.model_variables).restore(session, prefix)
            output = session.run(network.output, {network.inputs: batch})
            if mirror_average:
                mirrored = session.run(network.output, {network.inputs: batch[:, :, ::-1]})[:, :, ::-1]
                output = (output + mirrored) / 2
    return output


def checkpoint_probabilities(prefix, batch_mm):
    """A mask checkpoint's probabilities for a batch of depth images (mm, N x H x W), with the mirror average."""
    import json
    from depth.convention import mm_to_network
    with open(os.path.join(os.path.dirname(prefix), 'options.json')) as file:
        architecture = json.load(file)['architecture']
    return restored_outputs(prefix, architecture, mm_to_network(np.asarray(batch_mm, np.float32))[..., None])[..., 0]
