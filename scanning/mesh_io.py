"""Reading and writing 3D scans: Wavefront OBJ and PLY (ASCII, binary little- and big-endian); read_scan also
reads the 3D expression databases' formats (BU-3DFE .wrl, Bosphorus .bnt, FRGC .abs) through scan_formats.py.

A scan is its vertices ((N, 3) float64, in the file's own units) and its triangles ((T, 3) int64, 0-based;
polygons are split into fans (a, b, c), (a, c, d), ...). A file without faces is a point cloud: no triangles.
Everything else the formats can hold (normals, colours, texture coordinates, other elements) is skipped.
"""
import os
from dataclasses import dataclass

import numpy as np

SCAN_SUFFIXES = ('.obj', '.ply', '.wrl', '.bnt', '.abs')
DATABASE_SUFFIXES = ('.wrl', '.bnt', '.abs')  # read by scanning/scan_formats.py

_PLY_TYPES = {'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': 'i2', 'int16': 'i2',
              'ushort': 'u2', 'uint16': 'u2', 'int': 'i4', 'int32': 'i4', 'uint': 'u4', 'uint32': 'u4',
              'float': 'f4', 'float32': 'f4', 'double': 'f8', 'float64': 'f8', 'int64': 'i8', 'uint64': 'u8'}
_PLY_BYTE_ORDER = {'binary_little_endian': '<', 'binary_big_endian': '>'}


class MeshError(ValueError):
    """A file that is not a scan this module can read (the message names the file and the problem)."""


@dataclass
class Scan:
    vertices: np.ndarray  # (N, 3) float64
    triangles: np.ndarray  # (T, 3) int64; empty for a point cloud

    @property
    def is_point_cloud(self):
        return len(self.triangles) == 0


def read_scan(path):
    """The Scan in an .obj, .ply, .wrl, .bnt or .abs file; MeshError naming the file when it cannot be read as one."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SCAN_SUFFIXES:
        raise MeshError(f"{path}: not a 3D scan file ({', '.join(SCAN_SUFFIXES)})")
    if suffix in DATABASE_SUFFIXES:
        scan = _read_database_scan(path, suffix)
    else:
        scan = _read_mesh_file(path, suffix)
    _check_scan(path, scan)
    return scan


def _read_database_scan(path, suffix):
    # Imported here, not at the top: scan_formats builds on this module's Scan and MeshError.
    from scanning import scan_formats
    readers = {'.wrl': scan_formats.read_wrl, '.bnt': scan_formats.read_bnt, '.abs': scan_formats.read_abs}
    return readers[suffix](path)


def _read_mesh_file(path, suffix):
    try:
        with open(path, 'rb') as file:
            scan = _read_obj(file) if suffix == '.obj' else _read_ply(file)
    except OSError as error:
        raise MeshError(f"{path}: cannot be read ({error.strerror})") from None
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise MeshError(f"{path}: malformed {suffix[1:].upper()} ({error})") from None
    except StopIteration:
        raise MeshError(f"{path}: malformed PLY (it ends before the rows its header declares)") from None
    return scan


def _check_scan(path, scan):
    if len(scan.vertices) == 0:
        raise MeshError(f"{path}: holds no vertices")
    if not np.isfinite(scan.vertices).all():
        raise MeshError(f"{path}: has vertices that are not finite numbers")
    if len(scan.triangles) and (scan.triangles.min() < 0 or scan.triangles.max() >= len(scan.vertices)):
        raise MeshError(f"{path}: a face uses a vertex that does not exist")


def _fans(polygons):
    """(T, 3) triangles of polygons given as sequences of vertex indices."""
    triangles = [(polygon[0], polygon[k], polygon[k + 1]) for polygon in polygons for k in range(1, len(polygon) - 1)]
    return np.array(triangles, np.int64).reshape(-1, 3)


def _read_obj(file):
    vertices, polygons = [], []
    for line in file.read().decode('utf-8', errors='replace').splitlines():
        if line.startswith('v '):
            vertices.append([float(value) for value in line.split()[1:4]])
        elif line.startswith('f '):
            # A corner is "v", "v/vt", "v//vn" or "v/vt/vn"; v is 1-based, or negative = counted from the end.
            corners = [int(corner.split('/')[0]) for corner in line.split()[1:]]
            if 0 in corners:
                raise ValueError("a face uses vertex 0 (OBJ counts vertices from 1)")
            polygons.append([corner - 1 if corner > 0 else len(vertices) + corner for corner in corners])
    if any(len(vertex) != 3 for vertex in vertices):
        raise ValueError("a vertex line without three coordinates")
    return Scan(np.array(vertices, np.float64).reshape(-1, 3), _fans(polygons))


def _read_ply_header(file):
    """(format, [(element name, count, [(property name, type or ('list', count type, item type))])])."""
    if file.readline().strip() != b'ply':
        raise ValueError("does not start with 'ply'")
    form, elements = None, []
    while True:
        line = file.readline()
        if not line:
            raise ValueError("the header has no end_header")
        words = line.decode('ascii').split()
        if not words or words[0] in ('comment', 'obj_info'):
            continue
        if words[0] == 'end_header':
            break
        if words[0] == 'format':
            form = words[1]
        elif words[0] == 'element':
            if int(words[2]) < 0:
                raise ValueError(f"element {words[1]} has {words[2]} rows")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == 'property':
            if not elements:
                raise ValueError("a property before any element")
            elements[-1][2].append((words[-1], _property_kind(words)))
    if form not in ('ascii', *_PLY_BYTE_ORDER):
        raise ValueError(f"format {form} is none of ascii, binary_little_endian, binary_big_endian")
    return form, elements


def _property_kind(words):
    """A property's type, or ('list', count type, item type); ValueError for a type PLY does not have."""
    names = words[2:4] if words[1] == 'list' else words[1:2]
    unknown = [name for name in names if name not in _PLY_TYPES]
    if unknown:
        raise ValueError(f"property type {unknown[0]} is not a PLY type")
    return ('list', *(_PLY_TYPES[name] for name in names)) if words[1] == 'list' else _PLY_TYPES[names[0]]


def _least_row_size(properties, ascii_body):
    """The fewest bytes (ASCII: words) a row of these properties takes: a list at least its count."""
    if ascii_body:
        return len(properties)
    return sum(np.dtype(kind[1] if isinstance(kind, tuple) else kind).itemsize for _, kind in properties)


def _check_declared_counts(elements, available, ascii_body):
    """Refuse a header declaring more rows than the body can hold, before anything is allocated for them
    (a header declaring 10^10 vertices would otherwise ask for 120 GB)."""
    needed = sum(count * _least_row_size(properties, ascii_body) for _, count, properties in elements)
    if needed > available:
        unit = 'values' if ascii_body else 'bytes'
        raise ValueError(f"the header declares rows of at least {needed} {unit}, the file holds {available}")


def _read_ply(file):
    form, elements = _read_ply_header(file)
    read_element = _read_ascii_element if form == 'ascii' else _read_binary_element
    if form == 'ascii':
        words = file.read().split()
        _check_declared_counts(elements, len(words), ascii_body=True)
        words = iter(words)
    else:
        _check_declared_counts(elements, os.fstat(file.fileno()).st_size - file.tell(), ascii_body=False)
    vertices, triangles = None, np.zeros((0, 3), np.int64)
    for name, count, properties in elements:
        values = read_element(words if form == 'ascii' else file, count, properties, _PLY_BYTE_ORDER.get(form))
        if name == 'vertex':
            vertices = _vertex_columns(values)
        elif name == 'face':
            triangles = _fans(_face_lists(values, properties))
    if vertices is None:
        raise ValueError("no vertex element")
    return Scan(vertices, triangles)


def _vertex_columns(values):
    missing = [axis for axis in 'xyz' if axis not in values]
    if missing:
        raise ValueError(f"the vertex element has no {missing[0]}")
    return np.stack([values['x'], values['y'], values['z']], axis=1).astype(np.float64)


def _face_lists(values, properties):
    name = next((name for name in ('vertex_indices', 'vertex_index') if name in values), None)
    if name is None:
        raise ValueError("the face element has no vertex_indices")
    if not isinstance(dict(properties)[name], tuple):
        raise ValueError(f"the face property {name} is not a list")
    return values[name]


def _read_ascii_element(words, count, properties, _):
    """{property: values} of `count` rows from the ASCII body's word stream."""
    columns = {name: [] for name, _ in properties}
    for _ in range(count):
        for name, kind in properties:
            if isinstance(kind, tuple):
                length = int(next(words))
                columns[name].append([int(next(words)) for _ in range(length)])
            else:
                columns[name].append(float(next(words)))
    return {name: columns[name] if isinstance(kind, tuple) else np.array(columns[name]) for name, kind in properties}


def _read_binary_element(file, count, properties, byte_order):
    """{property: values} of `count` rows of a binary body. Rows of fixed size are read in one go; elements
    with lists (faces) are fast too when every list has the same length, the common case of triangle meshes."""
    lists = [kind for _, kind in properties if isinstance(kind, tuple)]
    if not lists:
        dtype = np.dtype([(name, byte_order + kind) for name, kind in properties])
        rows = np.frombuffer(file.read(dtype.itemsize * count), dtype, count)
        return {name: rows[name] for name in dtype.names}
    if len(properties) == 1:
        _, count_type, item_type = lists[0]
        return {properties[0][0]: _read_binary_lists(file, count, byte_order + count_type, byte_order + item_type)}
    raise ValueError("face elements with properties besides the vertex list are not supported")


def _read_binary_lists(file, count, count_type, item_type):
    """`count` lists of indices; triangles-only files are read as one array. Nothing is read (read(n)
    allocates n bytes first) beyond what the file holds: a list length of 2^31 asks for no memory."""
    if count == 0:
        return []
    start, end = file.tell(), os.fstat(file.fileno()).st_size
    first_length = _list_length(file, count_type, item_type, end)
    file.seek(start)
    row = np.dtype([('n', count_type), ('items', item_type, (first_length,))])
    if row.itemsize * count <= end - start:
        rows = np.frombuffer(file.read(row.itemsize * count), row, count)
        if (rows['n'] == first_length).all():
            return rows['items'].astype(np.int64)
        file.seek(start)  # mixed polygon sizes: one list at a time
    lists = []
    for _ in range(count):
        length = _list_length(file, count_type, item_type, end)
        lists.append(np.frombuffer(file.read(np.dtype(item_type).itemsize * length), item_type).astype(np.int64))
    return lists


def _list_length(file, count_type, item_type, end):
    """The next list's length, read from the file; ValueError when its items would run past `end`."""
    length = int(np.frombuffer(file.read(np.dtype(count_type).itemsize), count_type)[0])
    if not 0 <= length * np.dtype(item_type).itemsize <= end - file.tell():
        raise ValueError(f"a face list of {length} items runs past the end of the file")
    return length


def write_obj(path, vertices, triangles=()):
    """Vertices (and triangles, 0-based) as a Wavefront OBJ."""
    lines = [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in np.asarray(vertices, np.float64)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in np.asarray(triangles, np.int64).reshape(-1, 3)]
    with open(path, 'w') as file:
        file.write('\n'.join(lines) + '\n')


def write_ply(path, vertices, triangles=(), binary=True):
    """Vertices (and triangles) as a PLY file: binary little-endian (float32 coordinates, int32 indices) or ASCII."""
    vertices = np.asarray(vertices, np.float64)
    triangles = np.asarray(triangles, np.int64).reshape(-1, 3)
    header = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              + (f"element face {len(triangles)}\nproperty list uchar int vertex_indices\n" if len(triangles) else '')
              + "end_header\n")
    with open(path, 'wb') as file:
        file.write(header.encode('ascii'))
        if binary:
            file.write(vertices.astype('<f4').tobytes())
            faces = np.zeros(len(triangles), [('n', 'u1'), ('items', '<i4', (3,))])
            faces['n'], faces['items'] = 3, triangles
            file.write(faces.tobytes())
        else:
            body = [f"{x:.6g} {y:.6g} {z:.6g}" for x, y, z in vertices] + [f"3 {a} {b} {c}" for a, b, c in triangles]
            file.write(('\n'.join(body) + '\n').encode('ascii'))


def is_scan_file(path):
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in SCAN_SUFFIXES
