"""infer and export on a tiny checkpoint trained once for this module (see conftest.TINY_NETWORK)."""
import json
import os
import re
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from matplotlib.colors import Normalize

from conftest import (REPO, TINY_NETWORK, checkpoint_probabilities, dead_pid, deadband_in_numpy, restored_outputs,
                      run_program, synthetic_pair, wait_for)
from convworking import parse_args, tf
from depth.convention import mm_to_network, network_to_mm
from depth.dataset import DataError
from depth.png import DepthImageError, depth_mm_to_units, write_depth_png
from evaluation.plotting import lit_relief
from inference import export, neutralise
from inference.background import INSIDE_THRESHOLD_MM, MASK_PROBABILITY, Background
from support.paths import resolve_recorded_path

THRESHOLD_MM = 10.0  # the command line's default --threshold-mm
DEADBAND_MM = 0.2    # the command line's default --deadband-mm
DEADBAND_RELIEF = 0.1  # and its default --deadband-relief


@pytest.fixture(scope='module')
def checkpoint(tiny_data, tmp_path_factory):
    """(checkpoint prefix, architecture) of a 10-step tiny network."""
    root = tmp_path_factory.mktemp('trained')
    done = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', root / 'checkpoints',
                       '--results-dir', root / 'results', '--max-steps', 10, '--validate-every', 5, *TINY_NETWORK)
    assert done.returncode == 0, done.stderr
    folder = root / 'checkpoints' / 'remove'
    with open(folder / 'options.json') as file:
        architecture = json.load(file)['architecture']
    prefix = tf.train.latest_checkpoint(str(folder), latest_filename='best_checkpoint')
    assert prefix
    return prefix, architecture


def checkpoint_outputs(checkpoint, batch, mirror_average=True, deadband_mm=DEADBAND_MM,
                       deadband_relief=DEADBAND_RELIEF):
    """The network's output for a batch (network scale), computed in this process from the checkpoint; with
    mirror_average (the default of infer and export), averaged here with the mirrored output of the mirrored
    batch; then the displacement of the input's surface shrunk by deadband_mm and deadband_relief, recomputed
    here in numpy."""
    output = restored_outputs(*checkpoint, batch, mirror_average)
    return deadband_in_numpy(output, batch, mm_to_network(deadband_mm), deadband_relief)


def faces_mm(count, seed=1):
    rng = np.random.default_rng(seed)
    return [synthetic_pair(rng, index)[0] for index in range(count)]


def read_raw(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def expected_units(checkpoint, height_mm, bits):
    """What infer should write for a 128 x 128 image: the output with its background decided by the input's
    surface and the threshold (inference.background), in the input's units."""
    output_mm = network_to_mm(checkpoint_outputs(checkpoint, mm_to_network(height_mm)[None, ..., None])[0, ..., 0])
    return depth_mm_to_units(Background(THRESHOLD_MM).apply(output_mm, height_mm), bits), output_mm


def away_from_the_thresholds(output_mm):
    """Pixels whose output is not within 0.05 mm of a height the background rule compares it with: there a
    rounding difference may flip the decision."""
    return (np.abs(output_mm - THRESHOLD_MM) > 0.05) & (np.abs(output_mm - INSIDE_THRESHOLD_MM) > 0.05)


def assert_matches(checkpoint, written, input_path, bits):
    """Written units equal the checkpoint's output within one unit (pixels at a threshold may flip)."""
    input_mm = read_raw(input_path).astype(np.float32) * (0.1 if bits == 16 else 0.5)
    expected, output_mm = expected_units(checkpoint, input_mm, bits)
    raw = read_raw(written)
    assert raw.dtype == (np.uint16 if bits == 16 else np.uint8) and raw.shape == (128, 128)
    difference = np.abs(raw.astype(int) - expected.astype(int))[away_from_the_thresholds(output_mm)]
    assert difference.max() <= 1, difference.max()
    assert raw.max() > 0


@pytest.fixture(scope='module')
def scans(tmp_path_factory):
    """A folder of own scans: 16-bit (0.1 mm) and 8-bit (0.5 mm) faces, a colour PNG and a 160 x 200 one."""
    folder = tmp_path_factory.mktemp('scans')
    first, second, third = faces_mm(3)
    write_depth_png(folder / 'face_16bit.png', first, 16)
    write_depth_png(folder / 'face_8bit.png', second, 8)
    cv2.imwrite(str(folder / 'colour.png'), np.full((128, 128, 3), 90, np.uint8))
    write_depth_png(folder / 'too_big.png', cv2.resize(third, (160, 200), interpolation=cv2.INTER_NEAREST), 16)
    (folder / 'notes.txt').write_text('not an image: ignored')
    return folder


def infer(checkpoint, *args):
    """infer with the background decided by the input (the files' handling does not depend on it; the mask
    network's decision has its own test)."""
    return run_program('--mode', 'infer', '--checkpoint', checkpoint[0], '--background', 'input', *args)


# ------------------------------------------------------------------------------------------------- infer

def test_infer_on_a_folder_keeps_names_bit_depths_and_scale_and_skips_bad_files(checkpoint, scans, tmp_path):
    before = {path.name: path.read_bytes() for path in scans.iterdir()}
    output = tmp_path / 'neutral'
    done = infer(checkpoint, '--input', scans, '--output', output)

    assert done.returncode == 2
    skipped = [line for line in done.stderr.splitlines() if line.startswith('convworking.py: skipped ')]
    assert len(skipped) == 2
    assert any('colour.png' in line and 'channels' in line for line in skipped)
    assert any('too_big.png' in line and '--resize' in line for line in skipped)
    assert done.stderr.strip().splitlines()[-1] == ('convworking.py: error: 2 of 4 image(s) skipped '
                                                    '(reported above)')
    assert sorted(os.listdir(output)) == ['face_16bit.png', 'face_8bit.png', 'previews']
    assert sorted(os.listdir(output / 'previews')) == ['face_16bit.png', 'face_8bit.png']
    assert_matches(checkpoint, output / 'face_16bit.png', scans / 'face_16bit.png', 16)
    assert_matches(checkpoint, output / 'face_8bit.png', scans / 'face_8bit.png', 8)
    preview = read_raw(output / 'previews' / 'face_8bit.png')
    assert preview.ndim == 3 and preview.shape[1] > 2 * preview.shape[0]   # three panels side by side
    assert {path.name: path.read_bytes() for path in scans.iterdir()} == before

    again = infer(checkpoint, '--input', scans, '--output', output)      # never overwrites
    assert again.returncode == 2
    assert 'already exists' in again.stderr and 'never overwrites' in again.stderr


def test_infer_draws_previews_of_the_first_images_only_and_says_its_speed(checkpoint, tmp_path):
    folder = tmp_path / 'faces'
    folder.mkdir()
    for index, face in enumerate(faces_mm(3)):
        write_depth_png(folder / f'face_{index}.png', face, 16)
    done = infer(checkpoint, '--input', folder, '--output', tmp_path / 'neutral', '--previews', 1)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / 'neutral')) == ['face_0.png', 'face_1.png', 'face_2.png', 'previews']
    assert os.listdir(tmp_path / 'neutral' / 'previews') == ['face_0.png']
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(r'wrote 3 neutralised image\(s\) to .* in [0-9.]+ s \([0-9.]+ img/s\), previews of the '
                     r'first 1 in ', summary), summary


def test_infer_skips_what_is_not_a_regular_file_and_shows_every_name_on_one_line(checkpoint, tmp_path):
    """A FIFO named like an image is skipped (reading it would wait for a writer forever, holding the output
    folder); a name that is not UTF-8 is written and its preview titled; a name holding a newline keeps its
    line whole."""
    folder = tmp_path / 'scans'
    folder.mkdir()
    write_depth_png(folder / 'face.png', faces_mm(1)[0])
    undecodable = os.fsdecode(b'caf\xe9.png')   # Latin-1 bytes: not UTF-8
    write_depth_png(folder / undecodable, faces_mm(1)[0])
    os.mkfifo(folder / 'fifo.png')
    (folder / 'new\nline.png').write_text('not a PNG')
    output = tmp_path / 'neutral'
    done = infer(checkpoint, '--input', folder, '--output', output)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f'convworking.py: skipped {folder}/fifo.png: not a readable image (not a regular file)',
        f'convworking.py: skipped {folder}/new\\nline.png: not a readable image (not a PNG file)',
        'convworking.py: error: 2 of 4 image(s) skipped (reported above)']
    assert sorted(os.listdir(output)) == sorted([undecodable, 'face.png', 'previews'])
    assert sorted(os.listdir(output / 'previews')) == sorted([undecodable, 'face.png'])


def test_infer_removes_what_a_killed_run_left_in_its_output_folder_and_says_so(checkpoint, tmp_path):
    output = tmp_path / 'neutral'
    (output / 'previews').mkdir(parents=True)
    dead = dead_pid()
    left = [output / f'.face_0.png.partial-{dead}', output / 'previews' / f'.face_0.png.partial-{dead}']
    kept = [output / f'.face_1.png.partial-{os.getpid()}',  # a running process's: being written
            output / '.notes.partial-draft', output / 'notes.partial-12']   # not named as ours
    for path in left + kept:
        path.write_bytes(b'half written')
    folder = tmp_path / 'scans'
    folder.mkdir()
    write_depth_png(folder / 'face.png', faces_mm(1)[0])
    done = infer(checkpoint, '--input', folder, '--output', output)
    assert done.returncode == 0, done.stderr
    for removed in left:
        assert f'removed what an interrupted run left in {removed.parent}: {removed.name}\n' in done.stdout
        assert not removed.exists()
    assert all(path.exists() for path in kept)


def test_the_infer_preview_draws_heights_as_the_grids_lit_relief_at_a_readable_resolution(tmp_path):
    input_mm, output_mm = faces_mm(2)
    preview = neutralise.Preview()
    preview.save(tmp_path / 'preview.png', input_mm, output_mm, 'title')
    norm = Normalize(0, max(input_mm.max(), output_mm.max()))
    assert np.allclose(preview.heights[0].get_array(), lit_relief(input_mm, norm))
    assert np.allclose(preview.heights[1].get_array(), lit_relief(output_mm, norm))
    assert preview.figure.dpi >= 100 and read_raw(tmp_path / 'preview.png').shape[1] >= 900


def test_infer_resize_on_one_file(checkpoint, scans, tmp_path):
    done = infer(checkpoint, '--input', scans / 'too_big.png', '--output', tmp_path / 'out', '--resize')
    assert done.returncode == 0, done.stderr
    raw = read_raw(tmp_path / 'out' / 'too_big.png')
    assert raw.dtype == np.uint16 and raw.shape == (128, 128)
    assert os.path.exists(tmp_path / 'out' / 'previews' / 'too_big.png')
    resampled = neutralise.resample_depth(read_raw(scans / 'too_big.png').astype(np.float32) * 0.1)
    expected, output_mm = expected_units(checkpoint, resampled, 16)
    assert np.abs(raw.astype(int) - expected.astype(int))[away_from_the_thresholds(output_mm)].max() <= 1


def test_resample_depth_keeps_heights_and_aspect():
    plateau = np.zeros((100, 300), np.float32)
    plateau[20:80, 100:200] = 100.0        # a 100 mm plateau of 100 x 60 pixels
    resampled = neutralise.resample_depth(plateau)
    assert resampled.shape == (128, 128)
    face = resampled[resampled > 0]
    assert np.allclose(face, 100.0)        # no ramp of averaged background at the outline
    rows, columns = np.nonzero(resampled)
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    assert abs(width / height - 100 / 60) < 0.15     # padded to a square, not stretched
    assert abs(rows.mean() - 63.5) < 1.5 and abs(columns.mean() - 63.5) < 1.5


def test_infer_refuses_an_output_folder_equal_to_the_input_folder_in_one_line(checkpoint, scans):
    before = sorted(os.listdir(scans))
    done = infer(checkpoint, '--input', scans, '--output', scans)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"convworking.py: error: {scans}: is the input's folder; give "
                                                "another --output folder (outputs keep the input file names)"]
    assert sorted(os.listdir(scans)) == before


@pytest.mark.parametrize('case', ['output_is_input_files_folder', 'bad_single_file', 'wrong_size_single_file',
                                  'missing_input_path', 'folder_without_png'])
def test_infer_refusals(scans, tmp_path, case):
    """Refused before the network runs, so no session is needed; convworking.main prints them in one line."""
    (tmp_path / 'empty').mkdir()
    given, message = {
        'output_is_input_files_folder': ((scans / 'face_8bit.png', scans), "is the input's folder"),
        'bad_single_file': ((scans / 'colour.png', tmp_path / 'out'), 'colour.png: has 3 channels'),
        'wrong_size_single_file': ((scans / 'too_big.png', tmp_path / 'out'), 'is 160 x 200 pixels'),
        'missing_input_path': ((tmp_path / 'nowhere', tmp_path / 'out'), 'nowhere: not found'),
        'folder_without_png': ((tmp_path / 'empty', tmp_path / 'out'), 'holds no .png images'),
    }[case]
    before = sorted(os.listdir(scans))
    with pytest.raises((DataError, DepthImageError), match=message):
        neutralise.neutralise_files(None, None, str(given[0]), str(given[1]), resize=False, batch_size=4,
                                   background=Background(THRESHOLD_MM), previews=8)
    assert sorted(os.listdir(scans)) == before
    assert not os.path.exists(tmp_path / 'out')


def test_infer_keeps_the_output_where_the_mask_network_puts_the_neutral_face(checkpoint, tiny_mask, tmp_path):
    folder = tmp_path / 'scans'
    folder.mkdir()
    faces = faces_mm(2, seed=3)
    for index, face in enumerate(faces):
        write_depth_png(folder / f'face_{index}.png', face, 16)
    done = run_program('--mode', 'infer', '--checkpoint', checkpoint[0], '--mask-checkpoint', tiny_mask,
                       '--input', folder, '--output', tmp_path / 'neutral')
    assert done.returncode == 0, done.stderr
    probabilities = checkpoint_probabilities(tiny_mask, np.stack(faces))
    for index, (face, probability) in enumerate(zip(faces, probabilities)):
        output_mm = network_to_mm(checkpoint_outputs(checkpoint, mm_to_network(face)[None, ..., None])[0, ..., 0])
        kept = (probability >= MASK_PROBABILITY) & (output_mm >= INSIDE_THRESHOLD_MM)
        expected = depth_mm_to_units(np.where(kept, output_mm, 0), 16)
        written = read_raw(tmp_path / 'neutral' / f'face_{index}.png')
        # away from the two decisions' edges, where a rounding difference may flip them
        clear = (np.abs(probability - MASK_PROBABILITY) > 1e-3) & (np.abs(output_mm - INSIDE_THRESHOLD_MM) > 0.05)
        assert np.abs(written.astype(int) - expected.astype(int))[clear].max() <= 1
        assert written.max() > 0 and (written[~kept & clear] == 0).all()


def test_infer_needs_input(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(['--mode', 'infer', '--output', 'somewhere'])
    assert stopped.value.code == 2
    assert '--mode infer needs --input' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ export

LOADER = textwrap.dedent('''
    # Loads the exported model with TensorFlow and OpenCV only (no code of the project), as README shows.
    import sys
    import cv2
    import numpy as np
    import tensorflow as tf

    folder, batch = sys.argv[1], np.load(sys.argv[2])

    graph_def = tf.compat.v1.GraphDef()
    with open(f'{folder}/frozen_graph.pb', 'rb') as file:
        graph_def.ParseFromString(file.read())
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as session:
            frozen = session.run('output:0', {'inputs:0': batch})

    model = tf.saved_model.load(f'{folder}/saved_model')
    saved = model.signatures['serving_default'](inputs=tf.constant(batch))['output'].numpy()

    net = cv2.dnn.readNetFromTensorflow(f'{folder}/frozen_graph_opencv.pb')
    net.setInput(batch.transpose(0, 3, 1, 2))                    # OpenCV takes N x C x H x W
    opencv = net.forward().transpose(0, 2, 3, 1)

    np.savez(sys.argv[3], frozen=frozen, saved=saved, opencv=opencv)
''')


@pytest.fixture(scope='module')
def exported(checkpoint, tmp_path_factory):
    """An export folder, with a test_metrics.json of the same checkpoint in the results folder."""
    root = tmp_path_factory.mktemp('export')
    results = root / 'results'
    results.mkdir()
    with open(results / 'test_metrics.json', 'w') as file:
        json.dump({'checkpoint': checkpoint[0], 'data': str(root / 'data'), 'rmse_mm': 4.25}, file)
    done = run_program('--mode', 'export', '--checkpoint', checkpoint[0], '--results-dir', results,
                       '--data', root / 'data', '--output', root / 'model', '--no-mirror-average',
                       '--deadband-mm', 0, '--deadband-relief', 0, '--background', 'input')
    assert done.returncode == 0, done.stderr
    return root / 'model', done


def test_export_writes_the_files_and_model_json(checkpoint, exported):
    folder, done = exported
    assert sorted(os.listdir(folder)) == ['frozen_graph.pb', 'frozen_graph_opencv.pb', 'model.json',
                                          'saved_model']
    with open(folder / 'model.json') as file:
        info = json.load(file)
    assert info['convention_version'] == 1
    assert info['input']['name'] == 'inputs' and info['output']['name'] == 'output'
    assert info['input']['shape'] == [None, 128, 128, 1] == info['output']['shape']
    assert info['scale']['full_scale_mm'] == 127.5
    assert info['scale']['png_mm_per_unit'] == {'16-bit': 0.1, '8-bit': 0.5}
    assert resolve_recorded_path(info['checkpoint']) == os.path.abspath(checkpoint[0])
    assert info['step'] == int(checkpoint[0].rsplit('-', 1)[1])
    assert info['valid_rmse_mm'] == pytest.approx(tf.train.load_variable(checkpoint[0], 'best_valid_score'))
    assert info['test_rmse_mm'] == 4.25
    assert info['saved_model']['signature'] == 'serving_default'
    assert info['opencv_graph']['file'] == 'frozen_graph_opencv.pb' and info['mirror_average'] is False
    assert info['deadband_mm'] == 0 and info['deadband_relief'] == 0
    assert info['background']['rule'] == 'input' and info['background']['threshold_mm'] == THRESHOLD_MM
    assert all(value < 1e-4 for value in info['max_abs_difference_to_checkpoint'].values())


def test_export_without_opencvs_tensorflow_reader_says_which_opencv_it_needs(monkeypatch, tmp_path):
    monkeypatch.delattr(cv2.dnn, 'readNetFromTensorflow')
    difference, reason = export.try_opencv_export(tf.compat.v1.GraphDef(), str(tmp_path / 'graph.pb'), None, None)
    assert difference is None and 'readNetFromTensorflow' in reason and 'before 5.1' in reason
    assert not os.path.exists(tmp_path / 'graph.pb')


def test_frozen_graph_is_plain_inference_graph(exported):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((exported[0] / 'frozen_graph.pb').read_bytes())
    operations = {node.op for node in graph_def.node}
    assert [node.name for node in graph_def.node if node.op.startswith('Placeholder')] == ['inputs']
    assert not operations & {'If', 'StatelessIf', 'VarHandleOp', 'ReadVariableOp', 'AssignSubVariableOp'}
    assert 'FusedBatchNormV3' in operations and not graph_def.library.function


def test_exported_forms_reproduce_the_checkpoint_without_the_projects_code(checkpoint, exported, tmp_path):
    batch = mm_to_network(np.stack(faces_mm(3, seed=7)))[..., None]
    np.save(tmp_path / 'batch.npy', batch)
    (tmp_path / 'loader.py').write_text(LOADER)
    environment = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    done = subprocess.run([sys.executable, 'loader.py', str(exported[0]), 'batch.npy', 'outputs.npz'],
                          cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outputs = np.load(tmp_path / 'outputs.npz')
    expected = checkpoint_outputs(checkpoint, batch, mirror_average=False, deadband_mm=0, deadband_relief=0)
    for form in ('frozen', 'saved', 'opencv'):
        assert outputs[form].shape == expected.shape
        assert np.abs(outputs[form] - expected).max() < 1e-4, form


def test_export_averages_with_the_mirror_and_applies_the_deadband_by_default_and_says_why_opencv_cannot(
        checkpoint, tmp_path):
    done = run_program('--mode', 'export', '--checkpoint', checkpoint[0], '--results-dir', tmp_path / 'results',
                       '--data', tmp_path / 'data', '--output', tmp_path / 'model')
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / 'model' / 'model.json').read_text())
    assert info['mirror_average'] is True and info['opencv_graph']['file'] is None
    assert (info['deadband_mm'], info['deadband_relief']) == (DEADBAND_MM, DEADBAND_RELIEF)
    assert '--no-mirror-average --deadband-mm 0 --deadband-relief 0' in info['opencv_graph']['note']
    assert '--no-mirror-average --deadband-mm 0 --deadband-relief 0' in done.stdout
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((tmp_path / 'model' / 'frozen_graph.pb').read_bytes())
    batch = mm_to_network(np.stack(faces_mm(3, seed=7)))[..., None]
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as session:
            frozen = session.run('output:0', {'inputs:0': batch})
    assert np.abs(frozen - checkpoint_outputs(checkpoint, batch)).max() < 1e-4


def test_export_writes_the_mask_network_that_reproduces_its_checkpoint_without_the_projects_code(
        checkpoint, tiny_mask, tmp_path):
    done = run_program('--mode', 'export', '--checkpoint', checkpoint[0], '--mask-checkpoint', tiny_mask,
                       '--output', tmp_path / 'model')
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / 'model' / 'model.json').read_text())
    assert info['background']['rule'] == 'mask' and info['background']['frozen_graph'] == 'mask_frozen_graph.pb'
    assert resolve_recorded_path(info['background']['mask_checkpoint']) == os.path.abspath(tiny_mask)
    assert info['background']['max_abs_difference_to_checkpoint'] < 1e-4
    faces = np.stack(faces_mm(3, seed=5))
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((tmp_path / 'model' / 'mask_frozen_graph.pb').read_bytes())
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as session:
            probability = session.run('output:0', {'inputs:0': mm_to_network(faces)[..., None]})[..., 0]
    assert np.abs(probability - checkpoint_probabilities(tiny_mask, faces)).max() < 1e-4


def test_export_refuses_to_overwrite(checkpoint, exported):
    with pytest.raises(DataError, match='already exists; export never overwrites'):
        export.export_model(None, None, checkpoint[0], str(exported[0]), background=Background().describe(),
                            bfloat16=False, test_rmse_mm=None)


def test_export_refuses_an_existing_folder_and_leaves_it_as_it_was(tmp_path):
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / 'notes.txt').write_text('mine')
    with pytest.raises(DataError, match='model: already exists; export never overwrites'):
        export.export_model(None, None, 'best-1', str(tmp_path / 'model'), background=Background().describe(),
                            bfloat16=False, test_rmse_mm=None)
    assert os.listdir(tmp_path) == ['model'] and os.listdir(tmp_path / 'model') == ['notes.txt']


def test_a_killed_export_leaves_no_folder_and_the_next_export_removes_what_it_left(checkpoint, tmp_path):
    command = [sys.executable, os.path.join(REPO, 'convworking.py'), '--mode', 'export', '--checkpoint',
               checkpoint[0], '--output', str(tmp_path / 'model')]
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hidden = tmp_path / f'.model.partial-{killed.pid}'
    try:
        assert wait_for(lambda: (hidden / 'frozen_graph.pb').exists(), 300, interval=0.02)
    finally:
        killed.kill()  # kill -9, midway: frozen_graph.pb written, model.json not yet
        killed.wait()
    assert os.listdir(tmp_path) == [hidden.name]   # no model/: an export is whole or absent
    done = run_program('--mode', 'export', '--checkpoint', checkpoint[0], '--output', tmp_path / 'model')
    assert done.returncode == 0, done.stderr
    assert f'convworking.py: removed what an interrupted run left in {tmp_path}: {hidden.name}\n' in done.stdout
    assert os.listdir(tmp_path) == ['model']
    assert sorted(os.listdir(tmp_path / 'model')) == ['frozen_graph.pb', 'mask_frozen_graph.pb', 'model.json',
                                                      'saved_model']  # the mirror average: no OpenCV graph


def test_test_rmse_is_taken_only_for_the_same_checkpoint_and_data(tmp_path):
    with open(tmp_path / 'test_metrics.json', 'w') as file:
        json.dump({'checkpoint': 'checkpoints/remove/best-100', 'data': 'data128_128', 'rmse_mm': 3.0}, file)
    rmse = lambda checkpoint, data='data128_128', results=tmp_path: export.rmse_on_test_split(
        os.path.join(REPO, checkpoint), str(results), os.path.join(REPO, data))
    assert rmse('checkpoints/remove/best-100') == 3.0
    assert rmse('checkpoints/remove/best-200') is None
    assert rmse('checkpoints/remove/best-100', data='other_data') is None
    assert rmse('checkpoints/remove/best-100', results=tmp_path / 'none') is None


# ------------------------------------------------------------------------------------------------ README

def readme_python_snippets():
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as file:
        return re.findall(r'^```python\n(.*?)^```', file.read(), re.S | re.M)


def test_every_python_snippet_of_readme_runs_as_a_complete_script(exported, tmp_path):
    """Each snippet alone, in a folder laid out as the repository after Quick start's export (runs/exported: this
    module's tiny exported model), with no import of the project's code on its path."""
    snippets = readme_python_snippets()
    assert snippets                       # found: a changed fence must not make this pass on nothing
    (tmp_path / 'runs').mkdir()
    (tmp_path / 'runs' / 'exported').symlink_to(exported[0])
    (tmp_path / 'data128_128').symlink_to(os.path.join(REPO, 'data128_128'))
    for number, snippet in enumerate(snippets):
        script = tmp_path / f'snippet_{number}.py'
        script.write_text(snippet)
        done = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, 'PYTHONPATH': ''})
        assert done.returncode == 0, (snippet, done.stderr[-2000:])
