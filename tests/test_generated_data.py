"""Generated identities: disjoint from the benchmark's splits, deterministic, and trained on end to end.

Every test renders into its own temporary folder, never the repository's generated/ cache.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import convworking
from conftest import REPO, TINY_NETWORK, run_program
from depth.dataset import SPLITS, Dataset
from faces import generated
from training.tasks import TASKS, DataSource, neutral_indices

COMMITTED = Path(REPO) / 'data128_128'


def folder_contents(folder):
    """{relative path: bytes} of every file under folder."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(Path(folder).rglob('*'))
            if path.is_file()}


@pytest.fixture(scope='module')
def two_generated(tmp_path_factory):
    """Two generated training subjects, rendered once for this module: (cache root, folder)."""
    root = tmp_path_factory.mktemp('generated')
    return root, generated.ensure_training_identities(str(root), 2)


def test_generated_identities_are_deterministic(two_generated, tmp_path):
    _, folder = two_generated
    again = generated.ensure_training_identities(str(tmp_path), 2)
    assert folder_contents(folder) == folder_contents(again)
    per_subject = 1 + 6 * 4 + generated.TRAINING_MIXTURES
    assert len(os.listdir(os.path.join(folder, 'inputs', 'train'))) == 2 * per_subject


def test_a_cached_folder_is_reused_not_rendered_again(two_generated):
    root, folder = two_generated
    stamp = os.path.getmtime(os.path.join(folder, 'dataset.json'))
    assert generated.ensure_training_identities(str(root), 2) == folder
    assert os.path.getmtime(os.path.join(folder, 'dataset.json')) == stamp


def test_generated_identities_are_disjoint_from_the_committed_subjects(two_generated, tmp_path):
    _, folder = two_generated
    gallery = generated.ensure_gallery(str(tmp_path), 2)
    committed = json.loads((COMMITTED / 'dataset.json').read_text())['splits']
    committed_weights = np.array([subject['identity_weights'] for split in SPLITS
                                  for subject in committed[split]])
    for made in (folder, gallery):
        weights = np.array([subject['identity_weights'] for subject in
                            json.loads(Path(made, 'dataset.json').read_text())['splits']['train']])
        # Every generated identity is far from every committed one (identity weights are N(0, 1) in 100 dims).
        distances = np.linalg.norm(weights[:, np.newaxis] - committed_weights[np.newaxis], axis=2)
        assert distances.min() > 1.0
    assert json.loads(Path(folder, 'dataset.json').read_text())['seed'] == generated.TRAINING_SEED
    assert json.loads(Path(gallery, 'dataset.json').read_text())['seed'] == generated.GALLERY_SEED


def test_zero_generated_subjects_is_the_committed_training_split_only(tiny_data, tmp_path):
    options = convworking.parse_args(['--mode', 'train', '--data', tiny_data, '--generated-subjects', '0',
                                      '--family-subjects', '0', '--generated-dir', str(tmp_path / 'cache')])
    training = TASKS['remove'].load_for_training(options.data_source())[0]
    committed = Dataset.load(tiny_data, 'train')
    assert training.names == committed.names
    np.testing.assert_array_equal(training.inputs, committed.inputs)
    np.testing.assert_array_equal(training.targets, committed.targets)
    assert not (tmp_path / 'cache').exists()  # nothing was rendered


def test_generated_subjects_join_the_committed_training_split(tiny_data, two_generated):
    root, folder = two_generated
    options = convworking.parse_args(['--mode', 'train', '--data', tiny_data, '--generated-subjects', '2',
                                      '--generated-variations', '--family-subjects', '0', '--generated-dir', str(root)])
    training = TASKS['remove'].load_for_training(options.data_source())[0]
    committed, generated = Dataset.load(tiny_data, 'train'), Dataset.load(folder, 'train')
    assert len(training) == len(committed) + len(generated)
    np.testing.assert_array_equal(training.inputs[len(committed):], generated.inputs)
    np.testing.assert_array_equal(training.targets[:len(committed)], committed.targets)


def test_default_training_uses_640_generated_subjects_and_the_segment_task_none():
    assert convworking.parse_args(['--mode', 'train']).generated_subjects == 640
    assert convworking.parse_args(['--mode', 'train', '--task', 'segment']).generated_subjects == 0


def test_neutral_repeats_add_each_neutral_pair_that_many_times_more(tiny_data):
    committed = Dataset.load(tiny_data, 'train')
    once = TASKS['remove'].with_generated(committed, DataSource(tiny_data))
    thrice_more = TASKS['remove'].with_generated(committed, DataSource(tiny_data, neutral_repeats=3))
    neutral = neutral_indices(once.names)
    assert len(neutral) == 3 and len(once) == len(committed) == 12
    assert thrice_more.names == once.names + [once.names[index] for index in neutral] * 3
    added = thrice_more.subset(range(len(once), len(thrice_more)))
    np.testing.assert_array_equal(added.inputs, np.tile(once.inputs[neutral], (3, 1, 1, 1)))
    np.testing.assert_array_equal(added.inputs, added.targets)   # a neutral input is its own target


def test_plain_repeats_add_the_face_models_own_faces_that_many_times_more(tiny_data, two_generated):
    root, _ = two_generated
    committed = Dataset.load(tiny_data, 'train')
    source = dict(generated_dir=str(root), generated_subjects=2, generated_variations=('outline',), plain_subjects=1)
    once = TASKS['remove'].with_generated(committed, DataSource(tiny_data, **source))
    twice_more = TASKS['remove'].with_generated(committed, DataSource(tiny_data, **source, plain_repeats=2))
    plain = Dataset.load(generated.ensure_training_identities(str(root), 1), 'train')
    unvaried = Dataset.joined([committed, plain])
    assert twice_more.names == once.names + unvaried.names * 2
    added = twice_more.subset(range(len(once), len(twice_more)))
    np.testing.assert_array_equal(added.inputs, np.concatenate([unvaried.inputs] * 2))
    np.testing.assert_array_equal(added.targets, np.concatenate([unvaried.targets] * 2))
    # the varied identities are not among the repeated ones: their faces differ from the plain ones'
    varied = once.subset(range(len(committed), len(once) - len(plain)))
    assert not np.array_equal(varied.targets[:len(plain)], plain.targets)


def test_a_tiny_training_with_generated_subjects_runs_end_to_end(tiny_data, two_generated, tmp_path):
    root, _ = two_generated
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    finished = run_program('--mode', 'train', '--data', tiny_data, '--generated-subjects', 2, '--generated-dir', root,
                           '--checkpoint-dir', checkpoints, '--results-dir', results, *TINY_NETWORK,
                           '--max-steps', 8, '--validate-every', 4, '--family-subjects', 2)
    assert finished.returncode == 0, finished.stderr
    # the two generated identities varied, and the same two again as the face model made them (--plain-subjects);
    # the face model's own faces, committed and plain, once more (--plain-repeats)
    committed, per_identity = len(Dataset.load(tiny_data, 'train')), 25 + generated.TRAINING_MIXTURES
    repeats = convworking.DEFAULT_PLAIN_REPEATS
    training_pairs = (1 + repeats) * committed + 2 * per_identity + (1 + repeats) * 2 * per_identity
    family_pairs = 2 * (25 + generated.FAMILY_MIXTURES)
    assert f'{training_pairs} training' in finished.stdout
    assert f'+ {family_pairs} of the held-out family' in finished.stdout
    options = json.loads((checkpoints / 'remove' / 'options.json').read_text())
    counts = ('generated_subjects', 'plain_subjects', 'family_subjects', 'plain_repeats')
    assert [options['training'][key] for key in counts] == [2, 2, 2, repeats]
    assert options['training']['generated_variations'] == ['reshape', 'outline', 'whole_face_motion', 'mouth_depth',
                                                           'faceted', 'scanner_noise']
    history = json.loads((checkpoints / 'remove' / 'valid_history.json').read_text())['validations']
    assert [entry['step'] for entry in history] == [4, 8]
    assert history[0]['minutes'] < history[1]['minutes']
    for entry in history:  # the checkpoint is chosen by the mean of the two scores
        assert entry['selection_score'] == pytest.approx((entry['score'] + entry['family_score']) / 2)
    assert os.path.isdir(os.path.join(root, 'family_seed3_2subjects_6mixtures_outline_whole_face_motion_mouth_depth'
                                            '_scanner_noise_warp'))
    assert (results / 'training_curve.png').exists()


def test_test_mode_measures_recognition_on_the_generated_gallery(tiny_data, tmp_path):
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    trained = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                          '--results-dir', results, *TINY_NETWORK, '--max-steps', 2, '--validate-every', 2)
    assert trained.returncode == 0, trained.stderr
    tested = run_program('--mode', 'test', '--data', tiny_data, '--checkpoint-dir', checkpoints,
                         '--results-dir', results, '--gallery-subjects', 3, '--generated-dir', tmp_path / 'cache')
    assert tested.returncode == 0, tested.stderr
    gallery = json.loads((results / 'test_metrics.json').read_text())['recognition_gallery']
    probes = len(TASKS['remove'].GALLERY_PROBES)
    assert (gallery['n_gallery'], gallery['n_probes'], gallery['subjects']) == (3, 3 * probes, 3)
    assert 0 <= gallery['raw']['rank1'] <= 1 and 0 <= gallery['neutralised']['eer'] <= 1
    assert set(gallery['rmse_mm_per_expression']['identity']) == {'NE', 'HA', 'SA', 'SU', 'FE', 'AN', 'DI', 'MX'}
    assert gallery['rmse_mm_per_expression']['identity']['NE'] == 0.0  # a neutral input is its own target
    assert 'Recognition on 3 generated identities' in (results / 'report.md').read_text()


def test_a_resumed_run_continues_its_training_curve(tiny_data, tmp_path):
    checkpoints, results = tmp_path / 'checkpoints', tmp_path / 'results'
    common = ['--mode', 'train', '--data', tiny_data, '--checkpoint-dir', checkpoints, '--results-dir', results,
              *TINY_NETWORK, '--validate-every', 3, '--save-every', 6]
    assert run_program(*common, '--max-steps', 6).returncode == 0
    history_file = checkpoints / 'remove' / 'valid_history.json'
    first = json.loads(history_file.read_text())['validations']
    finished = run_program(*common, '--max-steps', 9)
    assert finished.returncode == 0, finished.stderr
    history = json.loads(history_file.read_text())['validations']
    assert [entry['step'] for entry in history] == [3, 6, 9]
    assert history[:2] == first
    assert history[2]['minutes'] > history[1]['minutes']  # the clock went on from the stored training time


def test_the_gallery_renders_only_the_images_it_uses_each_as_the_whole_gallery_has_it(tmp_path, capfd):
    codes = ('NE00',) + TASKS['remove'].GALLERY_PROBES
    part = generated.ensure_gallery(str(tmp_path / 'part'), 2, only=codes)
    assert f'{2 * len(codes)}/{2 * len(codes)} pairs' in capfd.readouterr().out      # its progress line shows
    whole = generated.ensure_gallery(str(tmp_path / 'whole'), 2)
    images = {name: data for name, data in folder_contents(part).items() if name != 'dataset.json'}
    assert sorted({name.rsplit('_', 1)[1] for name in images}) == sorted(f'{code}.png' for code in codes)
    assert len(images) == 2 * 2 * len(codes)          # inputs and targets of 2 subjects
    whole_files = folder_contents(whole)
    assert len(whole_files) > len(images) + 1 and all(whole_files[name] == data for name, data in images.items())
    assert generated.ensure_gallery(str(tmp_path / 'whole'), 2, only=codes) == whole   # a whole cache serves it
