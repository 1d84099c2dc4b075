"""convworking.py as a user runs it: train, resume after a kill, test, and one-line errors for bad input."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import NO_GENERATED, REPO, TINY_NETWORK, assert_one_line_error, dead_pid, run_program, wait_for
from support.command_line import finite_float, non_negative_float, positive_float, whole_number
from support.paths import resolve_recorded_path


def train_tiny(data, checkpoints, results, *extra):
    return run_program('--mode', 'train', '--data', data, '--checkpoint-dir', checkpoints, '--results-dir', results,
                       *TINY_NETWORK, '--validate-every', 5, '--plot-every', 10, *extra)


@pytest.fixture(scope='module')
def trained(tiny_data, tmp_path_factory):
    """A tiny network trained for 10 steps: (data, checkpoint folder, results folder)."""
    root = tmp_path_factory.mktemp('trained')
    checkpoints, results = root / 'checkpoints', root / 'results'
    finished = train_tiny(tiny_data, checkpoints, results, '--max-steps', 10)
    assert finished.returncode == 0, finished.stderr
    return tiny_data, checkpoints, results


def test_training_writes_checkpoints_grids_and_logs(trained):
    _, checkpoints, results = trained
    names = os.listdir(checkpoints / 'remove')
    assert 'latest-10.index' in names and any(n.startswith('best-') for n in names)
    assert {'options.json', 'checkpoint', 'best_checkpoint'} <= set(names)
    assert os.path.exists(results / 'step_000010.png')
    assert any(n.startswith('events.out.tfevents') for n in os.listdir(results / 'logs'))


def test_an_observer_sees_every_step_and_the_periodic_work_in_order(tiny_data, tmp_path):
    import convworking

    class Recorder(convworking.TrainingObserver):
        def __init__(self):
            self.events = []

        def step_done(self, step):
            self.events.append(step)

        def periodic(self, name, work):
            self.events.append(name)
            return work()

    recorder = Recorder()
    status = convworking.main(['--mode', 'train', '--data', tiny_data, '--checkpoint-dir', tmp_path / 'checkpoints',
                               '--results-dir', tmp_path / 'results', *TINY_NETWORK, *NO_GENERATED,
                               '--max-steps', 4, '--validate-every', 2, '--save-every', 4, '--plot-every', 4],
                              recorder)
    assert status == 0
    assert recorder.events == [1, 2, 'calibrate_batch_norm', 'validate', 3, 4, 'calibrate_batch_norm', 'validate',
                               'save_grid', 'save_latest']


def test_a_tiny_training_shows_its_scores_in_mm_and_draws_its_last_step(tiny_data, tmp_path):
    results = tmp_path / 'results'
    finished = train_tiny(tiny_data, tmp_path / 'checkpoints', results, '--max-steps', 7, '--summary-every', 1)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert any(line.startswith('step 5: valid RMSE ') and line.endswith(' mm (best so far, saved)') for line in lines)
    progress = [line for line in lines if line.startswith('step 7/7  epoch 3  train RMSE ')]
    assert progress and progress[0].split('train RMSE ')[1].split(' mm  ')[0].replace('.', '').isdigit()
    assert all(len(line) <= 80 for line in lines if line.startswith('step '))
    grids = sorted(n for n in os.listdir(results) if n.startswith('step_'))
    assert grids == ['step_000007.png'] and os.path.exists(results / 'training_curve.png')

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logs = EventAccumulator(str(results / 'logs')).Reload()
    assert {'train/loss', 'train/rmse_mm', 'valid/valid RMSE (mm)'} <= set(logs.Tags()['scalars'])
    assert logs.Tags()['images'] == ['valid/grid']
    assert [event.step for event in logs.Scalars('valid/valid RMSE (mm)')] == [5, 7]


def test_test_mode_metrics_match_a_numpy_recomputation(trained, tmp_path):
    data, checkpoints, _ = trained
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint-dir', checkpoints,
                           '--results-dir', tmp_path)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    stages = ('loading the test split', "testing", 'the baselines', 'recognition, raw and neutralised', 'the grids')
    for stage in stages:
        assert any(line.startswith(f'convworking.py: {stage}') for line in lines), (stage, lines)
    assert 'recognition on the test split (gallery: 2 neutral faces; 6 expressive probes):' in lines
    assert lines[-1].endswith(f'wrote test_metrics.json, report.md, report.png, test_grid_1.png in {tmp_path}')
    metrics = json.loads((tmp_path / 'test_metrics.json').read_text())
    assert os.path.exists(tmp_path / 'test_grid_1.png') and os.path.exists(tmp_path / 'report.md')

    import convworking
    from depth.convention import network_to_mm
    from depth.dataset import Dataset
    options = convworking.parse_args(['--mode', 'test', '--checkpoint-dir', str(checkpoints)])
    convworking.tf.compat.v1.disable_eager_execution()
    session, network, prefix = convworking.restore_for_inference(options)
    test_set = Dataset.load(data, 'test')
    with session:
        outputs = network_to_mm(session.run(network.output, {network.inputs: test_set.inputs}))
    targets = network_to_mm(test_set.targets)
    face = targets > 0
    errors = [(o - t)[f] for o, t, f in zip(outputs, targets, face)]
    assert resolve_recorded_path(metrics['checkpoint']) == os.path.abspath(prefix) and metrics['mirror_average']
    assert metrics['n_images'] == len(test_set)
    assert metrics['rmse_mm'] == pytest.approx(np.mean([np.sqrt(np.mean(e ** 2)) for e in errors]), rel=1e-4)
    assert metrics['mae_mm'] == pytest.approx(np.mean([np.mean(np.abs(e)) for e in errors]), rel=1e-4)
    recognition = metrics['recognition']['neutralised']
    assert (f"  rank-1 {100 * recognition['rank1']:.1f} % neutralised vs" in finished.stdout
            and f"equal-error rate {100 * recognition['eer']:.1f} % vs" in finished.stdout)
    neutral = [i for i, name in enumerate(test_set.names) if '_NE' in name]
    assert metrics['per_expression']['NE']['n'] == len(neutral)
    assert metrics['per_expression']['NE']['rmse_mm'] == pytest.approx(
        np.mean([np.sqrt(np.mean(errors[i] ** 2)) for i in neutral]), rel=1e-4)
    identity = metrics['baselines']['identity']
    input_errors = [(i - t)[f] for i, t, f in zip(network_to_mm(test_set.inputs), targets, face)]
    assert identity['rmse_mm'] == pytest.approx(np.mean([np.sqrt(np.mean(e ** 2)) for e in input_errors]),
                                                rel=1e-4)


def test_a_killed_run_resumes_at_its_last_saved_step(tiny_data, tmp_path):
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    command = [sys.executable, os.path.join(REPO, 'convworking.py'), '--mode', 'train', '--data', tiny_data,
               '--checkpoint-dir', str(checkpoints), '--results-dir', str(results), *TINY_NETWORK, *NO_GENERATED,
               '--max-steps', '100000', '--save-every', '5', '--validate-every', '5']
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = checkpoints / 'remove' / 'checkpoint'
    try:
        assert wait_for(lambda: state.exists() and 'latest-10' in state.read_text(), 300)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    import tensorflow as tf
    saved_step = int(tf.train.latest_checkpoint(str(checkpoints / 'remove')).rsplit('-', 1)[1])
    assert saved_step >= 10
    resumed = train_tiny(tiny_data, checkpoints, results, '--max-steps', saved_step + 3)
    assert resumed.returncode == 0, resumed.stderr
    assert f'latest-{saved_step} ' in resumed.stdout and f'steps {saved_step} -> {saved_step + 3}' in resumed.stdout
    assert (checkpoints / 'remove' / f'latest-{saved_step + 3}.index').exists()


def test_a_finished_training_run_again_says_it_is_at_its_last_step(trained):
    data, checkpoints, results = trained
    again = train_tiny(data, checkpoints, results, '--max-steps', 10)
    assert again.returncode == 0, again.stderr
    assert 'already at its last step (10): nothing to train' in again.stdout and 'trained steps' not in again.stdout


def test_checkpoint_accepts_the_checkpoint_dir_of_the_training(trained, tmp_path):
    data, checkpoints, _ = trained
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint', checkpoints, '--results-dir', tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert f'testing {checkpoints / "remove" / "best-"}' in finished.stdout


def test_test_mode_removes_what_a_killed_run_left_in_its_results_dir_and_says_so(trained, tmp_path):
    data, checkpoints, _ = trained
    left = tmp_path / f'.test_metrics.json.partial-{dead_pid()}'
    left.write_text('{"rmse_mm": 1.')   # half written
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint', checkpoints, '--results-dir', tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert f'convworking.py: removed what an interrupted run left in {tmp_path}: {left.name}\n' in finished.stdout
    assert not left.exists()


@pytest.mark.parametrize('stop, status, word', [(signal.SIGINT, 130, 'interrupted'),    # Ctrl-C
                                                (signal.SIGTERM, 143, 'terminated')])   # kill, a job scheduler
def test_ctrl_c_or_sigterm_names_the_step_kept_and_the_command_that_resumes(tiny_data, tmp_path, stop, status, word):
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    arguments = ['--mode', 'train', '--data', tiny_data, '--checkpoint-dir', str(checkpoints), '--results-dir',
                 str(results), *TINY_NETWORK, *NO_GENERATED, '--max-steps', '100000', '--save-every', '5', '--restart']
    # A shell without job control starts background commands with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the program the default SIGINT a user's terminal gives it, however the tests run.
    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'convworking.py'), *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = checkpoints / 'remove' / 'checkpoint'
    try:
        assert wait_for(lambda: state.exists() and 'latest-5' in state.read_text(), 300)
    finally:
        process.send_signal(stop)
        stderr = process.communicate(timeout=120)[1]
    assert process.returncode == status and 'Traceback' not in stderr, stderr
    message = stderr.strip().splitlines()[-1]
    import tensorflow as tf
    kept = tf.train.latest_checkpoint(str(checkpoints / 'remove'))
    assert message.startswith(f'convworking.py: {word}; kept the checkpoint of step {kept.rsplit("-", 1)[1]} '
                              f'({kept}), the steps after it are lost.')
    assert message.endswith('Resume with: python convworking.py ' + ' '.join(arguments[:-1]))   # no --restart


def test_help_answers_at_once_with_examples_and_defaults():
    started = time.time()
    finished = run_program('--help')
    assert finished.returncode == 0 and time.time() - started < 4       # TensorFlow is not imported for it
    assert 'examples:' in finished.stdout and '--max-steps 200 --generated-subjects 0' in finished.stdout
    assert 'batch order (default: 0)' in ' '.join(finished.stdout.split())


# ------------------------------------------------------------------------------------------------ bad input

@pytest.fixture
def data_copy(tiny_data, tmp_path):
    copy = tmp_path / 'data'
    shutil.copytree(tiny_data, copy)
    return copy


def test_missing_data_folder(tmp_path):
    assert_one_line_error(train_tiny(tmp_path / 'nowhere', tmp_path / 'c', tmp_path / 'r'), 'nowhere', 'not found')


def test_missing_split(data_copy, tmp_path):
    shutil.rmtree(data_copy / 'inputs' / 'valid')
    assert_one_line_error(train_tiny(data_copy, tmp_path / 'c', tmp_path / 'r'), 'valid', 'not found')


def test_input_without_target(data_copy, tmp_path):
    victim = sorted(os.listdir(data_copy / 'targets' / 'test'))[0]
    os.remove(data_copy / 'targets' / 'test' / victim)
    finished = run_program('--mode', 'test', '--data', data_copy, '--checkpoint-dir', tmp_path)
    assert_one_line_error(finished, victim, 'missing')


@pytest.mark.parametrize('bad_image, message', [
    (np.zeros((128, 128, 3), np.uint8), 'channels'),
    (np.zeros((64, 128), np.uint16), '128 x 64'),
    (None, 'not a readable image'),
])
def test_bad_images(data_copy, tmp_path, bad_image, message):
    path = data_copy / 'inputs' / 'train' / sorted(os.listdir(data_copy / 'inputs' / 'train'))[0]
    if bad_image is None:
        path.write_bytes(b'not a png')
    else:
        cv2.imwrite(str(path), bad_image)
    assert_one_line_error(train_tiny(data_copy, tmp_path / 'c', tmp_path / 'r'), path.name, message)


def test_test_mode_without_checkpoint(tiny_data, tmp_path):
    finished = run_program('--mode', 'test', '--data', tiny_data, '--checkpoint-dir', tmp_path)
    assert_one_line_error(finished, 'no checkpoint found', f'nor in {tmp_path / "remove"}')


def test_checkpoint_of_another_architecture(trained, tmp_path):
    data, checkpoints, _ = trained
    prefix = str(checkpoints / 'remove' / 'latest-10')
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint', prefix, '--results-dir', tmp_path,
                           '--kernel-size', 5)
    assert_one_line_error(finished, '--kernel-size 5', 'contradicts')
    shutil.copytree(checkpoints / 'remove', tmp_path / 'no_options')
    os.remove(tmp_path / 'no_options' / 'options.json')   # the defaults are then assumed: the checkpoint's
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint', tmp_path / 'no_options',
                           '--results-dir', tmp_path)                # recorded architecture names the field
    assert_one_line_error(finished, 'trained with channels 8, not 64')


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path):
    data, checkpoints, _ = trained
    shutil.copytree(checkpoints, tmp_path / 'c')
    before = sorted(os.listdir(tmp_path / 'c' / 'remove'))
    finished = train_tiny(data, tmp_path / 'c', tmp_path / 'r', '--max-steps', 30, '--lr', 1e30)
    assert_one_line_error(finished, 'the loss became', 'latest-10')
    assert sorted(os.listdir(tmp_path / 'c' / 'remove')) == before


@pytest.mark.parametrize('option', [['--batch-size', '0'], ['--lr', '-1'], ['--modules', '4'],
                                    ['--loss', 'bce'], ['--max-steps', 'many'], ['--family-subjects', '-1'],
                                    ['--plain-subjects', 'x'], ['--model-fit-every', '-20'],
                                    ['--generated-variations', 'warp'], ['--generated-variations', 'hair'],
                                    ['--kernel-size', '2147483647'], ['--channels', '2147483647'],
                                    ['--kernel-size', '16'], ['--channels', '0']])
def test_options_out_of_range(option, tmp_path):
    finished = run_program('--mode', 'train', '--checkpoint-dir', tmp_path, *option)
    assert_one_line_error(finished, option[0])
    assert os.listdir(tmp_path) == []                     # refused before anything was written


@pytest.mark.parametrize('option_type, text, wanted', [
    (whole_number(0), 'many', 'a whole number from 0 to 2147483647'),
    (whole_number(-3, 3), '4', 'a whole number from -3 to 3'),
    (whole_number(1), '2.5', 'a whole number from 1'), (positive_float, 'fast', 'a positive number'),
    (positive_float, '0', 'a positive number'), (non_negative_float, 'inf', 'a finite number >= 0'),
    (finite_float, 'nan', 'a finite number')])
def test_a_word_and_a_number_out_of_range_get_the_same_line(option_type, text, wanted):
    with pytest.raises(argparse.ArgumentTypeError, match=f'^must be {wanted}.*, not {text}$'):
        option_type(text)


@pytest.mark.parametrize('option', [['--generated-variations', 'reshape'], ['--family-subjects', '2'],
                                    ['--plain-subjects', '3']])
def test_the_depth_data_options_do_not_fit_the_segmentation_task(option, tmp_path):
    finished = run_program('--mode', 'train', '--task', 'segment', '--checkpoint-dir', tmp_path, *option)
    assert_one_line_error(finished, option[0], '--task segment')
