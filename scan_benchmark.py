"""Synthetic 3D scans with a known answer, and the measurement of --mode prepare (and prepare -> infer) on them.

A synthetic scan is a face of the face model that is not in the committed data (a new identity drawn from
its own seed), neutral or expressive, seen by a frontal scanner after being turned and shifted, in some
units, with defects (noise, holes, hair and shoulders, coarse sampling), written as OBJ or PLY. Its answer
is the exact convention-v1 render of the same face in the subject's neutral frame (make_dataset).

    python scan_benchmark.py                       # the full pose grid, then prepare -> infer with the
                                                   # shipped model (checkpoints/remove)
    python scan_benchmark.py --checkpoint PATH --output results/scan_benchmark.json
"""
import numpy as np

from make_dataset import PROTOTYPES, prototype_weights, render_depth_mm, rotated_about
from rasterise import rasterise_depth


def new_subject(model, rng, expression=None, intensity=1.0):
    """(neutral face, expressive face) in mm of a new identity; expression a PROTOTYPES code or None."""
    neutral = model.neutral_face_mm(rng.standard_normal(len(model.identity_modes)))
    weights = prototype_weights(expression, intensity, model.expression_names) if expression else {}
    return neutral, model.expressive_face_mm(neutral, weights)


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
    triangles = np.concatenate([np.column_stack([a.ravel(), b.ravel(), c.ravel()])
                                for a, b, c in ((corners[0], corners[2], corners[1]), (corners[1], corners[2], corners[3]))])
    triangles = triangles[(triangles >= 0).all(axis=1)]
    vertices = points[seen]
    edges = np.linalg.norm(vertices[triangles] - vertices[np.roll(triangles, 1, axis=1)], axis=2)
    return vertices, triangles[edges.max(axis=1) <= max_edge_mm]
