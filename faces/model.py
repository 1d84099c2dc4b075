"""The ICT Face Model Light: loading it into one small structure, and building faces from weights.

Two sources hold the same model (USC Institute for Creative Technologies, ICT-FaceKit, MIT licence):
  * the compact `.npz` described in ../shared/facemodel/README.md (the geometry a frontal depth camera sees),
  * the `FaceXModel/` folder of a clone of the public ICT-FaceKit repository, which this module reduces to
    the same arrays: the same groups of vertices and polygons, in the same order, polygons split into
    triangles as fans (a, b, c), (a, c, d), ...

A face is neutral + sum_i a_i * identity_modes[i] + sum_j e_j * expression_modes[j], in centimetres.
"""
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from support.paths import REPOSITORY

# The copy of the ICT Face Model Light this repository carries (facemodel/, MIT licence beside it).
DEFAULT_FACE_MODEL = Path(REPOSITORY) / "facemodel" / "ict_face_model_light.npz"
MM_PER_MODEL_UNIT = 10.0  # the model is in centimetres
NOSE_TIP_LANDMARK = 30  # Multi-PIE 68-point landmark number of the nose tip


class FaceModelError(ValueError):
    """A face model file or folder that is missing or malformed (the message names it, on one line)."""


@dataclass(frozen=True)
class FaceModel:
    neutral: np.ndarray  # (V, 3) float32, cm
    identity_modes: np.ndarray  # (I, V, 3) float32, cm per unit weight
    expression_modes: np.ndarray  # (E, V, 3) float32, cm at weight 1
    expression_names: tuple  # E names, same order as expression_modes
    triangles: np.ndarray  # (T, 3) int32 vertex indices
    nose_tip: int  # vertex index of the nose tip (Multi-PIE landmark 30)

    def neutral_face_mm(self, identity_weights: Sequence[float]) -> np.ndarray:
        """(V, 3) float64 vertices in mm of the identity with these weights, without expression."""
        weights = np.asarray(identity_weights, np.float64)
        # einsum, not a BLAS product: its result does not depend on how many threads BLAS uses, which keeps
        # the rendered files byte-identical whatever the number of worker processes.
        offsets = np.einsum("i,ijk->jk", weights, self.identity_modes)
        return MM_PER_MODEL_UNIT * (self.neutral + offsets)

    def expressive_face_mm(self, neutral_face_mm: np.ndarray, expression_weights: Mapping[str, float]):
        """(V, 3) float64 vertices in mm: a neutral face (from neutral_face_mm) with expression weights by name.

        Shapes not named have weight 0. Raises KeyError for a name the model does not have.
        """
        index = {name: i for i, name in enumerate(self.expression_names)}
        chosen = [index[name] for name in expression_weights]
        weights = np.array(list(expression_weights.values()), np.float64)
        offsets = np.einsum("i,ijk->jk", weights, self.expression_modes[chosen])
        return neutral_face_mm + MM_PER_MODEL_UNIT * offsets


# ---------------------------------------------------------------------------------------------------------
# The ICT-FaceKit FaceXModel folder.
#
# Its vertex_indices.json lists the expression shapes (key "expressions", in the order of the .npz) but not
# the geometry groups: those are the vertex and polygon index ranges of the table "Face Model Topology" in
# the ICT-FaceKit README, inclusive at both ends, reproduced here for the groups the .npz keeps.
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderTopology:
    groups: tuple  # (name, (first vertex, last vertex), (first polygon, last polygon)), ranges inclusive
    nose_tip: int  # source vertex index of Multi-PIE landmark 30


ICT_FACE_MODEL_LIGHT_TOPOLOGY = FolderTopology(
    groups=(
        ("face", (0, 9408), (0, 9229)),
        ("mouth_socket", (11248, 13293), (11144, 13225)),
        ("eye_socket_left", (13294, 13677), (13226, 13629)),
        ("eye_socket_right", (13678, 14061), (13630, 14033)),
        ("gums_tongue", (14062, 17038), (14034, 17005)),
        ("teeth", (17039, 21450), (17006, 21495)),
        ("eyeball_left", (21451, 23020), (21496, 23093)),
        ("eyeball_right", (23021, 24590), (23094, 24691)),
    ),
    nose_tip=4857,  # README, "Multi-PIE 68 point facial landmarks indices", entry 30
)


def load_face_model(path, topology: FolderTopology = ICT_FACE_MODEL_LIGHT_TOPOLOGY) -> FaceModel:
    """Load the model from the compact .npz file or from an ICT-FaceKit FaceXModel folder.

    `topology` applies to folders only (tests pass a tiny one). Raises FaceModelError naming the problem.
    """
    path = Path(path)
    if path.is_dir():
        return _load_face_x_model_folder(path, topology)
    if not path.exists():
        raise FaceModelError(f"{path}: no such face model file or FaceXModel folder")
    return _load_npz(path)


def _load_npz(path: Path) -> FaceModel:
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise FaceModelError(f"{path}: not a readable .npz face model ({error})") from None
    required = ("neutral", "identity_modes", "expression_modes", "expression_names", "triangles", "landmarks_68")
    missing = [key for key in required if key not in arrays]
    if missing:
        raise FaceModelError(f"{path}: not a face model .npz, it lacks {', '.join(missing)}")
    landmarks = arrays["landmarks_68"]
    if landmarks.shape != (68,):
        raise FaceModelError(f"{path}: landmarks_68 has shape {landmarks.shape}, expected (68,)")
    model = FaceModel(
        neutral=arrays["neutral"],
        identity_modes=arrays["identity_modes"],
        expression_modes=arrays["expression_modes"],
        expression_names=tuple(str(name) for name in arrays["expression_names"]),
        triangles=arrays["triangles"],
        nose_tip=int(landmarks[NOSE_TIP_LANDMARK]),
    )
    return _checked(model, path)


def _load_face_x_model_folder(folder: Path, topology: FolderTopology) -> FaceModel:
    expression_names = _read_expression_names(folder / "vertex_indices.json")
    neutral_path = folder / "generic_neutral_mesh.obj"
    source_neutral, polygons = _read_obj(neutral_path, with_polygons=True)
    kept_vertices = np.concatenate([np.arange(first, last + 1) for _, (first, last), _ in topology.groups])
    if kept_vertices.max() >= len(source_neutral):
        raise FaceModelError(f"{neutral_path}: has {len(source_neutral)} vertices, too few for the ICT topology")
    new_index = np.full(len(source_neutral), -1)
    new_index[kept_vertices] = np.arange(len(kept_vertices))
    triangles = new_index[_kept_triangles(polygons, topology, neutral_path)]
    if (triangles < 0).any():
        raise FaceModelError(f"{neutral_path}: a kept polygon uses a vertex outside the kept groups")

    def shape_modes(paths):
        """Per-vertex offsets of each shape from the neutral mesh, on the kept vertices."""
        modes = np.empty((len(paths), len(kept_vertices), 3), np.float32)
        for mode, shape_path in zip(modes, paths):
            shape, _ = _read_obj(shape_path, with_polygons=False)
            if shape.shape != source_neutral.shape:
                raise FaceModelError(f"{shape_path}: has {len(shape)} vertices, the neutral mesh {len(source_neutral)}")
            mode[:] = (shape - source_neutral)[kept_vertices]
        return modes

    identity_paths = _identity_paths(folder)
    model = FaceModel(
        neutral=source_neutral[kept_vertices].astype(np.float32),
        identity_modes=shape_modes(identity_paths),
        expression_modes=shape_modes([folder / f"{name}.obj" for name in expression_names]),
        expression_names=tuple(expression_names),
        triangles=triangles.astype(np.int32),
        nose_tip=int(new_index[topology.nose_tip]),
    )
    return _checked(model, folder)


def _read_expression_names(json_path: Path):
    try:
        config = json.loads(json_path.read_text())
    except OSError as error:
        raise FaceModelError(f"{json_path}: cannot be read ({error.strerror})") from None
    except ValueError as error:
        raise FaceModelError(f"{json_path}: not valid JSON ({error})") from None
    names = config.get("expressions") if isinstance(config, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise FaceModelError(f'{json_path}: has no "expressions" list of shape names')
    return names


def _identity_paths(folder: Path):
    """identity000.obj, identity001.obj, ... up to the first number missing (the source has 100)."""
    paths = []
    while (folder / f"identity{len(paths):03d}.obj").is_file():
        paths.append(folder / f"identity{len(paths):03d}.obj")
    if not paths:
        raise FaceModelError(f"{folder}: has no identity000.obj, not an ICT-FaceKit FaceXModel folder")
    return paths


def _kept_triangles(polygons, topology: FolderTopology, neutral_path: Path) -> np.ndarray:
    """(T, 3) source vertex indices: the polygons of the kept groups, group by group, split into fans."""
    triangles = []
    for name, _, (first, last) in topology.groups:
        if last >= len(polygons):
            raise FaceModelError(f"{neutral_path}: has {len(polygons)} polygons, too few for group {name}")
        for polygon in polygons[first:last + 1]:
            triangles.extend((polygon[0], polygon[k], polygon[k + 1]) for k in range(1, len(polygon) - 1))
    return np.array(triangles, np.int64).reshape(-1, 3)


def _read_obj(path: Path, with_polygons: bool):
    """(vertices (N, 3) float64, polygons as lists of 0-based vertex indices, or None) of a Wavefront OBJ."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise FaceModelError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        vertices = np.array([line.split()[1:4] for line in lines if line.startswith("v ")], np.float64)
        # A face corner is "v", "v/vt", "v//vn" or "v/vt/vn" with 1-based v.
        polygons = [[int(corner.split("/")[0]) - 1 for corner in line.split()[1:]]
                    for line in lines if line.startswith("f ")] if with_polygons else None
    except ValueError as error:
        raise FaceModelError(f"{path}: malformed OBJ ({error})") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise FaceModelError(f"{path}: malformed OBJ, no vertex lines of three coordinates")
    if with_polygons and any(len(polygon) < 3 or min(polygon) < 0 for polygon in polygons):
        raise FaceModelError(f"{path}: malformed OBJ, a face with fewer than 3 corners or a bad index")
    return vertices, polygons


def _checked(model: FaceModel, path: Path) -> FaceModel:
    """The model, once its arrays agree with one another; FaceModelError naming `path` otherwise."""
    vertex_count = model.neutral.shape[0] if model.neutral.ndim == 2 else -1
    problems = []
    if model.neutral.shape != (vertex_count, 3):
        problems.append(f"neutral has shape {model.neutral.shape}")
    if model.identity_modes.ndim != 3 or model.identity_modes.shape[1:] != (vertex_count, 3):
        problems.append(f"identity_modes has shape {model.identity_modes.shape}")
    if model.expression_modes.shape != (len(model.expression_names), vertex_count, 3):
        problems.append(f"expression_modes has shape {model.expression_modes.shape} "
                        f"for {len(model.expression_names)} expression names")
    if model.triangles.ndim != 2 or model.triangles.shape[1:] != (3,) or len(model.triangles) == 0:
        problems.append(f"triangles has shape {model.triangles.shape}")
    elif not np.issubdtype(model.triangles.dtype, np.integer):
        problems.append(f"triangles are {model.triangles.dtype}, not integers")
    elif model.triangles.min() < 0 or model.triangles.max() >= vertex_count:
        problems.append("triangles index vertices that do not exist")
    if not 0 <= model.nose_tip < vertex_count:
        problems.append(f"the nose tip vertex {model.nose_tip} does not exist")
    if problems:
        raise FaceModelError(f"{path}: inconsistent face model: {'; '.join(problems)}")
    return model
