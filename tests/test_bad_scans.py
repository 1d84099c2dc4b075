"""Every bad scan is one line (issue 24, item 3): malformed files, impossible extents and memory bombs.

Each case is refused by the reader or the alignment with a message naming the problem, and in a folder it is
skipped with one line while the good scan is written, under a memory limit far below what the bombs asked for.
"""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from conftest import NO_GENERATED, REPO
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from scanning import alignment
from scanning.mesh_io import MeshError, Scan, read_scan, write_obj, write_ply
from scanning.synthetic import new_subject, synthetic_scan

HEADER = 'ply\nformat ascii 1.0\n'
XYZ = 'property float x\nproperty float y\nproperty float z\n'
# What each malformed file holds, and a fragment of the one line it must get.
MALFORMED = {
    'short.ply': (HEADER + 'element vertex 3\n' + XYZ + 'end_header\n0 0 0\n1 1 1\n', 'declares'),
    'short_list.ply': (HEADER + 'element vertex 2\n' + XYZ + 'element face 1\nproperty list uchar int '
                       'vertex_indices\nend_header\n0 0 0\n1 1 1\n3 0 1\n', 'ends before'),
    'int128.ply': (HEADER + 'element vertex 1\nproperty int128 x\nend_header\n0\n', 'int128 is not a PLY type'),
    'no_z.ply': (HEADER + 'element vertex 1\nproperty float x\nproperty float y\nend_header\n0 0\n', 'no z'),
    'flat_face.ply': (HEADER + 'element vertex 3\n' + XYZ + 'element face 1\nproperty int vertex_indices\n'
                      'end_header\n0 0 0\n1 0 0\n0 1 0\n0\n', 'not a list'),
    'huge.ply': (HEADER + 'element vertex 10000000000\n' + XYZ + 'end_header\n0 0 0\n', 'declares'),
    'zero.obj': ('v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n', 'vertex 0'),
}


@pytest.mark.parametrize('name', sorted(MALFORMED))
def test_a_malformed_scan_is_named_with_its_problem(tmp_path, name):
    content, fragment = MALFORMED[name]
    (tmp_path / name).write_text(content)
    with pytest.raises(MeshError, match=fragment):
        read_scan(str(tmp_path / name))


def binary_header(vertices, faces=None, list_types='uchar int'):
    face = f'element face {faces}\nproperty list {list_types} vertex_indices\n' if faces is not None else ''
    return (f'ply\nformat binary_little_endian 1.0\nelement vertex {vertices}\n{XYZ}{face}end_header\n').encode()


def test_a_binary_header_declaring_more_than_the_file_holds_allocates_nothing(tmp_path):
    bomb = tmp_path / 'bomb.ply'
    bomb.write_bytes(binary_header(10 ** 10) + bytes(12))
    with pytest.raises(MeshError, match='declares'):
        read_scan(str(bomb))
    # one triangle whose list claims 2^31 - 1 items: read(n) would ask for 8 GB first
    lists = tmp_path / 'lists.ply'
    lists.write_bytes(binary_header(3, 1, 'int int') + bytes(36) + np.array([2 ** 31 - 1, 0, 1, 2], '<i4').tobytes())
    with pytest.raises(MeshError, match='runs past the end'):
        read_scan(str(lists))


def test_int64_properties_and_mixed_polygons_are_read(tmp_path):
    path = tmp_path / 'wide.ply'
    path.write_text(HEADER + 'element vertex 4\nproperty int64 x\nproperty int64 y\nproperty int64 z\n'
                    'element face 2\nproperty list uchar int vertex_indices\nend_header\n'
                    '0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n3 0 1 2\n')
    scan = read_scan(str(path))
    assert scan.vertices.shape == (4, 3)
    np.testing.assert_array_equal(scan.triangles, [[0, 1, 2], [0, 2, 3], [0, 1, 2]])


@pytest.fixture(scope='module')
def face_scan():
    model = load_face_model(DEFAULT_FACE_MODEL)
    rng = np.random.default_rng(5)
    neutral, face = new_subject(model, rng)
    return synthetic_scan(model, neutral, face, rng, 'cloud', 'mm', dict(yaw=0, pitch=0, roll=0))


def impossible_scans(face):
    """Scans no face can be, each with the units it is read in (None: detected)."""
    rng = np.random.default_rng(0)
    line = np.outer(rng.uniform(0, 200, 2000), [1.0, 0.5, 0.2])
    return {
        'identical': (Scan(np.ones((2000, 3)), face.triangles), None),
        'collinear': (Scan(line, face.triangles[:0]), None),
        'edge-on plane': (Scan(np.c_[rng.uniform(0, 200, 2000), np.zeros(2000), rng.uniform(0, 200, 2000)],
                               face.triangles[:0]), None),
        'km': (Scan(face.vertices / 1e6, face.triangles), None),
        'um': (Scan(face.vertices * 1e3, face.triangles), None),
        'm read as mm': (Scan(face.vertices / 1e3, face.triangles), 'mm'),
        '1e300': (Scan(face.vertices * 1e300, face.triangles), None),
    }


@pytest.mark.parametrize('case', ['identical', 'collinear', 'edge-on plane', 'km', 'um', 'm read as mm', '1e300'])
def test_a_scan_no_face_can_be_is_refused_by_its_extent(face_scan, case):
    scan, units = impossible_scans(face_scan)[case]
    with pytest.raises(alignment.ScanError, match='not a face'):
        alignment.within_face_extent(scan, units or alignment.detect_units(scan.vertices))


def test_a_stray_vertex_far_away_is_dropped_not_gridded(face_scan):
    far = np.vstack([face_scan.vertices, [[1e5, 0, 0]]])
    points, _ = alignment.within_face_extent(Scan(far, face_scan.triangles), 'mm')
    assert len(points) == len(face_scan.vertices) and np.ptp(points, axis=0).max() < 1000


def limited_memory():
    # far below the 18-120 GB the bombs asked for, above what prepare needs (numpy, OpenCV, the face model)
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_a_folder_of_bad_scans_gets_one_line_each_and_the_good_one_written(face_scan, tmp_path):
    folder = tmp_path / 'scans'
    folder.mkdir()
    for name, (content, _) in MALFORMED.items():
        (folder / name).write_text(content)
    write_ply(folder / 'good.ply', face_scan.vertices, face_scan.triangles)
    write_ply(folder / 'stray.ply', np.vstack([face_scan.vertices, [[1e5, 0, 0]]]), face_scan.triangles)
    write_obj(folder / 'micrometres.obj', face_scan.vertices * 1e3)
    write_ply(folder / 'onebig.ply', face_scan.vertices * 1e300, binary=False)
    done = subprocess.run([sys.executable, os.path.join(REPO, 'convworking.py'), *NO_GENERATED, '--mode', 'prepare',
                           '--input', folder, '--output', tmp_path / 'out'], capture_output=True, text=True,
                          timeout=900, preexec_fn=limited_memory)
    lines = done.stderr.strip().splitlines()
    bad = len(MALFORMED) + 2
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr
    assert len(lines) == bad + 1 and lines[-1].endswith(f'{bad} of {bad + 2} scan(s) skipped (reported above)'), lines
    assert sorted(os.listdir(tmp_path / 'out')) == ['good.png', 'previews', 'stray.png']
