"""--mode prepare: reading scans, units, alignment against exact renders, and the command line's bad input."""
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, dead_pid, run_program
from depth.convention import BACK_PLANE_MM, IMAGE_CENTRE, IMAGE_SIZE, PIXEL_PITCH_MM
from depth.png import read_depth_png
from faces.expressions import INTENSITIES, MIXTURES_PER_SUBJECT, PROTOTYPES, prototype_weights
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from scanning import alignment
from scanning.measurement import HEIGHT_ERROR_BOUND_MM, height_error_and_coverage
from scanning.mesh_io import MeshError, Scan, read_scan, write_obj, write_ply
from scanning.synthetic import (SAMPLE_FILE, benchmark_scans, exact_depth_mm, kept_part, new_subject, not_a_face,
                                protocol_expression, prototype, sample_scan, scan_file, scanner_view, synthetic_scan,
                                write_sample_scan)
from support import safe_files


@pytest.fixture(scope='module')
def model():
    return load_face_model(DEFAULT_FACE_MODEL)


@pytest.fixture(scope='module')
def template(model):
    return alignment.face_template(model)


def test_obj_and_ply_round_trip_vertices_and_triangles(tmp_path):
    rng = np.random.default_rng(0)
    vertices, triangles = rng.normal(size=(50, 3)), rng.integers(0, 50, (30, 3))
    for path, write in ((tmp_path / 'a.obj', write_obj), (tmp_path / 'b.ply', write_ply),
                        (tmp_path / 'c.ply', lambda p, v, t: write_ply(p, v, t, binary=False))):
        write(path, vertices, triangles)
        scan = read_scan(str(path))
        np.testing.assert_allclose(scan.vertices, vertices, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(scan.triangles, triangles)
    write_ply(tmp_path / 'cloud.ply', vertices)
    assert read_scan(str(tmp_path / 'cloud.ply')).is_point_cloud


def test_obj_polygons_become_fans_and_bad_files_are_named(tmp_path):
    path = tmp_path / 'quad.obj'
    path.write_text('v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\n')
    np.testing.assert_array_equal(read_scan(str(path)).triangles, [[0, 1, 2], [0, 2, 3]])
    (tmp_path / 'bad.ply').write_text('ply\nformat ascii 1.0\nelement vertex 2\n')
    with pytest.raises(MeshError, match='bad.ply'):
        read_scan(str(tmp_path / 'bad.ply'))
    (tmp_path / 'index.obj').write_text('v 0 0 0\nf 1 2 3\n')
    with pytest.raises(MeshError, match='does not exist'):
        read_scan(str(tmp_path / 'index.obj'))


@pytest.mark.parametrize('unit', ['m', 'cm', 'mm'])
def test_units_are_told_apart_by_the_face_size(model, unit):
    face = model.neutral_face_mm(np.zeros(len(model.identity_modes)))
    assert alignment.detect_units(face / alignment.MM_PER_SCAN_UNIT[unit]) == unit


MEDIAN_HEIGHT_ERROR_MM = HEIGHT_ERROR_BOUND_MM  # the bound, for every promised pose

# A few poses at the edges of the promised ranges (the full grid is scan_benchmark.py's measurement).
POSES = [('HA', dict(yaw=25, pitch=-12, roll=8), 'mesh', 'm'),
         ('SU', dict(yaw=-25, pitch=12, roll=-12), 'cloud', 'cm'),
         (None, dict(yaw=-10, pitch=5, roll=12), 'scanner', 'mm')]


@pytest.mark.parametrize('expression, pose, kind, unit', POSES)
def test_a_turned_shifted_scan_comes_out_as_the_exact_render(model, template, expression, pose, kind, unit):
    rng = np.random.default_rng(abs(pose['yaw'] * 100 + pose['pitch']))
    neutral, face = new_subject(model, rng, prototype(model, expression))
    exact = exact_depth_mm(model, neutral, face)
    scan = synthetic_scan(model, neutral, face, rng, kind, unit, pose, shift_mm=400.0)
    prepared = alignment.prepare_scan(scan, template)
    assert prepared.units == unit
    assert prepared.depth_mm.shape == (128, 128)
    error, coverage = height_error_and_coverage(prepared.depth_mm, exact)
    assert error <= MEDIAN_HEIGHT_ERROR_MM and coverage >= 0.9, (error, coverage)


def test_scan_expressions_are_drawn_as_the_test_split_has_them(model):
    rng = np.random.default_rng(0)
    drawn = [protocol_expression(model, rng) for _ in range(500)]
    labels = [label for label, _ in drawn]
    assert {label[:2] for label in labels} == {'NE', 'MX', *PROTOTYPES}
    assert 0.10 < np.mean([label.startswith('MX') for label in labels]) < 0.30  # 6 of a subject's 31 renders
    for label, weights in drawn:
        code, level = label[:2], int(label[2:])
        if code == 'NE':
            assert level == 0 and weights == {}
        elif code == 'MX':
            assert 1 <= level <= MIXTURES_PER_SUBJECT and weights and not any(n.startswith('eyeLook') for n in weights)
        else:
            assert weights == prototype_weights(code, INTENSITIES[level - 1], model.expression_names)


def test_a_face_whose_nose_is_not_among_its_three_most_prominent_points_is_prepared(model, template, monkeypatch):
    # scan_benchmark.py --seed 11, scan 9: a full surprise at pitch and roll -12; its open mouth and raised brows
    # stand out more than its nose, the fifth most prominent point.
    item = next(item for item in benchmark_scans(model, 11) if item.number == 9)
    assert item.name == '0009_SU04.png'
    prepared = alignment.prepare_scan(item.scan, template)
    exact = exact_depth_mm(model, item.neutral, item.face)
    error, coverage = height_error_and_coverage(prepared.depth_mm, exact)
    assert error <= MEDIAN_HEIGHT_ERROR_MM and coverage >= 0.9, (error, coverage)
    monkeypatch.setattr(alignment, 'NOSE_CANDIDATES', 3)
    with pytest.raises(alignment.ScanError, match='does not look like a face'):
        alignment.prepare_scan(item.scan, template)


def test_puffed_cheeks_are_found_from_the_puffed_cheek_start(model, template, monkeypatch):
    # scan_benchmark.py --seed 7, scan 12: a mixture with both cheeks puffed (0.87) and one eye wide; from the
    # neutral face and the half-open jaw alone, the whole-face fit explains the cheeks with other shapes.
    item = next(item for item in benchmark_scans(model, 7) if item.number == 12)
    assert item.name == '0012_MX03.png'
    exact = exact_depth_mm(model, item.neutral, item.face)

    def height_error(template):
        prepared = alignment.prepare_scan(item.scan, template)
        return height_error_and_coverage(prepared.depth_mm, exact)[0]

    assert height_error(template) <= MEDIAN_HEIGHT_ERROR_MM
    monkeypatch.setattr(alignment, 'WHOLE_FACE_STARTS', alignment.WHOLE_FACE_STARTS[:2])
    assert height_error(alignment.face_template(model)) > 2 * MEDIAN_HEIGHT_ERROR_MM


def test_the_template_fits_every_expression_shape_but_gaze(model, template):
    fitted = [name for name in model.expression_names if not name.startswith('eyeLook')]
    assert len(fitted) < len(model.expression_names)
    assert len(template.modes) == len(model.identity_modes) + len(fitted)
    identity = np.random.default_rng(3).standard_normal(len(model.identity_modes))
    for name in ('browDown_L', 'cheekPuff_R', 'jawOpen', 'noseSneer_R'):
        weights = np.zeros(len(template.modes))
        weights[:len(identity)] = identity
        weights[len(identity) + fitted.index(name)] = 0.7
        expected = model.expressive_face_mm(model.neutral_face_mm(identity), {name: 0.7})
        np.testing.assert_allclose(template.face(weights), expected, atol=1e-4)
    for indices, values in template.starts:  # each start names fitted shapes
        assert len(indices) == len(values)
        assert all(template.identity_count <= index < len(template.modes) for index in indices)


def test_benchmark_scans_are_measured_from_files_as_a_user_has_them(model, tmp_path):
    items = list(itertools.islice(benchmark_scans(model, 2026), 3))
    assert [item.kind for item in items] == ['mesh', 'scanner', 'cloud']
    for item, suffix in zip(items, ('.obj', '.ply', '.ply')):
        path = scan_file(item, str(tmp_path))
        assert path.endswith(suffix)
        read = read_scan(path)
        np.testing.assert_array_equal(read.triangles, item.scan.triangles)
        np.testing.assert_allclose(read.vertices, item.scan.vertices, rtol=1e-5)
        assert read.is_point_cloud == (item.kind == 'cloud')


def test_a_splatted_sloped_plane_has_the_plane_height_at_every_pixel_centre():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-60, 60, (2, 100000))  # 15 points a pixel: none left empty
    height = lambda x, y: 0.6 * x - 0.3 * y  # a slope of 31 degrees: a pixel's points span 1.3 mm of height
    depth = alignment.splat_depth_mm(np.column_stack([x, y, height(x, y)]))
    column, row = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE))
    expected = BACK_PLANE_MM + height((column - IMAGE_CENTRE) * PIXEL_PITCH_MM, (IMAGE_CENTRE - row) * PIXEL_PITCH_MM)
    covered = depth > 0
    assert covered[IMAGE_SIZE // 4:-IMAGE_SIZE // 4, IMAGE_SIZE // 4:-IMAGE_SIZE // 4].all()
    np.testing.assert_allclose(depth[covered], expected[covered], atol=1e-6)


def test_a_large_hole_is_filled_from_the_fitted_face(model, template):
    rng = np.random.default_rng(5)
    neutral, face = new_subject(model, rng)
    cheek = neutral[model.nose_tip] + np.array([-40.0, -10.0, -25.0])
    nearest = np.argmin(np.linalg.norm(neutral - cheek, axis=1))
    kept = np.linalg.norm(face - face[nearest], axis=1) > 18.0  # a hole of about 1000 mm^2 on the cheek
    scan = Scan(*kept_part(face, model.triangles, kept))
    exact = exact_depth_mm(model, neutral, face)
    prepared = alignment.prepare_scan(scan, template, units='mm')
    hole = (exact > 0) & (alignment.render_depth_mm(scan.vertices, neutral[model.nose_tip], scan.triangles) <= 0)
    assert hole.sum() * PIXEL_PITCH_MM ** 2 > 600
    assert (prepared.depth_mm[hole] > 0).all()
    assert np.median(np.abs(prepared.depth_mm - exact)[hole]) < 0.5
    outline = prepared.depth_mm > 0
    assert ((exact > 0) != outline).mean() < 0.005  # the fitted face's outline is the face's


def test_completion_keeps_the_scan_on_the_face_and_takes_the_fitted_face_elsewhere():
    fitted = np.array([[0.0, 100.0, 100.0, 100.0, 100.0, 100.0]])
    scan = np.array([[90.0, 0.0, 101.0, 100.0 + alignment.IN_FRONT_MM + 0.5, 95.0,
                      100.0 - alignment.BEHIND_MM - 0.5]])
    # outside the outline: cut; no scan surface: fitted; near the fitted face: the scan; far in front of it
    # (a bridge over an open mouth): fitted; a little behind it (into an open mouth): the scan; far behind it
    # (the inside of a mesh through a hole): fitted
    expected = np.array([[0.0, 100.0, 101.0, 100.0, 95.0, 100.0]])
    np.testing.assert_array_equal(alignment.completed_by_fitted_face(scan, fitted), expected)


def test_too_few_points_and_no_face_are_refused(model, template):
    rng = np.random.default_rng(1)
    few = Scan(rng.normal(size=(100, 3)) * 50, np.zeros((0, 3), int))
    with pytest.raises(alignment.ScanError, match='too few'):
        alignment.prepare_scan(few, template)
    with pytest.raises(alignment.ScanError, match='does not look like a face'):
        alignment.prepare_scan(not_a_face(rng), template)


def test_the_committed_sample_scan_is_its_generator_s_and_prepares_within_the_benchmark_s_bound(model, template,
                                                                                                 tmp_path):
    committed = Path(REPO, SAMPLE_FILE)
    write_sample_scan(model, tmp_path / 'again.ply')
    assert (tmp_path / 'again.ply').read_bytes() == committed.read_bytes()      # regenerated byte for byte
    assert committed.stat().st_size < 600_000
    neutral, face, _ = sample_scan(model)
    prepared = alignment.prepare_scan(read_scan(str(committed)), template)
    error, coverage = height_error_and_coverage(prepared.depth_mm, exact_depth_mm(model, neutral, face))
    assert error <= HEIGHT_ERROR_BOUND_MM and coverage >= 0.9, (error, coverage)


def test_a_scan_too_coarse_to_find_its_nose_is_refused_not_crashed(model, template):
    neutral, face = new_subject(model, np.random.default_rng(5))
    coarse = Scan(*scanner_view(face, model.triangles, spacing_mm=2.5))   # gaps in every 2 mm cell's neighbours
    with pytest.raises(alignment.ScanError, match='more coarsely than every 2 mm'):
        alignment.prepare_scan(coarse, template)


@pytest.fixture(scope='module')
def scan_folder(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp('scans')
    rng = np.random.default_rng(3)
    neutral, face = new_subject(model, rng, prototype(model, 'AN'))
    scan = synthetic_scan(model, neutral, face, rng, 'mesh', 'mm', dict(yaw=15, pitch=0, roll=0))
    write_ply(folder / 'angry.ply', scan.vertices, scan.triangles)
    write_obj(folder / 'ball.obj', not_a_face(rng).vertices)
    (folder / 'broken.obj').write_text('v 1 2\n')
    (folder / 'notes.txt').write_text('not a scan')
    return folder


def test_prepare_a_folder_writes_images_and_previews_and_skips_bad_scans(scan_folder, tmp_path):
    output = tmp_path / 'prepared'
    left = output / 'previews' / f'.angry.png.partial-{dead_pid()}'   # a preview a killed run was writing
    left.parent.mkdir(parents=True)
    left.write_bytes(b'half a preview')
    done = run_program('--mode', 'prepare', '--input', scan_folder, '--output', output)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3 and 'ball.obj' in lines[0] and 'broken.obj' in lines[1], done.stderr
    assert lines[2] == 'convworking.py: error: 2 of 3 scan(s) skipped (reported above)'
    said = done.stdout.strip().splitlines()
    assert said[0] == f'convworking.py: removed what an interrupted run left in {left.parent}: {left.name}'
    assert said[1] == f'convworking.py: prepare 3 scan(s) into {output} (several seconds each)'   # before the first
    assert re.fullmatch(rf'convworking.py: prepared 1 of 3 scan\(s\), 2 skipped, in [0-9.]+ s \([0-9.]+ s per scan\); '
                        rf'depth images in {re.escape(str(output))}, previews in {re.escape(str(output / "previews"))}',
                        said[-1]), said[-1]
    assert sorted(os.listdir(output)) == ['angry.png', 'previews']
    assert os.listdir(output / 'previews') == ['angry.png']
    depth, bits = read_depth_png(output / 'angry.png')
    assert bits == 16 and depth.shape == (128, 128) and 100 < depth[63:65, 63:65].mean() < 140  # nose near 120
    again = run_program('--mode', 'prepare', '--input', scan_folder / 'angry.ply', '--output', output)
    assert again.returncode == 2 and again.stderr.count('\n') == 1 and 'already exists' in again.stderr


@pytest.mark.parametrize('name, message', [('broken.obj', 'malformed OBJ'), ('notes.txt', 'not a 3D scan file'),
                                           ('nowhere.ply', 'not found')])
def test_prepare_refuses_a_bad_single_file_in_one_line(scan_folder, tmp_path, name, message):
    done = run_program('--mode', 'prepare', '--input', scan_folder / name, '--output', tmp_path / 'out')
    assert done.returncode == 2 and done.stderr.count('\n') == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith('convworking.py: error: ') and not (tmp_path / 'out').exists()


def test_prepare_into_a_folder_another_run_holds_gets_one_line(scan_folder, tmp_path):
    output = tmp_path / 'prepared'
    with safe_files.locked_folder(str(output), '--output folder'):
        done = run_program('--mode', 'prepare', '--input', scan_folder / 'angry.ply', '--output', output)
        assert_one_line_error(done, 'in use by another run')
        assert os.listdir(output) == [safe_files.LOCK_FILE]
    assert not output.exists()  # the lock made it, the lock removed it
