"""Issue 24: what killed runs leave, Ctrl-C at start, full disks, odd file names, FIFOs, and data whose splits
share a subject or whose valid split has no face."""
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_GENERATED, REPO, TINY_NETWORK, assert_one_line_error, dead_pid, run_program
from depth.dataset import DataError
from depth.png import DepthImageError, read_depth_png, write_depth_png
from support import command_line, safe_files
from support.command_line import display_name
from training.tasks import TASKS, DataSource


def train(data, root, *extra):
    return run_program('--mode', 'train', '--data', data, '--checkpoint-dir', root / 'checkpoints',
                       '--results-dir', root / 'results', *TINY_NETWORK, '--max-steps', 2, *extra)


# ------------------------------------------------------------------------------------- what killed runs leave

def test_only_our_temporaries_of_ended_processes_are_leftovers(tmp_path):
    dead = dead_pid()
    ours = [f'.grid.png.partial-{dead}', f'.model.partial-{dead}', f'.a\nb.png.partial-{dead}']
    others = [f'.grid.png.partial-{os.getpid()}',   # a running process's: being written
              '.grid.png.partial-x1', 'grid.png.partial-12', f'.partial-{dead}', '.grid.png.partial-12345678',
              'notes.txt', 'latest-7.data-00000-of-00001.tempstate123']
    for name in ours + others:
        (tmp_path / name).write_bytes(b'')
    assert safe_files.leftovers(tmp_path) == sorted(ours)
    assert safe_files.leftovers(tmp_path, of='model') == [f'.model.partial-{dead}']
    # a folder this run holds: every temporary of ours, and TensorFlow's savers'
    assert safe_files.leftovers(tmp_path, held=True) == sorted(
        ours + [f'.grid.png.partial-{os.getpid()}', 'latest-7.data-00000-of-00001.tempstate123'])
    said = []
    safe_files.remove_leftovers(tmp_path, said.append)
    assert sorted(os.listdir(tmp_path)) == sorted(others)
    assert said == [f'removed what an interrupted run left in {tmp_path}: .a\\nb.png.partial-{dead}, '
                    f'.grid.png.partial-{dead}, .model.partial-{dead}']


def test_a_temporary_name_ends_with_the_writers_process_id_whatever_the_path(tmp_path):
    assert safe_files.temporary_name(f'{tmp_path}/model/') == f'{tmp_path}/.model.partial-{os.getpid()}'


def test_of_two_exports_into_one_folder_the_second_to_finish_is_refused_and_the_first_kept(tmp_path):
    model = tmp_path / 'model'
    with pytest.raises(OSError, match='Directory not empty') as refused:
        with safe_files.atomic_path(model) as hidden:   # as export_model writes
            os.makedirs(hidden)
            (Path(hidden) / 'model.json').write_text('second')
            model.mkdir()                                # the first export finished meanwhile
            (model / 'model.json').write_text('first')
    assert refused.value.filename == str(model)
    assert os.listdir(tmp_path) == ['model'] and (model / 'model.json').read_text() == 'first'


# ---------------------------------------------------------------------------------------- Ctrl-C at start

LONG_RUNS = {   # commands that run for minutes, stopped during their first second or two
    'convworking.py': ['--mode', 'train', '--data', 'DATA', '--checkpoint-dir', 'TMP/c', '--results-dir', 'TMP/r',
                       *TINY_NETWORK, *NO_GENERATED, '--max-steps', '100000'],
    'make_dataset.py': ['--output', 'TMP/data', '--train-subjects', '50'],
    'bench.py': ['--tiny', '--out', 'TMP/bench.json'],
    'scan_benchmark.py': ['--output', 'TMP/scans.json'],
}


@pytest.mark.parametrize('seconds', [0.2, 1.5])
@pytest.mark.parametrize('script', list(LONG_RUNS))
def test_ctrl_c_in_the_first_second_ends_in_one_line_with_status_130(tiny_data, tmp_path, script, seconds):
    stopped = stop_after(tiny_data, tmp_path, script, signal.SIGINT, seconds)
    assert stopped.returncode == 130 and 'Traceback' not in stopped.stderr, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert lines[-1].startswith(f'{script}: interrupted'), lines
    if seconds < 0.5:   # still importing: the line is all it says (later, bench.py says what it starts)
        assert lines == [f'{script}: interrupted']


class ImportBrokenByCtrlC:
    """TensorFlow as convworking.py meets it when Ctrl-C lands inside its import: the first use is interrupted,
    and every later use fails, as a retried import of a half-imported TensorFlow does."""

    def __init__(self):
        self.uses = 0

    def __getattr__(self, name):
        self.uses += 1
        if self.uses == 1:
            raise KeyboardInterrupt
        raise ValueError('Name tf.RaggedTensorSpec has already been registered')


def test_ctrl_c_inside_tensorflows_import_is_not_followed_by_a_second_import(tiny_data, tmp_path, monkeypatch,
                                                                            capsys):
    import convworking
    from training import checkpoints
    broken = ImportBrokenByCtrlC()
    for module in (convworking, checkpoints):
        monkeypatch.setattr(module, 'tf', broken)
    monkeypatch.delitem(sys.modules, 'tensorflow', raising=False)   # as a broken import leaves it
    # a run to resume: what Ctrl-C kept would be asked of TensorFlow
    (tmp_path / 'c' / 'remove').mkdir(parents=True)
    (tmp_path / 'c' / 'remove' / 'checkpoint').write_text('model_checkpoint_path: "latest-5"\n')
    argv = ['--mode', 'train', '--data', tiny_data, '--checkpoint-dir', tmp_path / 'c', '--results-dir',
            tmp_path / 'r', *TINY_NETWORK, *NO_GENERATED]
    assert convworking.main(argv) == 130 and broken.uses == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"convworking.py: interrupted before training started; "
                                                 f"{tmp_path / 'c' / 'remove'} is as it was."), said


def test_sigterm_at_start_ends_in_one_line_with_status_143(tiny_data, tmp_path):
    stopped = stop_after(tiny_data, tmp_path, 'convworking.py', signal.SIGTERM, 0.2)
    assert stopped.returncode == 143 and stopped.stderr.strip().splitlines() == ['convworking.py: terminated']


def stop_after(data, folder, script, stop, seconds):
    """Run the script and send `stop` to its process group (as a terminal sends Ctrl-C: to every process of the
    job, the workers a pool has started included) after `seconds`."""
    arguments = [word.replace('DATA', data).replace('TMP', str(folder)) for word in LONG_RUNS[script]]
    # the default SIGINT a terminal gives, however the tests run (see test_command_line's Ctrl-C test)
    process = subprocess.Popen([sys.executable, os.path.join(REPO, script), *arguments], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(seconds)
    os.killpg(process.pid, stop)
    stderr = process.communicate(timeout=120)[1]
    return subprocess.CompletedProcess(process.args, process.returncode, None, stderr)


# ------------------------------------------------------------------------------------------------ full disks

FullDisk = collections.namedtuple('FullDisk', 'total used free')


@pytest.mark.parametrize('mode', ['train', 'test'])
def test_a_full_disk_under_results_dir_is_refused_before_the_work(tiny_data, tmp_path, monkeypatch, capsys, mode):
    import convworking
    results = tmp_path / 'results'
    results.mkdir()
    monkeypatch.setattr(command_line.shutil, 'disk_usage', lambda path: FullDisk(
        10 ** 9, 10 ** 9, 4096 if os.path.samefile(path, results) else 10 ** 9))   # only results/ is full
    status = convworking.main(['--mode', mode, '--data', tiny_data, '--checkpoint-dir', str(tmp_path / 'c'),
                               '--results-dir', str(results), *NO_GENERATED])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'convworking.py: error: --results-dir {results}: its disk is full (4 KB free)']
    assert os.listdir(tmp_path) == ['results'] and os.listdir(results) == []


@pytest.fixture
def full_file_system(tmp_path):
    """A folder on a full file system (a 64 KB tmpfs, filled up). Mounting needs root: skipped without."""
    mount = tmp_path / 'full'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(mount)],
                      capture_output=True).returncode:
        pytest.skip('mounting a small file system needs root')
    try:
        descriptor = os.open(mount / 'filler', os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(descriptor, b'\0' * 4096):
                pass
        except OSError:   # No space left on device: full
            pass
        finally:
            os.close(descriptor)
        yield mount
    finally:
        subprocess.run(['umount', str(mount)], check=True)


def test_training_on_a_really_full_disk_says_one_line_and_tensorflow_nothing(tiny_data, tmp_path, full_file_system):
    finished = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', tmp_path / 'c',
                           '--results-dir', full_file_system / 'results', *TINY_NETWORK, '--max-steps', 10)
    assert_one_line_error(finished, f'--results-dir {full_file_system / "results"}: its disk is full')
    assert 'E0000' not in finished.stderr


def test_tensorflow_prints_nothing_when_its_summary_writer_meets_a_full_disk(full_file_system):
    """Its C++ core's "E0000 ... Write failed" would come before (or instead of) the program's own line."""
    script = ('import sys\n'
              'from support.quiet_tensorflow import tf\n'
              'tf.compat.v1.disable_eager_execution()   # as convworking.py runs it\n'
              'writer = tf.compat.v1.summary.FileWriter(sys.argv[1])\n'
              'writer.add_summary(tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="a", simple_value=1)]))\n'
              'writer.close()\n')
    finished = subprocess.run([sys.executable, '-c', script, str(full_file_system / 'logs')], cwd=REPO,
                              capture_output=True, text=True)
    assert finished.returncode == 0 and finished.stderr == '', finished.stderr


# ---------------------------------------------------------------------------------------------- odd files

def test_display_name_keeps_any_name_on_one_printable_line():
    assert display_name('scans/0100_SU04.png') == 'scans/0100_SU04.png'
    assert display_name('a\nb.png') == 'a\\nb.png' and display_name('a\x1b[2Jb') == 'a\\x1b[2Jb'
    assert display_name(os.fsdecode(b'caf\xe9.png')) == 'caf\\xe9.png' == display_name(b'caf\xe9.png')
    assert display_name('café.png') == 'café.png'


def test_a_fifo_named_like_an_image_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / 'x.png')

    def waited(number, frame):
        raise TimeoutError('read_depth_png waited for a writer')
    signal.signal(signal.SIGALRM, waited)
    signal.alarm(20)
    try:
        with pytest.raises(DepthImageError, match='x.png: not a readable image .not a regular file.'):
            read_depth_png(tmp_path / 'x.png')
    finally:
        signal.alarm(0)


# --------------------------------------------------------------------------------------- data to refuse

@pytest.fixture
def data(tiny_data, tmp_path):
    return shutil.copytree(tiny_data, tmp_path / 'data')


def test_a_valid_split_without_face_pixels_is_refused_before_training(data, tmp_path):
    for name in os.listdir(data / 'targets' / 'valid'):
        write_depth_png(data / 'targets' / 'valid' / name, np.zeros((128, 128)))
    finished = train(data, tmp_path)
    assert_one_line_error(finished, f"{data / 'targets' / 'valid'}: no target has a face pixel")
    assert 'saved as None' not in finished.stdout and not (tmp_path / 'checkpoints').exists()


def move_pair(data, split, name, new_split, new_name):
    for side in ('inputs', 'targets'):
        os.replace(data / side / split / name, data / side / new_split / new_name)


def copy_pair(data, split, name, new_split, new_name):
    for side in ('inputs', 'targets'):
        shutil.copy(data / side / split / name, data / side / new_split / new_name)


def test_a_subject_id_in_two_splits_is_refused_by_training_and_testing(data, tmp_path):
    move_pair(data, 'test', '0000_NE00.png', 'test', '0200_NE00.png')     # training's subject 0200
    for mode in ('train', 'test'):
        finished = run_program('--mode', mode, '--data', data, '--checkpoint-dir', tmp_path / 'none',
                               '--results-dir', tmp_path / 'results', *TINY_NETWORK)
        assert_one_line_error(finished, f'{data}: subject 0200 is in two splits (inputs/train/0200_',
                              'inputs/test/0200_NE00.png); a subject belongs to one split')
    assert not (tmp_path / 'none').exists() and not (tmp_path / 'results').exists()


@pytest.mark.parametrize('split', ['valid', 'test'])
def test_the_same_face_under_another_id_in_two_splits_is_refused(data, split):
    source = sorted(os.listdir(data / 'targets' / split))[-1]
    copy_pair(data, split, source, 'train', '0299_NE00.png')
    load = {'valid': TASKS['remove'].load_for_training, 'test': TASKS['remove'].load_for_testing}[split]
    with pytest.raises(DataError, match=f'targets/train/0299_NE00.png and targets/{split}/{source} are the same '
                                        'face .identical images. under two subject ids'):
        load(DataSource(str(data)))
