"""Reading the scans of three 3D facial expression databases, and writing look-alike files for tests.

  * BU-3DFE: VRML 2.0 meshes (.wrl, e.g. F0001_AN01WH_F3D.wrl), in mm: a Transform holding a Shape whose
    geometry is an IndexedFaceSet. Only `coord Coordinate { point [...] }` and `coordIndex [...]` are read;
    texture coordinates, appearance and everything else are skipped.
  * Bosphorus: binary range grids (.bnt), in mm; points whose z equals the header's zmin are background.
  * FRGC v2: ASCII range grids (.abs), in mm; points whose flag is 0 (their values are -999999) are no data.

Every reader returns a scanning.mesh_io.Scan: (N, 3) float64 vertices and (T, 3) int64 triangles. A range grid
becomes its valid points, row by row from the top row, and the triangles of the grid cells whose three
corners are valid and whose edges are all shorter than `max_edge_ratio` times the grid's median spacing
between neighbours (longer edges bridge a depth jump, e.g. from the nose to the cheek behind it).

A file that cannot be read raises one scanning.mesh_io.MeshError whose one-line message names the file and the
problem. Counts declared in a header are checked against the file's size before anything is allocated for
them, so a damaged or hostile header cannot make a reader allocate memory for values the file does not hold.

Sources the layouts were checked against (read, not copied):
  * VRML97, ISO/IEC 14772-1:1997, IndexedFaceSet node, as quoted in Coin3D's SoVRMLIndexedFaceSet manual
    page and Open CASCADE's Vrml_IndexedFaceSet reference: -1 ends a face and may be left out after the
    last one; a face is rendered as a fan from its first vertex.
  * BU-3DFE: public readers of its F3D.wrl files (VRMLReader by Colin Han, 2021; a read_wrl after ftdlyc's
    wrl2obj): coord, coordIndex, texCoord, texCoordIndex in that order, "x y z," and "a, b, c, -1," lines,
    polygons of 3 to 6 vertices, a Viewpoint node besides the Shape.
  * Bosphorus: read_bntfile.m by Arman Savran (2008), one of the database's authors, and its Python
    conversion (Kevin Mader 2019, Arman Savran 2021): header fields, the five N-value grids (x, y, z and
    the two image coordinates normalised to [0, 1]), background z == zmin; public Python bnt-to-abs
    converters note that "the range image is stored upside down in the .bnt file".
  * FRGC: PyVision's RangeImage (David S. Bolme, 2009), with its sample header "480 rows / 640 columns /
    pixels (flag X Y Z):" and one line per grid read row-major; OrderedPointSet::WriteAbs (a C++ FRGC tool)
    and other public .abs writers: -999999 where the flag is 0.
"""
import os
import re
import struct

import numpy as np

from depth.rasterise import rasterise_depth
from scanning.mesh_io import MeshError, Scan

MAX_EDGE_RATIO = 4.0  # a grid triangle's edges must be shorter than this many median neighbour spacings

_BNT_HEADER = struct.Struct('<HHdH')  # rows, columns, zmin, length of the image file name
_BNT_COUNT = struct.Struct('<I')  # number of float64 values that follow
_BNT_GRIDS = 5  # x, y, z and the two normalised image coordinates

ABS_NO_DATA = -999999.0
_ABS_NO_DATA_TEXT = '-999999.000000'  # as the FRGC files print it
_ABS_GRIDS = 4  # flags, X, Y, Z
_ABS_PIXELS_LINE = 'pixels (flag X Y Z):'

_VRML_HEADER = b'#VRML V2.0'
# A VRML token: a quoted string (kept whole, so a '#' or a bracket inside it means nothing), a comment, a
# bracket or brace, or a word. Commas are white space in VRML.
_VRML_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|#[^\n\r]*|[\[\]{}]|[^\s,\[\]{}#"]+')


class _Unreadable(Exception):
    """What is wrong with a file's content; the reader adds the file's name and raises a MeshError."""


# ---------------------------------------------------------------------------------------------------------
# Readers.
# ---------------------------------------------------------------------------------------------------------
def read_wrl(path):
    """The mesh of a BU-3DFE VRML 2.0 file; polygons are split into fans (a, b, c), (a, c, d), ..."""
    return _read(path, _parse_wrl, '.wrl')


def read_bnt(path, max_edge_ratio=MAX_EDGE_RATIO):
    """The mesh of a Bosphorus .bnt range grid: its foreground points and the triangles between them."""
    return _read(path, lambda data: _parse_bnt(data, max_edge_ratio), '.bnt')


def read_abs(path, max_edge_ratio=MAX_EDGE_RATIO):
    """The mesh of an FRGC .abs range grid: its flagged points and the triangles between them."""
    return _read(path, lambda data: _parse_abs(data, max_edge_ratio), '.abs')


def _read(path, parse, kind):
    """parse(the file's bytes), with every failure turned into one MeshError naming the file."""
    try:
        with open(path, 'rb') as file:
            data = file.read()
    except OSError as error:
        raise MeshError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return parse(data)
    except _Unreadable as error:
        raise MeshError(f"{path}: {error}") from None
    except (ValueError, IndexError, struct.error) as error:
        raise MeshError(f"{path}: malformed {kind} ({error})") from None


def _require_finite(points, which):
    if not np.isfinite(points).all():
        raise _Unreadable(f"has {which} whose coordinates are not finite numbers")


# ---------------------------------------------------------------------------------------------------------
# BU-3DFE: VRML 2.0.
# ---------------------------------------------------------------------------------------------------------
def _parse_wrl(data):
    if not data.startswith(_VRML_HEADER):
        raise _Unreadable(f"does not start with '{_VRML_HEADER.decode()}'")
    tokens = [token for token in _VRML_TOKEN.findall(data) if not token.startswith(b'#')]
    face_set = _indexed_face_set_fields(tokens)
    vertices = _coordinates(tokens, face_set)
    if b'coordIndex' not in face_set:
        raise _Unreadable("its IndexedFaceSet has no coordIndex")
    indices = _integers(_list_after(tokens, face_set[b'coordIndex']), 'its coordIndex list')
    wrong = indices[(indices < -1) | (indices >= len(vertices))]
    if len(wrong):
        raise _Unreadable(f"coordIndex uses vertex {wrong[0]} but the point list has {len(vertices)} points")
    return Scan(vertices, _fans(indices))


def _indexed_face_set_fields(tokens):
    """{field name: token index} of the file's one IndexedFaceSet."""
    starts = [index for index, token in enumerate(tokens) if token == b'IndexedFaceSet']
    if len(starts) != 1:
        raise _Unreadable(f"holds {len(starts)} IndexedFaceSet nodes, not one")
    return _node_fields(tokens, starts[0] + 1)


def _coordinates(tokens, face_set):
    """(N, 3) points of the face set's `coord Coordinate { point [...] }` (a texCoord also has a point
    list: that is why the point list is looked up inside the coord node, not anywhere in the file)."""
    if b'coord' not in face_set:
        raise _Unreadable("its IndexedFaceSet has no coord Coordinate")
    node = face_set[b'coord'] + 1
    if tokens[node] == b'DEF':  # DEF name Coordinate { ... }
        node += 2
    if tokens[node] != b'Coordinate':
        raise _Unreadable(f"its coord field holds {tokens[node].decode(errors='replace')!r}, not a Coordinate")
    coordinate = _node_fields(tokens, node + 1)
    if b'point' not in coordinate:
        raise _Unreadable("its Coordinate has no point list")
    values = _floats(_list_after(tokens, coordinate[b'point']), 'its point list')
    if len(values) == 0 or len(values) % 3:
        raise _Unreadable(f"its point list holds {len(values)} numbers, not a positive multiple of 3")
    vertices = values.reshape(-1, 3)
    _require_finite(vertices, 'points')
    return vertices


def _node_fields(tokens, brace):
    """{token: index} of the tokens directly inside the node whose '{' is at `brace` (field names, and the
    values and node types that are not inside a nested node or list; the first of each wins)."""
    if tokens[brace] != b'{':
        raise _Unreadable("a node type is not followed by '{'")
    fields, depth, index = {}, 0, brace + 1
    while index < len(tokens):
        token = tokens[index]
        if token == b'[':
            index = _closing_bracket(tokens, index)
        elif token == b'{':
            depth += 1
        elif token == b'}':
            if depth == 0:
                return fields
            depth -= 1
        elif depth == 0:
            fields.setdefault(token, index)
        index += 1
    raise _Unreadable("a '{' is never closed")


def _closing_bracket(tokens, bracket):
    # Lists hold numbers or strings, never nested lists, so the next ']' closes this one.
    try:
        return tokens.index(b']', bracket)
    except ValueError:
        raise _Unreadable("a '[' is never closed") from None


def _list_after(tokens, field):
    """The value tokens of the multiple-valued field named at `field`: `[ v v ... ]`, or one bare value."""
    if field + 1 >= len(tokens):
        raise _Unreadable(f"the file ends after {tokens[field].decode()}")
    if tokens[field + 1] != b'[':
        return tokens[field + 1:field + 2]
    return tokens[field + 2:_closing_bracket(tokens, field + 1)]


def _floats(tokens, where):
    try:
        return np.array(tokens, np.bytes_).astype(np.float64)
    except ValueError:
        raise _Unreadable(f"a value in {where} is not a number") from None


def _integers(tokens, where):
    try:
        return np.array(tokens, np.bytes_).astype(np.int64)
    except ValueError:
        raise _Unreadable(f"a value in {where} is not an integer") from None


def _fans(indices):
    """(T, 3) triangles of polygons listed as vertex indices separated by -1 (the last -1 optional), each
    split into a fan (a, b, c), (a, c, d), ... Polygons of fewer than 3 vertices make no triangle."""
    ends = np.flatnonzero(indices == -1)
    if len(indices) and indices[-1] != -1:
        ends = np.append(ends, len(indices))
    starts = np.concatenate([[0], ends + 1])[:len(ends)]
    triangle_counts = np.maximum(ends - starts - 2, 0)
    polygon = np.repeat(np.arange(len(starts)), triangle_counts)
    first = starts[polygon]
    # k = 1, 2, ... counts the triangles within each polygon
    k = np.arange(len(polygon)) - np.repeat(np.cumsum(triangle_counts) - triangle_counts, triangle_counts) + 1
    return np.stack([indices[first], indices[first + k], indices[first + k + 1]], axis=1).reshape(-1, 3)


# ---------------------------------------------------------------------------------------------------------
# Bosphorus: .bnt.
# ---------------------------------------------------------------------------------------------------------
def _parse_bnt(data, max_edge_ratio):
    if len(data) < _BNT_HEADER.size:
        raise _Unreadable(f"is truncated: {len(data)} bytes, shorter than the {_BNT_HEADER.size}-byte header")
    rows, cols, zmin, name_length = _BNT_HEADER.unpack_from(data)
    count_at = _BNT_HEADER.size + name_length
    if len(data) < count_at + _BNT_COUNT.size:
        raise _Unreadable(f"is truncated: {len(data)} bytes end inside the header")
    [count] = _BNT_COUNT.unpack_from(data, count_at)
    if count != _BNT_GRIDS * rows * cols:
        raise _Unreadable(f"declares {count} values, but {rows} rows x {cols} columns need "
                          f"{_BNT_GRIDS} x {rows * cols} = {_BNT_GRIDS * rows * cols}")
    start = count_at + _BNT_COUNT.size  # bytes after the grids are ignored, as read_bntfile ignores them
    if len(data) - start < 8 * count:
        raise _Unreadable(f"is truncated: its header declares {count} values ({8 * count} bytes) but only "
                          f"{len(data) - start} bytes follow")
    grids = np.frombuffer(data, '<f8', count, start).reshape(_BNT_GRIDS, rows, cols)
    grids = grids[:, ::-1]  # the first stored row is the bottom one
    points = np.stack([grids[0], grids[1], grids[2]], axis=2)
    return _grid_scan(points, grids[2] != zmin, max_edge_ratio)


# ---------------------------------------------------------------------------------------------------------
# FRGC v2: .abs.
# ---------------------------------------------------------------------------------------------------------
def _parse_abs(data, max_edge_ratio):
    parts = data.split(b'\n', 3)
    if len(parts) < 4:
        raise _Unreadable("ends inside its three header lines")
    rows_line, cols_line, pixels_line, body = parts
    rows, cols = _abs_dimension(rows_line, 'rows'), _abs_dimension(cols_line, 'columns')
    if not pixels_line.decode('ascii').strip().startswith(_ABS_PIXELS_LINE):
        raise _Unreadable(f"its third line is not '{_ABS_PIXELS_LINE}'")
    values_needed = _ABS_GRIDS * rows * cols
    # Every value takes at least one character and one separator: a header declaring more points than the
    # file can hold is refused before anything is allocated for them.
    if 2 * values_needed - 1 > len(body):
        raise _Unreadable(f"declares {rows} x {cols} points: its {_ABS_GRIDS} grids need at least "
                          f"{2 * values_needed - 1} bytes but only {len(body)} follow the header")
    words = body.split()
    if len(words) != values_needed:
        raise _Unreadable(f"its grids hold {len(words)} values, but {_ABS_GRIDS} grids of {rows} x {cols} "
                          f"need {values_needed}")
    flags, x, y, z = _floats(words, 'its grids').reshape(_ABS_GRIDS, rows, cols)
    if not np.isin(flags, (0, 1)).all():
        raise _Unreadable("its flags are not all 0 or 1")
    points = np.stack([x, y, z], axis=2)
    # The flag says whether a point is data; a flagged point still holding the no-data mark is not data.
    valid = (flags == 1) & (points != ABS_NO_DATA).all(axis=2)
    return _grid_scan(points, valid, max_edge_ratio)


def _abs_dimension(line, name):
    """The count of a header line such as '480 rows'."""
    words = line.decode('ascii').split()
    if len(words) != 2 or words[1] != name or not words[0].isdigit() or int(words[0]) == 0:
        raise _Unreadable(f"a header line reads {line.decode('ascii', errors='replace').strip()!r}, "
                          f"not '<positive count> {name}'")
    return int(words[0])


# ---------------------------------------------------------------------------------------------------------
# Range grids to meshes.
# ---------------------------------------------------------------------------------------------------------
def _grid_scan(points, valid, max_edge_ratio):
    """The Scan of the valid points of an (R, C, 3) grid, row-major, and of the triangles between them."""
    if not valid.any():
        raise _Unreadable("holds no valid points")
    _require_finite(points[valid], 'valid points')
    grid = np.where(valid[..., None], points, np.nan)
    triangles = _grid_triangles(grid, max_edge_ratio)
    new_index = np.cumsum(valid.ravel()) - 1  # the number of each valid point once the others are dropped
    return Scan(grid[valid], new_index[triangles])


def _grid_triangles(grid, max_edge_ratio):
    """(T, 3) grid-point indices (r * C + c) of the triangles of an (R, C, 3) grid (NaN = no point).

    Each cell (a b / d e) is split into (a, d, b) and (b, d, e): counter-clockwise seen from +z when rows run
    down and columns right, as in the scanners' images. A triangle is kept when its three corners are
    points and its edges are shorter than max_edge_ratio x the median spacing between grid neighbours.
    """
    across = np.linalg.norm(grid[:, 1:] - grid[:, :-1], axis=2)  # a-b, (R, C - 1)
    down = np.linalg.norm(grid[1:] - grid[:-1], axis=2)  # a-d, (R - 1, C)
    diagonal = np.linalg.norm(grid[:-1, 1:] - grid[1:, :-1], axis=2)  # b-d, (R - 1, C - 1)
    spacings = np.concatenate([across.ravel(), down.ravel()])
    spacings = spacings[np.isfinite(spacings)]
    if len(spacings) == 0:  # no two points are neighbours
        return np.zeros((0, 3), np.int64)
    # NaN distances (from a missing corner) are never shorter than the limit.
    limit = max_edge_ratio * np.median(spacings)
    across, down, diagonal = across < limit, down < limit, diagonal < limit
    keep = np.stack([down[:, :-1] & across[:-1] & diagonal, diagonal & down[:, 1:] & across[1:]], axis=2)
    rows, cols = grid.shape[:2]
    index = np.arange(rows * cols).reshape(rows, cols)
    a, b, d, e = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    triangles = np.stack([np.stack([a, d, b], axis=-1), np.stack([b, d, e], axis=-1)], axis=2)
    return triangles[keep]


# ---------------------------------------------------------------------------------------------------------
# Writers with each format's quirks, and a range scanner, for tests.
# ---------------------------------------------------------------------------------------------------------
def write_wrl(path, vertices, triangles):
    """A BU-3DFE-like VRML 2.0 file: a Transform holding a textured Shape (fields in the order of the BU-3DFE
    files: coord, coordIndex, texCoord, texCoordIndex), comments, commas, a Viewpoint node, and polygons
    wherever consecutive triangles are the fan of one. read_wrl gives back the same vertices and triangles."""
    vertices = np.asarray(vertices, np.float64)
    name = os.path.splitext(os.path.basename(path))[0]
    low, high = vertices[:, :2].min(axis=0), vertices[:, :2].max(axis=0)
    texture = (vertices[:, :2] - low) / np.where(high > low, high - low, 1)
    polygons = [', '.join(map(str, polygon)) + ', -1,' for polygon in _polygons_of_fans(triangles)]
    lines = ['#VRML V2.0 utf8', '', f'# {name}: written by scan_formats.write_wrl in the layout of BU-3DFE',
             f'DEF _{name} Transform {{', '  children [', '    Shape {',
             f'      appearance Appearance {{ texture ImageTexture {{ url "{name}.bmp" }} }}',
             f'      geometry DEF _{name}-FACES IndexedFaceSet {{', '        ccw TRUE', '        solid FALSE',
             '        coord Coordinate {', '          point [  # x y z in mm',
             *(f'            {x!r} {y!r} {z!r},' for x, y, z in vertices.tolist()), '          ]', '        }',
             '        coordIndex [', *(f'          {polygon}' for polygon in polygons), '        ]',
             '        texCoord TextureCoordinate {', '          point [  # u v',
             *(f'            {u!r} {v!r},' for u, v in texture.tolist()), '          ]', '        }',
             '        texCoordIndex [', *(f'          {polygon}' for polygon in polygons), '        ]',
             '      }', '    }', '  ]', '}',
             'DEF Front_Camera Viewpoint { position 0 0 1000 description "Front" }']
    with open(path, 'w') as file:
        file.write('\n'.join(lines) + '\n')


def _polygons_of_fans(triangles):
    """Lists of vertex indices: one polygon (a, b, c, d, ...) for each run of consecutive triangles (a, b, c),
    (a, c, d), ..., which is what splitting the polygon into a fan gives back."""
    polygons = []
    for a, b, c in np.asarray(triangles, np.int64).reshape(-1, 3).tolist():
        if polygons and polygons[-1][0] == a and polygons[-1][-1] == b:
            polygons[-1].append(c)
        else:
            polygons.append([a, b, c])
    return polygons


def write_bnt(path, grid_xyz, zmin=-1e9):
    """A Bosphorus-like .bnt of an (R, C, 3) grid in mm (NaN = no data, written as zmin in x, y and z): the
    image-file-name field, the five grids (x, y, z and normalised image coordinates) stored upside down."""
    grid = np.asarray(grid_xyz, np.float64)
    rows, cols = grid.shape[:2]
    xyz = np.where(np.isnan(grid).any(axis=2)[..., None], zmin, grid)
    u, v = np.meshgrid(np.linspace(0, 1, cols), np.linspace(0, 1, rows))
    grids = np.stack([xyz[..., 0], xyz[..., 1], xyz[..., 2], u, v])[:, ::-1]
    image_name = (os.path.splitext(os.path.basename(path))[0] + '.png').encode()
    with open(path, 'wb') as file:
        file.write(_BNT_HEADER.pack(rows, cols, zmin, len(image_name)) + image_name)
        file.write(_BNT_COUNT.pack(grids.size) + grids.astype('<f8').tobytes())


def write_abs(path, grid_xyz):
    """An FRGC-like .abs of an (R, C, 3) grid in mm (NaN = no data: flag 0 and -999999.000000 values)."""
    grid = np.asarray(grid_xyz, np.float64)
    rows, cols = grid.shape[:2]
    no_data = np.isnan(grid).any(axis=2).ravel()
    lines = [f'{rows} rows', f'{cols} columns', _ABS_PIXELS_LINE, ' '.join('0' if gone else '1' for gone in no_data)]
    for axis in range(3):
        values = grid[..., axis].ravel().tolist()
        lines.append(' '.join(_ABS_NO_DATA_TEXT if gone else repr(value) for gone, value in zip(no_data, values)))
    with open(path, 'w') as file:
        file.write('\n'.join(lines) + '\n')


def range_grid(vertices, triangles, spacing_mm):
    """(R, C, 3) points in mm where a range scanner looking along -z sees the mesh (vertices in mm), NaN where
    it sees nothing: an orthographic grid over the mesh's x-y extent, `spacing_mm` apart, top row first
    (largest y), left column first (smallest x), each point on the front-most surface."""
    vertices = np.asarray(vertices, np.float64)
    x_low, y_high, z_low = vertices[:, 0].min(), vertices[:, 1].max(), vertices[:, 2].min()
    cols = int((vertices[:, 0].max() - x_low) // spacing_mm) + 1
    rows = int((y_high - vertices[:, 1].min()) // spacing_mm) + 1
    # The rasteriser's background and back plane are depth 0: lift the whole mesh 1 mm above it.
    frame = np.stack([(vertices[:, 0] - x_low) / spacing_mm, (y_high - vertices[:, 1]) / spacing_mm,
                      vertices[:, 2] - z_low + 1], axis=1)
    depth = rasterise_depth(frame, triangles, rows, cols)
    row, col = np.mgrid[:rows, :cols]
    grid = np.stack([x_low + col * spacing_mm, y_high - row * spacing_mm, depth + z_low - 1], axis=2)
    return np.where((depth > 0)[..., None], grid, np.nan)
