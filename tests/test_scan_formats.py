"""The readers of the databases' scan formats (BU-3DFE .wrl, Bosphorus .bnt, FRGC .abs): round trips through
files with each format's quirks, and damaged or hostile files refused with one MeshError naming the file."""
import struct
import time
import tracemalloc

import numpy as np
import pytest

import conftest
from faces.model import load_face_model
from scanning.mesh_io import MeshError
from scanning.scan_formats import read_abs, read_bnt, read_wrl, range_grid, write_abs, write_bnt, write_wrl

MODEL = f'{conftest.REPO}/facemodel/ict_face_model_light.npz'
SPACING_MM = 2.0


@pytest.fixture(scope='module')
def face():
    """(vertices in mm, triangles) of the ICT model's neutral face."""
    model = load_face_model(MODEL)
    return model.neutral.astype(np.float64) * 10, model.triangles.astype(np.int64)


@pytest.fixture(scope='module')
def face_grid(face):
    """The face as a range scanner 2 mm apart sees it: (R, C, 3), NaN where there is no face."""
    return range_grid(*face, SPACING_MM)


def valid_points(grid):
    return grid[~np.isnan(grid).any(axis=2)]


# ---------------------------------------------------------------------------------------------------------
# Round trips.
# ---------------------------------------------------------------------------------------------------------
def test_range_grid_samples_the_face_on_a_regular_grid(face, face_grid):
    vertices, _ = face
    points = valid_points(face_grid)
    assert len(points) > 5000
    for axis in (0, 1):  # x and y on the grid's nodes
        steps = (points[:, axis] - points[:, axis].min()) / SPACING_MM
        assert np.allclose(steps, np.round(steps))
    assert vertices[:, 2].min() <= points[:, 2].min() and points[:, 2].max() <= vertices[:, 2].max() + 1e-9


def test_wrl_round_trip_of_the_face_model(face, tmp_path):
    vertices, triangles = face
    path = tmp_path / 'F0001_NE00WH_F3D.wrl'
    write_wrl(path, vertices, triangles)
    text = path.read_text()
    assert text.index('coord Coordinate') < text.index('texCoord TextureCoordinate')
    polygon_sizes = [line.count(',') - 1 for line in text.splitlines() if line.endswith(', -1,')]
    assert len(polygon_sizes) < len(triangles) and max(polygon_sizes) >= 4, "polygons, not only triangles"
    scan = read_wrl(path)
    assert np.array_equal(scan.vertices, vertices)
    assert np.array_equal(scan.triangles, triangles)


HAND_WRITTEN_WRL = '''#VRML V2.0 utf8
# Comments, commas or none, a quad, a pentagon, no -1 after the last face, the texture's point list first.
DEF _F0001_AN01WH_F3D Transform {
  children [
    Shape {
      appearance Appearance { texture ImageTexture { url "odd # name [ ].bmp" } }
      geometry IndexedFaceSet {
        texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1 ] }
        coord DEF C Coordinate {
          point [
            0 0 0, 1 0 0,  # the first two
            1 1 0
            0 1 0, 2 0 1, 2 1 1
          ]
        }
        texCoordIndex [ 0 1 2 -1 ]
        coordIndex [ 0, 1, 2, 3, -1,  1 4 5 2 3 -1, 0 1 3 ]
      }
    }
  ]
}
'''


def test_wrl_polygons_become_fans_and_texture_coordinates_are_ignored(tmp_path):
    path = tmp_path / 'F0001_AN01WH_F3D.wrl'
    path.write_text(HAND_WRITTEN_WRL)
    scan = read_wrl(path)
    assert np.array_equal(scan.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 1], [2, 1, 1]])
    assert scan.triangles.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2], [1, 2, 3], [0, 1, 3]]


def test_bnt_round_trip_of_a_face_grid(face_grid, tmp_path):
    path = tmp_path / 'bs000_N_N_0.bnt'
    write_bnt(path, face_grid)
    scan = read_bnt(path)
    assert np.array_equal(scan.vertices, valid_points(face_grid))
    assert len(scan.triangles) > len(scan.vertices)
    across = np.linalg.norm(face_grid[:, 1:] - face_grid[:, :-1], axis=2)
    down = np.linalg.norm(face_grid[1:] - face_grid[:-1], axis=2)
    median_spacing = np.nanmedian(np.concatenate([across.ravel(), down.ravel()]))
    corners = scan.vertices[scan.triangles]
    assert np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max() < 4 * median_spacing


def test_bnt_rows_are_stored_upside_down_with_zmin_background(tmp_path):
    grid = np.arange(2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    grid[0, 0] = np.nan
    path = tmp_path / 'bs001_E_HAPPY_0.bnt'
    write_bnt(path, grid, zmin=-5.0)
    data = path.read_bytes()
    rows, cols, zmin, name_length = struct.unpack_from('<HHdH', data)
    name = data[14:14 + name_length]
    [count] = struct.unpack_from('<I', data, 14 + name_length)
    grids = np.frombuffer(data, '<f8', count, 18 + name_length).reshape(5, rows, cols)
    assert (rows, cols, zmin, name, count) == (2, 3, -5.0, b'bs001_E_HAPPY_0.png', 30)
    assert np.array_equal(grids[2, 0], grid[1, :, 2]), "the first stored row is the bottom one"
    assert grids[2, 1, 0] == zmin and grids[3:].min() >= 0 and grids[3:].max() <= 1
    assert np.array_equal(read_bnt(path).vertices, valid_points(grid))


def test_abs_round_trip_drops_the_no_data_points(face_grid, tmp_path):
    path = tmp_path / '04200d74.abs'
    write_abs(path, face_grid)
    lines = path.read_text().splitlines()
    rows, cols = face_grid.shape[:2]
    assert lines[:3] == [f'{rows} rows', f'{cols} columns', 'pixels (flag X Y Z):'] and len(lines) == 7
    assert '0' in lines[3].split() and '-999999.000000' in lines[6].split()
    scan = read_abs(path)
    assert np.array_equal(scan.vertices, valid_points(face_grid))
    bnt = tmp_path / 'same.bnt'
    write_bnt(bnt, face_grid)
    assert np.array_equal(scan.triangles, read_bnt(bnt).triangles)


@pytest.mark.parametrize('write, read, suffix', [(write_bnt, read_bnt, '.bnt'), (write_abs, read_abs, '.abs')])
def test_grid_triangles_join_valid_neighbours_only(write, read, suffix, tmp_path):
    # A flat 3 x 3 grid 1 mm apart, points numbered 0 1 2 / 3 4 5 / 6 7 8; point 1 has no data and point 8
    # is a spike 100 mm out: no triangle may use either.
    row, col = np.mgrid[:3, :3]
    grid = np.stack([col, -row, np.zeros((3, 3))], axis=2).astype(np.float64)
    grid[0, 1] = np.nan
    grid[2, 2, 2] = 100
    path = tmp_path / f'grid{suffix}'
    write(path, grid)
    scan = read(path)
    assert len(scan.vertices) == 8  # the spike stays, as a point
    # Grid triangles (2, 4, 5), (3, 6, 4), (4, 6, 7), (4, 7, 5), renumbered without point 1.
    assert scan.triangles.tolist() == [[1, 3, 4], [2, 5, 3], [3, 5, 6], [3, 6, 4]]


# ---------------------------------------------------------------------------------------------------------
# Damaged and hostile files.
# ---------------------------------------------------------------------------------------------------------
def small_grid():
    row, col = np.mgrid[:4, :5]
    return np.stack([col, -row, row * col], axis=2).astype(np.float64)


def bnt_bytes(tmp_path):
    write_bnt(tmp_path / 'good.bnt', small_grid())
    return (tmp_path / 'good.bnt').read_bytes()


def abs_text(tmp_path):
    write_abs(tmp_path / 'good.abs', small_grid())
    return (tmp_path / 'good.abs').read_text()


def bnt_header(rows, cols, count, name=b'x.png'):
    return struct.pack('<HHdH', rows, cols, -1e9, len(name)) + name + struct.pack('<I', count)


def with_inf_bnt(tmp_path):
    grid = small_grid()
    grid[1, 1, 0] = np.inf
    write_bnt(tmp_path / 'inf.bnt', grid)
    return (tmp_path / 'inf.bnt').read_bytes()


def with_grid_line_cut(text, line, keep):
    lines = text.splitlines()
    lines[line] = ' '.join(lines[line].split()[:keep])
    return '\n'.join(lines) + '\n'


BAD_BNT = {
    'header_cut': (lambda tmp: bnt_bytes(tmp)[:10], 'truncated'),
    'data_cut': (lambda tmp: bnt_bytes(tmp)[:-100], 'truncated'),
    'name_runs_past_the_end': (lambda tmp: struct.pack('<HHdH', 4, 5, -1e9, 60000) + b'x' * 20, 'truncated'),
    # 20000 x 20000 points: 2e9 float64 values (16 GB) declared in a file of a few dozen bytes.
    'declares_more_than_it_holds': (lambda tmp: bnt_header(20000, 20000, 5 * 20000 * 20000) + bytes(16),
                                    'only 16 bytes follow'),
    'count_not_five_grids': (lambda tmp: bnt_header(65535, 65535, 2 ** 32 - 1) + bytes(16), 'need 5 x'),
    'all_background': (lambda tmp: bnt_header(1, 2, 10) + struct.pack('<10d', 0, 0, 0, 0, -1e9, -1e9, 0, 0, 0, 0),
                       'no valid points'),
    'not_finite': (with_inf_bnt, 'not finite'),
}

BAD_ABS = {
    'grids_short': (lambda tmp: with_grid_line_cut(abs_text(tmp), 6, 7), 'grids hold'),
    'grid_missing': (lambda tmp: '\n'.join(abs_text(tmp).splitlines()[:6]), 'grids hold'),
    'declares_a_billion_points': (lambda tmp: '1000000000 rows\n1 columns\npixels (flag X Y Z):\n1\n0\n0\n0\n',
                                  'declares 1000000000 x 1 points'),
    'header_cut': (lambda tmp: '4 rows\n5 columns\n', 'header'),
    'rows_line_wrong': (lambda tmp: abs_text(tmp).replace('4 rows', 'rows: four'), "'<positive count> rows'"),
    'pixels_line_wrong': (lambda tmp: abs_text(tmp).replace('pixels (flag X Y Z):', 'pixels'), 'third line'),
    'flag_not_0_or_1': (lambda tmp: abs_text(tmp).replace('1 1 1', '1 2 1', 1), 'flags'),
    'not_a_number': (lambda tmp: abs_text(tmp).replace('\n0.0 ', '\nabc ', 1), 'not a number'),
    'not_finite': (lambda tmp: abs_text(tmp).replace('\n0.0 ', '\ninf ', 1), 'not finite'),
}

TRIANGLE_WRL = '''#VRML V2.0 utf8
Transform { children [ Shape { geometry IndexedFaceSet {
  coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }
  coordIndex [ 0, 1, 2, -1 ]
} } ] }
'''

BAD_WRL = {
    'no_coord_index': (lambda tmp: TRIANGLE_WRL.replace('coordIndex [ 0, 1, 2, -1 ]', ''), 'no coordIndex'),
    'no_point': (lambda tmp: TRIANGLE_WRL.replace('point [ 0 0 0, 1 0 0, 0 1 0 ]', ''), 'no point list'),
    'no_coord': (lambda tmp: TRIANGLE_WRL.replace('coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }', ''),
                 'no coord'),
    'index_out_of_range': (lambda tmp: TRIANGLE_WRL.replace('0, 1, 2, -1', '0, 1, 3, -1'), 'vertex 3'),
    'negative_index': (lambda tmp: TRIANGLE_WRL.replace('0, 1, 2, -1', '0, -2, 1, -1'), 'vertex -2'),
    'not_finite': (lambda tmp: TRIANGLE_WRL.replace('0 1 0 ]', 'nan 1 0 ]'), 'not finite'),
    'not_a_number': (lambda tmp: TRIANGLE_WRL.replace('0 1 0 ]', 'zero 1 0 ]'), 'not a number'),
    'points_not_triples': (lambda tmp: TRIANGLE_WRL.replace('0 1 0 ]', '0 1 ]'), 'multiple of 3'),
    'list_never_closed': (lambda tmp: TRIANGLE_WRL.replace('-1 ]\n} } ] }', '-1'), "'[' is never closed"),
    'node_never_closed': (lambda tmp: TRIANGLE_WRL.replace('} } ] }', ''), "'{' is never closed"),
    'not_vrml_2': (lambda tmp: TRIANGLE_WRL.replace('V2.0', 'V1.0'), "'#VRML V2.0'"),
    'two_face_sets': (lambda tmp: TRIANGLE_WRL + TRIANGLE_WRL[16:], '2 IndexedFaceSet'),
}

CASES = ([('.bnt', read_bnt, name, *case) for name, case in BAD_BNT.items()]
         + [('.abs', read_abs, name, *case) for name, case in BAD_ABS.items()]
         + [('.wrl', read_wrl, name, *case) for name, case in BAD_WRL.items()])


@pytest.mark.parametrize('suffix, read, name, content, fragment', CASES, ids=[f'{c[0]}-{c[2]}' for c in CASES])
def test_a_bad_file_raises_one_mesh_error_naming_it(suffix, read, name, content, fragment, tmp_path):
    data = content(tmp_path)
    path = tmp_path / f'{name}{suffix}'
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(MeshError) as raised:
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and message.startswith(f'{path}: ') and fragment in message, message
    # Nothing is allocated for what a header declares beyond the file's size (these files are < 2 kB).
    assert peak < 200_000, peak
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize('read', [read_wrl, read_bnt, read_abs])
def test_a_missing_file_raises_a_mesh_error(read, tmp_path):
    with pytest.raises(MeshError, match='missing.scan: cannot be read'):
        read(tmp_path / 'missing.scan')
