"""Tests of evaluation.py on small arrays made here (no network, no data set)."""
import math
import os

import numpy as np
import pytest

from conftest import REPO
from evaluation.baselines import LinearBaseline, mean_face
from evaluation.metrics import (METRIC_NAMES, MS_SSIM_FILTER_SIZE, WHOLE_IMAGE_METRIC_NAMES, WITHIN_SLACK_MM,
                                mean_abs_error_map, ms_ssim, parse_name, per_image_metrics, summarise)
from evaluation.recognition import RECOGNITION_DISTANCE, equal_error_rate, face_distances, recognition
from evaluation.report import print_table, write_report
from support.paths import recorded_path, resolve_recorded_path

SIZE = 128


def _face(seed=0, size=SIZE):
    """A smooth fake face: a bump of up to ~100 mm on an elliptical mask, background 0."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    cy, cx = rng.uniform(-0.05, 0.05, 2)
    radius2 = ((x - cx) / 0.35) ** 2 + ((y - cy) / 0.45) ** 2
    height = 60 + 40 * np.cos(np.pi / 2 * np.clip(radius2, 0, 1)) + 3 * np.sin(9 * x + rng.uniform(0, 6))
    return np.where(radius2 < 1, height, 0.0).astype(np.float32)


# --- per_image_metrics ---------------------------------------------------------------------------

def test_constant_offset_over_face_gives_one_mm():
    target = np.stack([_face(0), _face(1)])
    output = target + np.float32(1.0) * (target > 0)  # float32, as the network's heights are
    metrics = per_image_metrics(output, target)
    np.testing.assert_allclose(metrics['rmse_mm'], 1.0, atol=1e-6)
    np.testing.assert_allclose(metrics['mae_mm'], 1.0, atol=1e-6)
    np.testing.assert_allclose(metrics['within_1mm'], 1.0)
    np.testing.assert_allclose(metrics['within_2mm'], 1.0)
    assert set(metrics) == set(METRIC_NAMES)
    beyond = per_image_metrics(target + np.float32(1.1) * (target > 0), target)
    np.testing.assert_allclose(beyond['within_1mm'], 0.0)
    np.testing.assert_allclose(beyond['within_2mm'], 1.0)


def test_known_pattern_matches_numpy_recomputation():
    rng = np.random.default_rng(3)
    target = np.stack([_face(2), _face(3), _face(4)])
    output = target + rng.normal(0, 1.5, target.shape).astype(np.float32)
    metrics = per_image_metrics(output[..., np.newaxis], target[..., np.newaxis])  # N x H x W x 1
    for i in range(len(target)):
        face = target[i] > 0
        error = (output[i].astype(np.float64) - target[i])[face]
        assert metrics['rmse_mm'][i] == pytest.approx(np.sqrt(np.mean(error ** 2)), rel=1e-9)
        assert metrics['mae_mm'][i] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
        slack = WITHIN_SLACK_MM
        assert metrics['within_1mm'][i] == pytest.approx(np.mean(np.abs(error) <= 1 + slack), rel=1e-12)
        assert metrics['within_2mm'][i] == pytest.approx(np.mean(np.abs(error) <= 2 + slack), rel=1e-12)
        assert 0 < metrics['within_1mm'][i] < metrics['within_2mm'][i] < 1


def test_background_pixels_are_ignored_and_empty_faces_are_nan():
    target = np.stack([_face(5), np.zeros((SIZE, SIZE), np.float32)])
    output = target.copy()
    output[target == 0] = 50.0  # wrong everywhere outside the face
    metrics = per_image_metrics(output, target)
    assert metrics['rmse_mm'][0] == 0.0 and metrics['mae_mm'][0] == 0.0
    assert metrics['within_1mm'][0] == 1.0
    for name in METRIC_NAMES:
        assert math.isnan(metrics[name][1]), name


def test_ms_ssim_is_one_for_identical_and_below_one_for_different_images():
    target = np.stack([_face(6), _face(7)])
    different = np.stack([_face(8), _face(6) * 0.8])
    assert MS_SSIM_FILTER_SIZE <= SIZE // 16  # the coarsest of the 5 scales is 8 x 8
    np.testing.assert_allclose(ms_ssim(target, target), 1.0, atol=1e-4)
    assert np.all(ms_ssim(different, target) < 0.99)


def test_ms_ssim_works_with_eager_disabled_in_the_caller():
    # Mimic convworking.py's test mode in a subprocess, so that this test process stays eager.
    import subprocess
    import sys
    code = ("import tensorflow as tf; tf.compat.v1.disable_eager_execution(); "
            "import numpy as np; from evaluation.metrics import ms_ssim;"
            "a = np.full((1, 128, 128), 50, np.float32); a[0, 30:90, 40:80] = 90;"
            "print(float(ms_ssim(a, a)[0]))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(1.0, abs=1e-4)


def test_mean_abs_error_map_is_nan_off_the_face():
    target = np.stack([_face(9), _face(10)])
    error_map = mean_abs_error_map(target + 2 * (target > 0), target)
    assert np.all(np.isnan(error_map[(target == 0).all(axis=0)]))
    np.testing.assert_allclose(error_map[(target > 0).any(axis=0)], 2.0)


# --- names and summaries -------------------------------------------------------------------------

@pytest.mark.parametrize('name, expected', [
    ('0017_HA04.png', ('0017', 'HA', '04')),
    ('/data/test/0101_NE00.png', ('0101', 'NE', '00')),
    ('0003_MX12', ('0003', 'MX', '12')),
    ('face.png', (None, '??', '??')),
    ('17_HA04.png', (None, '??', '??')),
    ('0017_HA4.png', (None, '??', '??')),
    ('0017_ha04.png', (None, '??', '??')),
])
def test_parse_name(name, expected):
    assert parse_name(name) == expected


def test_summarise_groups_per_code_and_level_and_unknown():
    names = ['0001_HA01.png', '0001_HA02.png', '0002_SA01.png', '0002_NE00.png', 'odd.png']
    per_image = {'rmse_mm': np.array([1.0, 3.0, 5.0, 7.0, 9.0]),
                 'mae_mm': np.array([0.5, 1.5, 2.5, np.nan, 4.5])}
    summary = summarise(per_image, names)
    assert summary['n'] == 5 and summary['rmse_mm'] == pytest.approx(5.0)
    assert summary['mae_mm'] == pytest.approx(np.mean([0.5, 1.5, 2.5, 4.5]))  # NaN left out
    expression = summary['per_expression']
    assert list(expression) == ['NE', 'HA', 'SA', '??']
    assert expression['HA'] == {'rmse_mm': 2.0, 'mae_mm': 1.0, 'n': 2}
    assert expression['??']['rmse_mm'] == 9.0 and expression['??']['n'] == 1
    assert math.isnan(expression['NE']['mae_mm']) and expression['NE']['n'] == 1
    level = summary['per_level']
    assert list(level) == ['00', '01', '02', '??']
    assert level['01'] == {'rmse_mm': 3.0, 'mae_mm': 1.5, 'n': 2}  # HA01 and SA01 pooled
    assert level['??']['n'] == 1


# --- baselines -----------------------------------------------------------------------------------

def test_mean_face_averages_over_faces_only():
    faces = np.zeros((4, 8, 8), np.float32)
    faces[:, 2:6, 2:6] = [[[10]], [[20]], [[30]], [[40]]]
    faces[0, 0, 0] = 99  # only one face in four covers this pixel: background in the mean
    faces[:2, 7, 7] = 50  # half of them: kept, averaged over those two
    mean = mean_face(faces)
    assert mean.shape == (8, 8)
    np.testing.assert_allclose(mean[2:6, 2:6], 25.0)
    assert mean[0, 0] == 0 and mean[7, 7] == 50 and mean[1, 1] == 0


def test_linear_baseline_recovers_an_exactly_linear_mapping():
    rng = np.random.default_rng(11)
    side, rank = 12, 6
    dims = side * side
    basis = rng.normal(size=(rank, dims))
    offset = rng.uniform(40, 80, dims)
    mapping = rng.normal(size=(dims, dims)) / np.sqrt(dims)

    def sample(n):
        inputs = offset + rng.normal(size=(n, rank)) @ basis
        return inputs.reshape(n, side, side), (inputs @ mapping.T).reshape(n, side, side)

    train_inputs, train_targets = sample(80)
    test_inputs, test_targets = sample(20)
    baseline = LinearBaseline(n_input_components=20, n_target_components=20, alpha=1e-12)
    predicted = baseline.fit(train_inputs, train_targets).predict(test_inputs)
    assert predicted.shape == test_targets.shape
    np.testing.assert_allclose(predicted, test_targets, atol=1e-3 * np.abs(test_targets).max())
    assert np.max(np.abs(predicted - test_targets)) < 1e-4
    description = baseline.describe()
    assert '20 input / 20 target' in description and 'alpha 1e-12' in description
    assert f'using {rank} input / {rank} target components' in description  # capped by the data's rank


def test_linear_baseline_defaults_are_documented():
    baseline = LinearBaseline()
    assert (baseline.n_input_components, baseline.n_target_components, baseline.alpha) == (100, 60, 1.0)
    assert 'not fitted' in baseline.describe()


# --- recognition ---------------------------------------------------------------------------------

def _gallery():
    faces = np.stack([_face(seed, size=32) for seed in range(5)])
    faces[faces > 0] += np.repeat(np.arange(5) * 4.0, 32 * 32).reshape(faces.shape)[faces > 0]
    return faces, ['s%d' % i for i in range(5)]


def test_recognition_of_noisy_gallery_copies_is_perfect():
    gallery, ids = _gallery()
    rng = np.random.default_rng(0)
    probes = np.concatenate([gallery, gallery, gallery])
    probes = np.where(probes > 0, probes + rng.normal(0, 0.1, probes.shape), 0)
    result = recognition(gallery, ids, probes, ids * 3)
    assert result['rank1'] == 1.0 and result['eer'] == 0.0
    assert 'union' in result['distance']
    assert result['n_gallery'] == 5 and result['n_probes'] == 15


def test_recognition_with_swapped_identities_fails_some():
    gallery, ids = _gallery()
    probes = gallery.copy()
    swapped_ids = ['s1', 's0', 's2', 's3', 's4']  # the first two probes carry each other's id
    result = recognition(gallery, ids, probes, swapped_ids)
    assert result['rank1'] == pytest.approx(0.6)
    assert 0 < result['eer'] < 1


def test_face_distance_is_rms_over_the_union_of_masks():
    a = np.zeros((1, 4, 4))
    b = np.zeros((1, 4, 4))
    a[0, 0, :2] = 10  # two pixels only in a
    b[0, 0, 1:3] = 13  # one shared pixel, one only in b
    expected = np.sqrt((10 ** 2 + 3 ** 2 + 13 ** 2) / 3)
    assert face_distances(a, b)[0, 0] == pytest.approx(expected)


def test_face_distances_match_a_direct_numpy_recomputation():
    rng = np.random.default_rng(0)
    faces = rng.uniform(50, 120, (7, 6, 6)) * (rng.random((7, 6, 6)) < 0.7)
    faces[0] = 0  # an empty image
    faces[1, 0, 0] = -3  # below the background: outside the face, like 0
    gallery, probes = faces[:3], faces[3:]
    expected = np.empty((4, 3))
    for p, probe in enumerate(probes):
        for g, face in enumerate(gallery):
            union = (probe > 0) | (face > 0)
            difference = np.where(probe > 0, probe, 0) - np.where(face > 0, face, 0)
            expected[p, g] = np.sqrt((difference[union] ** 2).sum() / max(union.sum(), 1))
    np.testing.assert_allclose(face_distances(gallery, probes), expected, rtol=1e-9, atol=1e-9)


def test_equal_error_rate_interpolates_the_crossing():
    # Genuine 1, 2, 3; impostor 2.5, 4, 5: at threshold 2 FAR 0, FRR 1/3; at 2.5 FAR 1/3, FRR 1/3.
    assert equal_error_rate([1, 2, 3], [2.5, 4, 5]) == pytest.approx(1 / 3)
    assert equal_error_rate([1, 2], [3, 4]) == 0.0
    assert equal_error_rate([3, 4], [1, 2]) == pytest.approx(1.0)  # FAR meets FRR at 1
    assert math.isnan(equal_error_rate([], [1.0]))


# --- report --------------------------------------------------------------------------------------

def _block(rmse, codes=('HA', 'NE'), levels=('00', '04')):
    values = {'rmse_mm': rmse, 'mae_mm': rmse * 0.8, 'within_1mm': 0.4, 'within_2mm': 0.7, 'ms_ssim': 0.91}
    return dict(values, n=10,
                per_expression={code: dict(values, rmse_mm=rmse + i, n=5) for i, code in enumerate(codes)},
                per_level={level: dict(values, rmse_mm=rmse + 2 * i, n=5) for i, level in enumerate(levels)})


def _fake_metrics(recognition):
    model = _block(1.234)
    model['n_images'] = model.pop('n')
    return dict(model, checkpoint='ckpt/model-100', data='data/test',
                baselines={'identity': _block(3.5), 'mean_face': _block(4.25), 'linear': _block(2.0)},
                recognition=recognition, linear_baseline='PCA + ridge: test description',
                ms_ssim_filter_size=MS_SSIM_FILTER_SIZE)


def test_write_report_writes_tables_and_figure(tmp_path, capsys):
    recognition = {'raw': {'rank1': 0.75, 'eer': 0.125}, 'neutralised': {'rank1': 0.9, 'eer': 0.05},
                   'distance': RECOGNITION_DISTANCE, 'n_gallery': 20, 'n_probes': 600}
    metrics = _fake_metrics(recognition)
    error_map = np.full((SIZE, SIZE), np.nan)
    error_map[30:90, 40:80] = np.linspace(0.1, 3, 60)[:, np.newaxis]
    markdown_path, image_path = write_report(metrics, tmp_path / 'results', error_map)

    text = (tmp_path / 'results' / 'report.md').read_text()
    assert str(markdown_path).endswith('report.md') and str(image_path).endswith('report.png')
    assert '| model | 10 | 1.234 | 0.987 | 40.0 % | 70.0 % | 0.9100 |' in text
    assert '| identity | 10 | 3.500 |' in text and '| mean_face | 10 | 4.250 |' in text
    assert '| expression | n | model RMSE (mm) | identity RMSE (mm) | mean_face RMSE (mm) | linear RMSE (mm) |' in text
    assert '| NE | 5 | 2.234 | 4.500 | 5.250 | 3.000 |' in text  # NE is listed before HA
    assert text.index('| NE |') < text.index('| HA |')
    assert '| 04 | 5 | 3.234 | 5.500 | 6.250 | 4.000 |' in text
    assert '| raw (with expression) | 75.0 % | 12.5 % |' in text
    assert '| neutralised by the model | 90.0 % | 5.0 % |' in text
    assert f'MS-SSIM filter size: {MS_SSIM_FILTER_SIZE}' in text
    assert 'PCA + ridge: test description' in text
    png = (tmp_path / 'results' / 'report.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 10_000

    print_table(metrics)
    printed = capsys.readouterr().out
    assert 'mean_face' in printed and '1.234' in printed and 'expression' in printed


def test_write_report_notes_skipped_recognition(tmp_path):
    metrics = _fake_metrics({'skipped': 'no neutral gallery images'})
    write_report(metrics, tmp_path, None)
    text = (tmp_path / 'report.md').read_text()
    assert 'Recognition skipped: no neutral gallery images' in text
    assert (tmp_path / 'report.png').exists()


def test_recorded_paths_are_relative_to_the_repository_and_resolve_back(tmp_path):
    repository = REPO
    inside = os.path.join(repository, 'checkpoints', 'remove', 'best-6000')
    assert recorded_path(inside) == os.path.join('checkpoints', 'remove', 'best-6000')
    outside = str(tmp_path / 'run' / 'best-10')
    assert not os.path.isabs(recorded_path(outside))
    for path in (inside, outside):
        assert resolve_recorded_path(recorded_path(path)) == path
    assert resolve_recorded_path(outside) == outside     # files written before kept absolute paths


def test_whole_image_scores_on_arrays_whose_answer_is_known():
    target = np.zeros((1, 128, 128))                     # (MS-SSIM needs the convention's size)
    target[0, 10:30, 10:30] = 100.0                      # a 20 x 20 face
    output = target + 1.0 * (target > 0)                 # 1 mm too high on the face ...
    output[0, 18:22, 18:22] += 3.0                       # ... 4 mm in the middle (deep inside)
    output[0, 10, 10:30] += 2.0                          # ... 3 mm on the top edge (the outline band)
    surface = output.copy()
    surface[0, 0:2, 0:5] = 50.0                          # 10 pixels of false surface
    surface[0, 29, 10:30] = 0.0                          # 20 face pixels left out
    metrics = per_image_metrics(output, target, surface)
    inside = np.zeros((128, 128), bool)
    inside[14:26, 14:26] = True                          # 5 px or more from the nearest background pixel
    error = (output - target)[0]
    assert metrics['inside_rmse_mm'][0] == pytest.approx(np.sqrt(np.mean(error[inside] ** 2)))
    outline = (target[0] > 0) & ~inside
    assert metrics['outline_rmse_mm'][0] == pytest.approx(np.sqrt(np.mean(error[outline] ** 2)))
    assert metrics['false_surface_share'][0] == pytest.approx(10 / 128 ** 2)
    assert metrics['missing_surface_share'][0] == pytest.approx(20 / 128 ** 2)
    written_error = (surface - target)[0][target[0] > 0]                # the 20 left-out pixels count in full
    assert metrics['written_rmse_mm'][0] == pytest.approx(np.sqrt(np.mean(written_error ** 2)))
    assert set(WHOLE_IMAGE_METRIC_NAMES) <= set(metrics)
    # MS-SSIM scores the image as written: the false surface and the left-out row count, not the raw output
    assert metrics['ms_ssim'][0] == pytest.approx(ms_ssim(surface, target)[0])
    assert metrics['ms_ssim'][0] != pytest.approx(ms_ssim(output, target)[0], abs=1e-4)


def test_whole_image_scores_are_summarised_per_expression():
    target = np.zeros((2, 128, 128))
    target[:, 20:100, 20:100] = 80.0
    surface = target.copy()
    surface[1, 0, :16] = 10.0                            # the second image paints 16 false pixels
    blocks = summarise(per_image_metrics(target, target, surface), ['0001_HA01.png', '0001_SU01.png'])
    assert blocks['per_expression']['HA']['false_surface_share'] == 0
    assert blocks['per_expression']['SU']['false_surface_share'] == pytest.approx(16 / 128 ** 2)
    assert blocks['inside_rmse_mm'] == 0 and blocks['outline_rmse_mm'] == 0
