"""Nothing lost, nothing crashes (issue 11): damaged files, unwritable places, full disks, two runs at once."""
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from conftest import TINY_NETWORK, assert_one_line_error, run_program
from depth.dataset import Dataset
from depth.png import DepthImageError, read_depth_png, write_depth_png
from support import safe_files


def train_tiny(data, checkpoints, *extra):
    return run_program('--mode', 'train', '--data', data, '--checkpoint-dir', checkpoints,
                       '--results-dir', checkpoints.parent / 'results', *TINY_NETWORK, '--validate-every', 5,
                       '--save-every', 5, *extra)


@pytest.fixture(scope='module')
def trained(tiny_data, tmp_path_factory):
    """A checkpoint folder of a tiny network trained 10 steps: latest-5, latest-10 and a best."""
    checkpoints = tmp_path_factory.mktemp('trained') / 'checkpoints'
    finished = train_tiny(tiny_data, checkpoints, '--max-steps', 10)
    assert finished.returncode == 0, finished.stderr
    return checkpoints


@pytest.fixture
def checkpoints(trained, tmp_path):
    """A copy of the trained checkpoint folder that a test may damage."""
    return shutil.copytree(trained, tmp_path / 'checkpoints')


def snapshot(folder):
    """Every file under `folder` with its content, to show that nothing was changed."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), 'rb').read()
            for root, _, names in os.walk(folder) for name in names}


def best_prefix(checkpoints):
    [index] = [name for name in os.listdir(checkpoints / 'remove') if name.startswith('best-')
               and name.endswith('.index')]
    return str(checkpoints / 'remove' / index[:-len('.index')])


def truncate_data(prefix):
    path = f'{prefix}.data-00000-of-00001'
    os.truncate(path, os.path.getsize(path) // 2)


def flip_index_byte(prefix):
    path = f'{prefix}.index'
    content = bytearray(open(path, 'rb').read())
    content[len(content) // 2] ^= 0xFF
    open(path, 'wb').write(bytes(content))


def latest_steps(checkpoints):
    names = os.listdir(checkpoints / 'remove')
    return sorted({int(name.split('-')[1].split('.')[0]) for name in names if name.startswith('latest-')})


# ------------------------------------------------------------------------------------- 1. --restart

def test_a_refused_restart_deletes_nothing(checkpoints, tmp_path):
    before = snapshot(checkpoints)
    assert_one_line_error(train_tiny(tmp_path / 'nowhere', checkpoints, '--restart'), 'nowhere', 'not found')
    assert snapshot(checkpoints) == before


def test_a_restart_deletes_the_previous_run_once_the_checks_pass(tiny_data, checkpoints):
    finished = train_tiny(tiny_data, checkpoints, '--restart', '--max-steps', 5)
    assert finished.returncode == 0, finished.stderr
    assert 'steps 0 -> 5' in finished.stdout and latest_steps(checkpoints) == [5]


# ------------------------------------------------------------------------------- 2. two runs, one folder

def test_a_second_training_on_a_held_folder_gets_one_line_and_changes_nothing(tiny_data, checkpoints):
    before = snapshot(checkpoints)
    with safe_files.locked_folder(str(checkpoints / 'remove'), '--checkpoint-dir'):
        for extra in ([], ['--restart']):
            finished = train_tiny(tiny_data, checkpoints, '--max-steps', 15, *extra)
            assert_one_line_error(finished, 'in use by another run', f'process {os.getpid()}')
    assert snapshot(checkpoints) == before


def test_a_second_infer_into_a_held_output_folder_gets_one_line(tiny_data, checkpoints, tmp_path):
    output = tmp_path / 'neutral'
    with safe_files.locked_folder(str(output), '--output folder'):
        finished = run_program('--mode', 'infer', '--checkpoint-dir', checkpoints,
                               '--input', os.path.join(tiny_data, 'inputs', 'test'), '--output', output)
        assert_one_line_error(finished, 'in use by another run')
        assert os.listdir(output) == [safe_files.LOCK_FILE]
    assert not output.exists()  # the lock made it, the lock removed it


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time\n'
                               'from support import safe_files\n'
                               'with safe_files.locked_folder(sys.argv[1], "folder"):\n'
                               '    print("held", flush=True); time.sleep(600)', str(tmp_path / 'held')],
        cwd=os.path.dirname(os.path.dirname(safe_files.__file__)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'held\n'
        with pytest.raises(safe_files.FolderError, match=f'in use by another run .process {holder.pid}'):
            with safe_files.locked_folder(str(tmp_path / 'held'), 'folder'):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with safe_files.locked_folder(str(tmp_path / 'held'), 'folder'):
        pass


# ------------------------------------------------------------------------------ 3. damaged checkpoints

@pytest.mark.parametrize('damage', [truncate_data, flip_index_byte])
@pytest.mark.parametrize('mode', ['test', 'infer', 'export'])
def test_a_damaged_checkpoint_gets_one_line(tiny_data, checkpoints, tmp_path, damage, mode):
    prefix = best_prefix(checkpoints)
    damage(prefix)
    extra = {'test': ['--data', tiny_data, '--results-dir', tmp_path / 'results'],
             'infer': ['--input', os.path.join(tiny_data, 'inputs', 'test'), '--output', tmp_path / 'out'],
             'export': ['--output', tmp_path / 'out']}[mode]
    finished = run_program('--mode', mode, '--checkpoint', prefix, *extra)
    assert_one_line_error(finished, os.path.basename(prefix), 'damaged checkpoint')
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'results').exists()


@pytest.mark.parametrize('damage', [truncate_data, lambda prefix: os.remove(f'{prefix}.index')],
                         ids=['truncated data', 'missing index'])
def test_resume_falls_back_to_the_newest_readable_latest(tiny_data, checkpoints, damage):
    damage(str(checkpoints / 'remove' / 'latest-10'))
    finished = train_tiny(tiny_data, checkpoints, '--max-steps', 12)
    assert finished.returncode == 0, finished.stderr
    assert 'latest-10: damaged checkpoint' in finished.stdout
    assert 'resuming from' in finished.stdout and 'latest-5 ' in finished.stdout
    assert 'steps 5 -> 12' in finished.stdout
    assert latest_steps(checkpoints) == [10, 12]  # the damaged latest-10 was saved anew


def test_resume_with_every_latest_damaged_is_refused_in_one_line(tiny_data, checkpoints):
    for step in (5, 10):
        truncate_data(str(checkpoints / 'remove' / f'latest-{step}'))
    before = snapshot(checkpoints)
    assert_one_line_error(train_tiny(tiny_data, checkpoints, '--max-steps', 12),
                          'none of its 2 latest-* checkpoints can be read', '--restart')
    assert snapshot(checkpoints) == before


# ------------------------------------------------------------------- 4. unwritable places, full disks

@pytest.mark.parametrize('mode, option', [('train', '--results-dir'), ('train', '--checkpoint-dir'),
                                          ('test', '--results-dir'), ('infer', '--output'),
                                          ('export', '--output')])
def test_a_path_under_a_file_gets_one_line(tiny_data, checkpoints, tmp_path, mode, option):
    (tmp_path / 'a_file').write_text('')
    options = {'--data': tiny_data, '--checkpoint-dir': checkpoints, '--results-dir': tmp_path / 'results',
               '--input': os.path.join(tiny_data, 'inputs', 'test'), '--output': tmp_path / 'out'}
    options[option] = tmp_path / 'a_file' / 'inside'
    used = ['--data', '--checkpoint-dir', '--results-dir'] + (['--input', '--output'] if mode == 'infer' else
                                                             ['--output'] if mode == 'export' else [])
    arguments = [text for name in used for text in (name, options[name])]
    finished = run_program('--mode', mode, *arguments, *TINY_NETWORK, '--max-steps', 2)
    assert_one_line_error(finished, 'a_file', 'Not a directory')


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_leaves_nothing_when_the_disk_is_full(tmp_path):
    with pytest.raises(OSError, match='No space left on device') as raised:
        with safe_files.atomic_write(str(tmp_path / 'grid.png')) as file:
            file.write(b'half an image')
            full_disk()
    assert raised.value.filename == str(tmp_path / 'grid.png')
    assert os.listdir(tmp_path) == []


def test_an_export_that_fails_midway_leaves_no_file_behind(checkpoints, tmp_path, monkeypatch, capsys):
    import convworking
    from inference import export
    monkeypatch.setattr(export, 'write_saved_model', full_disk)
    status = convworking.main(['--mode', 'export', '--checkpoint-dir', str(checkpoints),
                               '--output', str(tmp_path / 'model')])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == ['convworking.py: error: '
                                                            f'{tmp_path / "model" / "saved_model"}: '
                                                            'No space left on device']
    assert not (tmp_path / 'model').exists()  # so a rerun is not blocked by "already exists"


def test_training_removes_what_interrupted_writes_left_and_keeps_two_latest(tiny_data, checkpoints):
    folder = checkpoints / 'remove'
    litter = ['latest-7.data-00000-of-00001.tempstate123', '.options.json.partial-999']
    for name in litter:
        (folder / name).write_bytes(b'half written')
    # A latest of an earlier run that its saver had rotated out only in its own memory (a kill): litter too.
    for suffix in ('index', 'data-00000-of-00001'):
        shutil.copy(folder / f'latest-5.{suffix}', folder / f'latest-3.{suffix}')
    for last in (12, 14, 16):
        finished = train_tiny(tiny_data, checkpoints, '--max-steps', last, '--save-every', 1)
        assert finished.returncode == 0, finished.stderr
        assert ('removed what an interrupted run left' in finished.stdout) == (last == 12)   # and says so, once
    assert latest_steps(checkpoints) == [15, 16]
    assert not set(litter) & set(os.listdir(folder))


def test_training_from_a_best_without_latest_never_removes_that_best(tiny_data, tmp_path):
    """The shipped model's case: a better run adds its own best and leaves the shipped one in place."""
    checkpoints = tmp_path / 'checkpoints'
    # A "shipped" model thrown off by one step of a huge learning rate (3.7 mm), so that the new run does better.
    shipped = train_tiny(tiny_data, checkpoints, '--max-steps', 1, '--validate-every', 1, '--lr', 0.05)
    assert shipped.returncode == 0, shipped.stderr
    folder = checkpoints / 'remove'
    for name in os.listdir(folder):
        if name.startswith('latest-') or name == 'checkpoint':
            os.remove(folder / name)
    shipped_files = {name: (folder / name).read_bytes() for name in os.listdir(folder) if name.startswith('best-')}
    finished = train_tiny(tiny_data, checkpoints, '--max-steps', 10, '--seed', 1)
    assert finished.returncode == 0, finished.stderr
    assert 'is kept unless this run does better' in finished.stdout and '(best so far, saved)' in finished.stdout
    assert {name: (folder / name).read_bytes() for name in shipped_files} == shipped_files
    assert 'best-1"' not in (folder / 'best_checkpoint').read_text()


# ------------------------------------------------------------------------------ 5., 6. what a PNG is

def png_claiming(width, height, bits=8, colour_type=0):
    """A tiny PNG file whose header claims the given size: a decompression bomb when the size is large."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, bits, colour_type, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 4096))
            + chunk(b'IEND', b''))


def encoded(extension, image, *parameters):
    return cv2.imencode(extension, image, list(parameters))[1].tobytes()


@pytest.mark.parametrize('content, message', [
    (png_claiming(40000, 40000), 'claims 40000 x 40000 pixels'),
    (encoded('.jpg', np.zeros((128, 128), np.uint8)), 'not a PNG file'),
    (encoded('.png', np.zeros((128, 128), np.uint8), cv2.IMWRITE_PNG_BILEVEL, 1), 'is a 1-bit PNG'),
    (png_claiming(128, 128, bits=8, colour_type=3), 'palette'),
    (png_claiming(128, 128, bits=8, colour_type=4), 'has 2 channels'),
    (encoded('.png', np.full((128, 128), 1000, np.uint16))[:300], 'damaged PNG data'),
], ids=['bomb', 'jpeg', '1-bit', 'palette', 'grey+alpha', 'truncated'])
def test_only_single_channel_8_or_16_bit_pngs_are_read_and_quietly(tmp_path, capfd, content, message):
    path = tmp_path / 'face.png'
    path.write_bytes(content)
    with pytest.raises(DepthImageError, match=message):
        read_depth_png(path)
    assert capfd.readouterr().err == ''  # no libpng or OpenCV line besides ours


def test_infer_skips_a_decompression_bomb_in_a_folder_and_writes_the_others(tiny_data, checkpoints, tmp_path):
    scans = tmp_path / 'scans'
    scans.mkdir()
    (scans / 'bomb.png').write_bytes(png_claiming(40000, 40000))
    shutil.copy(os.path.join(tiny_data, 'inputs', 'test', sorted(os.listdir(os.path.join(tiny_data, 'inputs',
                                                                                        'test')))[0]),
                scans / 'face.png')
    finished = run_program('--mode', 'infer', '--checkpoint-dir', checkpoints, '--input', scans,
                           '--output', tmp_path / 'out')
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f'convworking.py: skipped {scans / "bomb.png"}: claims 40000 x 40000 pixels, beyond the '
        f'{8192 * 8192} pixels this program reads',
        'convworking.py: error: 1 of 2 image(s) skipped (reported above)']
    assert sorted(os.listdir(tmp_path / 'out')) == ['face.png', 'previews']


def test_a_written_depth_png_reads_back(tmp_path):
    heights = np.linspace(0, 120, 128 * 128, dtype=np.float32).reshape(128, 128)
    write_depth_png(tmp_path / 'face.png', heights)
    assert os.listdir(tmp_path) == ['face.png']
    read, bits = read_depth_png(tmp_path / 'face.png')
    assert bits == 16 and np.abs(read - heights).max() <= 0.05 + 1e-4


# ------------------------------------------------------------------------------------------- 7. values

@pytest.mark.parametrize('option', [['--seed', '-1'], ['--max-steps', str(10 ** 23)],
                                    ['--max-epochs', str(10 ** 23)], ['--max-steps', '1e23'],
                                    ['--threshold-mm', 'nan'], ['--threshold-mm', 'inf'],
                                    ['--threshold-mm', '-inf']])
def test_values_out_of_range_get_one_line(option, capsys):
    import convworking
    with pytest.raises(SystemExit) as stopped:
        convworking.parse_args(['--mode', 'train', *option])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and option[0] in lines[0], lines


# -------------------------------------------------------------------------------------- 8. strict JSON

def test_strict_json_writes_null_and_says_why(tmp_path):
    safe_files.write_strict_json(str(tmp_path / 'metrics.json'),
                                 {'rmse_mm': float('nan'), 'per_expression': {'NE': [1.0, float('inf')]}, 'n': 3})
    text = (tmp_path / 'metrics.json').read_text()
    metrics = json.loads(text, parse_constant=lambda constant: pytest.fail(f'{constant} in JSON'))
    assert metrics['rmse_mm'] is None and metrics['per_expression'] == {'NE': [1.0, None]} and metrics['n'] == 3
    assert metrics['null_values'] == safe_files.NULL_NOTE


def test_test_mode_without_face_pixels_writes_strict_json_quietly(tiny_data, checkpoints, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / 'data')
    for name in os.listdir(data / 'targets' / 'test'):
        write_depth_png(data / 'targets' / 'test' / name, np.zeros((128, 128)))
    finished = run_program('--mode', 'test', '--data', data, '--checkpoint-dir', checkpoints,
                           '--results-dir', tmp_path / 'results')
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ''  # no RuntimeWarning about empty means
    metrics = json.loads((tmp_path / 'results' / 'test_metrics.json').read_text(),
                         parse_constant=lambda constant: pytest.fail(f'{constant} in JSON'))
    assert metrics['rmse_mm'] is None and metrics['null_values'] == safe_files.NULL_NOTE


# -------------------------------------------------------------------------------------------- 10. noise

def test_a_checkpoint_of_another_task_names_the_task_to_give(tiny_data, checkpoints, tmp_path):
    options_path = checkpoints / 'remove' / 'options.json'
    options = json.loads(options_path.read_text())
    options['architecture']['task'] = 'segment'
    options_path.write_text(json.dumps(options))
    finished = run_program('--mode', 'test', '--data', tiny_data, '--checkpoint', checkpoints / 'remove',
                           '--results-dir', tmp_path)
    assert_one_line_error(finished, 'holds a --task segment checkpoint; give --task segment')


def test_a_batch_larger_than_the_data_set_counts_the_images_it_holds():
    images = np.zeros((5, 128, 128, 1), np.float32)
    dataset = Dataset([f'{index}.png' for index in range(5)], images, images)
    inputs, _, _ = dataset.training_batch(0, 16, seed=0)
    assert dataset.images_per_step(16) == len(inputs) == 5 and dataset.images_per_step(4) == 4


# ------------------------------------------------------------------ issue 24: the shipped model is never replaced

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'checkpoints')


def test_training_defaults_to_its_own_folders_never_the_shipped_ones():
    import convworking
    options = convworking.parse_args(['--mode', 'train'])
    assert options.checkpoint_dir == convworking.DEFAULT_TRAINING_DIR
    assert options.results_dir == os.path.join(convworking.DEFAULT_TRAINING_DIR, 'results')
    assert convworking.parse_args(['--mode', 'test']).checkpoint_dir == SHIPPED


def test_training_into_the_shipped_folder_is_refused_and_changes_nothing(tiny_data, tmp_path):
    before = snapshot(SHIPPED)
    finished = run_program('--mode', 'train', '--restart', '--data', tiny_data, '--checkpoint-dir', SHIPPED,
                           '--results-dir', tmp_path / 'results', *TINY_NETWORK, '--max-steps', 2)
    assert_one_line_error(finished, 'holds the shipped model', 'promote')
    assert snapshot(SHIPPED) == before and not (tmp_path / 'results').exists()


def test_a_run_validated_on_other_data_is_not_resumed(checkpoints, tmp_path):
    from conftest import write_synthetic_data
    other = write_synthetic_data(tmp_path / 'other', seed=1)
    before = snapshot(checkpoints)
    assert_one_line_error(train_tiny(other, checkpoints, '--max-steps', 12), 'validated on other data',
                          '--restart')
    assert snapshot(checkpoints) == before


def readme_promotion():
    """The README's two commands that promote a run (section "Promoting a run")."""
    readme = open(os.path.join(os.path.dirname(SHIPPED), 'README.md')).read()
    block = readme.split('**Promoting a run.**')[1].split('```bash\n')[1].split('```')[0]
    return block.strip().splitlines()


def test_the_readme_promotion_replaces_the_model_with_the_runs_best(tiny_data, checkpoints, tmp_path):
    shipped = tmp_path / 'repository'
    shutil.copytree(SHIPPED, shipped / 'checkpoints')
    (shipped / 'runs').mkdir()
    shutil.copytree(checkpoints, shipped / 'runs' / 'full')
    for command in readme_promotion():
        subprocess.run(command, shell=True, cwd=shipped, check=True)
    assert sorted(os.listdir(shipped / 'checkpoints' / 'remove')) == sorted(
        ['TRAINING.md', 'best_checkpoint', 'options.json', 'valid_history.json']
        + [name for name in os.listdir(checkpoints / 'remove') if name.startswith('best-')])
    image = os.path.join(tiny_data, 'inputs', 'test', '0000_NE00.png')
    for source, output in ((checkpoints, 'run'), (shipped / 'checkpoints', 'promoted')):
        done = run_program('--mode', 'infer', '--checkpoint', source, '--input', image, '--output', tmp_path / output)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / 'run' / '0000_NE00.png').read_bytes() == (tmp_path / 'promoted' / '0000_NE00.png').read_bytes()


@pytest.mark.parametrize('mode, option, place', [
    ('infer', '--output', os.path.join(SHIPPED, 'remove', 'x')),
    ('export', '--output', os.path.join(SHIPPED, 'remove')),
    ('test', '--results-dir', 'DATA/inputs/test'), ('infer', '--output', 'DATA/mine')])
def test_outputs_inside_a_checkpoint_or_data_folder_are_refused(tiny_data, mode, option, place):
    place = place.replace('DATA', tiny_data)
    before = snapshot(tiny_data)
    image = os.path.join(tiny_data, 'inputs', 'test', '0000_NE00.png')
    finished = run_program('--mode', mode, '--data', tiny_data, '--input', image, option, place)
    assert_one_line_error(finished, option, 'is inside the', 'folder')
    assert snapshot(tiny_data) == before and not os.path.exists(os.path.join(SHIPPED, 'remove', 'x'))
