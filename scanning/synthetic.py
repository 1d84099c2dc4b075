"""Synthetic 3D scans with a known answer: faces of the face model that are not in the committed data (a new
identity drawn from its own seed), with an expression drawn as the test split has them, seen by a frontal scanner
after being turned and shifted, in some units, with defects (noise, holes, hair and shoulders, coarse sampling),
written as OBJ or PLY. Their answer is the exact convention-v1 render of the same face in the subject's neutral
frame (depth.rasterise.render_depth_mm).
"""
import itertools
import os
from dataclasses import dataclass

import numpy as np

from depth.rasterise import rasterise_depth, render_depth_mm
from faces.expressions import (INTENSITIES, MIXTURES_PER_SUBJECT, PROTOTYPES, mixture_actions, prototype_weights,
                               random_mixture_weights)
from faces.generator import rotated_about
from scanning.alignment import MM_PER_SCAN_UNIT
from scanning.mesh_io import Scan, write_obj, write_ply

POSE_GRID = {'yaw': (-25, 0, 25), 'pitch': (-12, 0, 12), 'roll': (-12, 0, 12)}  # degrees: the promised ranges
KINDS, UNITS = ('mesh', 'scanner', 'cloud'), ('m', 'cm', 'mm')


def new_subject(model, rng, expression_weights=None):
    """(neutral face, expressive face) in mm of a new identity with these expression weights (by shape name)."""
    neutral = model.neutral_face_mm(rng.standard_normal(len(model.identity_modes)))
    return neutral, model.expressive_face_mm(neutral, expression_weights or {})


def prototype(model, code, intensity=1.0):
    """The expression weights of a PROTOTYPES code (None: neutral)."""
    return prototype_weights(code, intensity, model.expression_names) if code else {}


def protocol_expression(model, rng):
    """(label, expression weights) of one of the test split's renders of a subject, each equally likely: the
    neutral face (NE00), a prototype at one of its four intensities (e.g. SU04) or a random mixture (MX01..06),
    so that the scans' expressions are distributed as the test split's."""
    prototypes = len(PROTOTYPES) * len(INTENSITIES)
    choice = int(rng.integers(1 + prototypes + MIXTURES_PER_SUBJECT))
    if choice == 0:
        return 'NE00', {}
    if choice > prototypes:
        names = model.expression_names
        return f'MX{choice - prototypes:02d}', random_mixture_weights(rng, mixture_actions(names), names)
    code, level = list(PROTOTYPES)[(choice - 1) // len(INTENSITIES)], (choice - 1) % len(INTENSITIES) + 1
    return f'{code}{level:02d}', prototype(model, code, INTENSITIES[level - 1])


def exact_depth_mm(model, neutral, face):
    """The answer: the face rendered under the convention, framed on its neutral nose tip."""
    return render_depth_mm(face, neutral[model.nose_tip], model.triangles)


def posed(face, centre, yaw=0.0, pitch=0.0, roll=0.0, shift=(0.0, 0.0, 0.0)):
    """The face turned about `centre` (make_dataset.rotated_about) and shifted (mm)."""
    return rotated_about(face, centre, yaw, pitch, roll) + np.asarray(shift, np.float64)


def scanner_view(face, triangles, spacing_mm=1.0, max_edge_mm=10.0):
    """What a frontal scanner sees of a mesh: a grid of points spacing_mm apart on its front-most surface
    (x, y, z in mm), and the grid's triangles where the surface is continuous (no edge longer than max_edge_mm)."""
    low, high = face[:, :2].min(axis=0), face[:, :2].max(axis=0)
    columns, rows = (np.ceil((high - low) / spacing_mm).astype(int) + 1)
    frame = np.column_stack([(face[:, 0] - low[0]) / spacing_mm, (high[1] - face[:, 1]) / spacing_mm,
                             face[:, 2] - face[:, 2].min() + 1.0])
    depth = rasterise_depth(frame, triangles, rows, columns)
    row, column = np.mgrid[:rows, :columns]
    points = np.column_stack([low[0] + column.ravel() * spacing_mm, high[1] - row.ravel() * spacing_mm,
                              depth.ravel() + face[:, 2].min() - 1.0])
    seen = depth.ravel() > 0
    index = np.full(rows * columns, -1)
    index[seen] = np.arange(seen.sum())
    grid = index.reshape(rows, columns)
    corners = [grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]]
    halves = ((corners[0], corners[2], corners[1]), (corners[1], corners[2], corners[3]))
    triangles = np.concatenate([np.column_stack([a.ravel(), b.ravel(), c.ravel()]) for a, b, c in halves])
    triangles = triangles[(triangles >= 0).all(axis=1)]
    vertices = points[seen]
    edges = np.linalg.norm(vertices[triangles] - vertices[np.roll(triangles, 1, axis=1)], axis=2)
    return vertices, triangles[edges.max(axis=1) <= max_edge_mm]


def kept_part(vertices, triangles, kept):
    """The mesh of the kept vertices and the triangles whose corners are all kept, renumbered."""
    new_index = np.cumsum(kept) - 1
    return vertices[kept], new_index[triangles[kept[triangles].all(axis=1)]]


def with_holes(vertices, triangles, rng, count=3, radius_mm=6.0):
    """The mesh without the vertices (and their triangles) within radius_mm of `count` random vertices."""
    centres = vertices[rng.choice(len(vertices), count, replace=False)]
    kept = (np.linalg.norm(vertices[:, None] - centres[None], axis=2) > radius_mm).all(axis=1)
    return kept_part(vertices, triangles, kept)


def hair_and_shoulders(face, rng, count=4000):
    """Points that are no face: a cap of hair above and behind the forehead and shoulders below the chin."""
    top, bottom = face[:, 1].max(), face[:, 1].min()
    centre_x, back = face[:, 0].mean(), face[:, 2].min()
    angle = rng.uniform(0, np.pi, count // 2)
    hair = np.column_stack([centre_x + 90 * np.cos(angle), top + 20 * np.sin(angle) + rng.normal(0, 3, count // 2),
                            back + rng.uniform(0, 80, count // 2)])
    shoulders = np.column_stack([centre_x + rng.uniform(-200, 200, count // 2),
                                 bottom - rng.uniform(20, 80, count // 2), back + rng.uniform(-20, 60, count // 2)])
    return np.concatenate([hair, shoulders])


def two_view_scan(face, triangles, spacing_mm=1.25, view_yaw_deg=30.0):
    """What a two-view scanner (cameras 30 degrees left and right, as stereo face scanners have) sees of a mesh:
    the two grids of scanner_view merged, as one mesh of two overlapping sheets."""
    centre = face.mean(axis=0)
    vertices, sheets = [], []
    for yaw in (-view_yaw_deg, view_yaw_deg):
        seen, grid_triangles = scanner_view(rotated_about(face, centre, yaw, 0, 0), triangles, spacing_mm)
        sheets.append(grid_triangles + sum(len(v) for v in vertices))
        vertices.append(rotated_about(seen, centre, -yaw, 0, 0))
    return np.concatenate(vertices), np.concatenate(sheets)


def synthetic_scan(model, neutral, face, rng, kind, unit, pose, shift_mm=1000.0, noise_mm=0.2):
    """A Scan of the face turned by `pose` (yaw, pitch, roll in degrees about the neutral nose tip), shifted by
    up to shift_mm along each axis, in `unit`, with Gaussian noise. kind: 'mesh' (the model's own mesh, with
    three holes), 'scanner' (a two-view scanner's mesh, two_view_scan, with hair and shoulders as loose
    points) or 'cloud' (the same scan's points only)."""
    turned = posed(face, neutral[model.nose_tip], **pose, shift=rng.uniform(-shift_mm, shift_mm, 3))
    if kind == 'mesh':
        vertices, triangles = with_holes(turned, model.triangles, rng)
    else:
        vertices, triangles = two_view_scan(turned, model.triangles)
        vertices = np.concatenate([vertices, hair_and_shoulders(turned, rng)])
        if kind == 'cloud':
            triangles = np.zeros((0, 3), np.int64)
    vertices = vertices + rng.normal(0, noise_mm, vertices.shape)
    return Scan(vertices / MM_PER_SCAN_UNIT[unit], triangles)


def not_a_face(rng, count=20000):
    """A point cloud of a ball of a head's size: round and smooth, but no face."""
    direction = rng.normal(size=(count, 3))
    return Scan(100 * direction / np.linalg.norm(direction, axis=1, keepdims=True), np.zeros((0, 3), np.int64))


@dataclass
class BenchmarkScan:
    number: int
    name: str  # NNNN_CCLL.png: number, expression code and level as the dataset names them
    pose: dict  # yaw, pitch, roll in degrees
    kind: str
    unit: str
    neutral: np.ndarray  # the subject's neutral face (mm)
    face: np.ndarray  # the face scanned (mm)
    scan: Scan


def benchmark_scans(model, seed):
    """The benchmark's synthetic scans, one per pose of POSE_GRID, in order (a new identity and expression each;
    kind and units vary): the same seed gives the same scans."""
    rng = np.random.default_rng(seed)
    for number, angles in enumerate(itertools.product(*POSE_GRID.values())):
        pose = dict(zip(POSE_GRID, angles))
        kind, unit = KINDS[number % len(KINDS)], UNITS[(number // 3) % len(UNITS)]
        label, weights = protocol_expression(model, rng)
        neutral, face = new_subject(model, rng, weights)
        scan = synthetic_scan(model, neutral, face, rng, kind, unit, pose)
        yield BenchmarkScan(number, f'{number:04d}_{label}.png', pose, kind, unit, neutral, face, scan)


def scan_file(item, folder):
    """Write the scan as a user's file would hold it: the model's mesh as OBJ, the scanner's mesh as ASCII PLY,
    its point cloud as binary PLY (coordinates to 6 significant digits, or float32)."""
    stem = os.path.join(folder, os.path.splitext(item.name)[0])
    if item.kind == 'mesh':
        write_obj(stem + '.obj', item.scan.vertices, item.scan.triangles)
        return stem + '.obj'
    write_ply(stem + '.ply', item.scan.vertices, item.scan.triangles, binary=item.kind == 'cloud')
    return stem + '.ply'


# The committed sample scan (samples/scan_surprise.ply, README's Quick start): an identity of its own seed (no
# dataset or benchmark draws from it), surprised at 3 of 4, turned, as one frontal scanner sees it.
SAMPLE_SEED = 424242
SAMPLE_POSE = dict(yaw=15, pitch=-8)
SAMPLE_SPACING_MM = 2.0   # a coarse grid keeps the file near 450 kB
SAMPLE_FILE = os.path.join('samples', 'scan_surprise.ply')


def sample_scan(model):
    """(neutral face, expressive face, Scan in mm) of the committed sample scan; the same every time."""
    rng = np.random.default_rng(SAMPLE_SEED)
    neutral, face = new_subject(model, rng, prototype(model, 'SU', INTENSITIES[2]))
    vertices, triangles = scanner_view(posed(face, neutral[model.nose_tip], **SAMPLE_POSE), model.triangles,
                                       SAMPLE_SPACING_MM)
    # Rounded to 0.1 mm, so that the last bits of a machine's floating-point sums do not change the file.
    return neutral, face, Scan(np.round(vertices + rng.normal(0, 0.2, vertices.shape), 1), triangles)


def write_sample_scan(model, path):
    """Write the sample scan as a binary PLY (see sample_scan)."""
    scan = sample_scan(model)[2]
    write_ply(path, scan.vertices, scan.triangles)
