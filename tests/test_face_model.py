"""Loading the face model (.npz or an ICT-FaceKit FaceXModel folder) and building faces from weights."""
import json

import numpy as np
import pytest

from faces.model import DEFAULT_FACE_MODEL, FaceModelError, FolderTopology, load_face_model
from fake_face_model import dome_face_arrays, write_fake_npz

# A FaceXModel folder in miniature. Source vertices 0-4 form the group "face" (polygon 0, a pentagon),
# 5-6 a group the model drops (polygon 1), 7-9 the group "teeth" (polygons 2-3; polygon 2 also uses face
# vertex 4, as the real mouth socket uses face vertices).
TINY_TOPOLOGY = FolderTopology(groups=(("face", (0, 4), (0, 0)), ("teeth", (7, 9), (2, 3))), nose_tip=2)
TINY_POLYGONS = [(0, 1, 2, 3, 4), (4, 5, 6), (7, 8, 9, 4), (7, 8, 9)]
KEPT_VERTICES = [0, 1, 2, 3, 4, 7, 8, 9]
# Fans (a, b, c), (a, c, d), ... in the kept vertices' new numbering (source 7, 8, 9 -> 5, 6, 7).
TINY_TRIANGLES = [[0, 1, 2], [0, 2, 3], [0, 3, 4], [5, 6, 7], [5, 7, 4], [5, 6, 7]]
TINY_EXPRESSIONS = ["browDown_L", "jawOpen"]


def write_obj(path, vertices, polygons=()):
    """An OBJ as ICT-FaceKit writes them: a material line, v, vt and f lines with v/vt corners."""
    lines = ["mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {x:.15f} {y:.15f} {z:.15f}" for x, y, z in vertices]
    lines += ["vt 0.5 0.5"]
    lines += ["f " + " ".join(f"{v + 1}/1" for v in polygon) for polygon in polygons]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def face_x_folder(tmp_path):
    """A tiny FaceXModel folder, and the shapes written into it (source numbering, float64 cm)."""
    rng = np.random.default_rng(1)
    neutral = rng.uniform(-5, 5, (10, 3))
    shapes = {name: neutral + rng.normal(0, 0.3, neutral.shape)
              for name in ["identity000", "identity001"] + TINY_EXPRESSIONS + ["cheekRaiser_L"]}
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    write_obj(folder / "generic_neutral_mesh.obj", neutral, TINY_POLYGONS)
    for name, vertices in shapes.items():
        write_obj(folder / f"{name}.obj", vertices, TINY_POLYGONS)
    # The real file also has fitting keys; only "expressions" matters here. cheekRaiser_L.obj is not listed
    # (the public repository holds such extra files) and must be ignored.
    config = {"expressions": TINY_EXPRESSIONS, "fitting_expressions": TINY_EXPRESSIONS, "incompatibilities": []}
    (folder / "vertex_indices.json").write_text(json.dumps(config))
    return folder, neutral, shapes


def test_face_x_model_folder_gives_kept_groups_fan_triangles_and_shape_offsets(face_x_folder):
    folder, neutral, shapes = face_x_folder
    model = load_face_model(folder, topology=TINY_TOPOLOGY)

    np.testing.assert_array_equal(model.neutral, neutral[KEPT_VERTICES].astype(np.float32))
    assert model.triangles.tolist() == TINY_TRIANGLES
    assert model.expression_names == tuple(TINY_EXPRESSIONS)
    assert model.nose_tip == 2
    for mode, name in zip(model.identity_modes, ["identity000", "identity001"]):
        np.testing.assert_array_equal(mode, (shapes[name] - neutral)[KEPT_VERTICES].astype(np.float32))
    for mode, name in zip(model.expression_modes, TINY_EXPRESSIONS):
        np.testing.assert_array_equal(mode, (shapes[name] - neutral)[KEPT_VERTICES].astype(np.float32))


def test_npz_and_folder_holding_the_same_model_load_to_the_same_arrays(face_x_folder, tmp_path):
    folder, _, _ = face_x_folder
    from_folder = load_face_model(folder, topology=TINY_TOPOLOGY)
    landmarks = np.zeros(68, np.int32)
    landmarks[30] = from_folder.nose_tip
    npz = tmp_path / "model.npz"
    np.savez(npz, neutral=from_folder.neutral, identity_modes=from_folder.identity_modes,
             expression_modes=from_folder.expression_modes, expression_names=np.array(TINY_EXPRESSIONS),
             triangles=from_folder.triangles, landmarks_68=landmarks)
    from_npz = load_face_model(npz)
    for field in ("neutral", "identity_modes", "expression_modes", "triangles"):
        np.testing.assert_array_equal(getattr(from_npz, field), getattr(from_folder, field))
    assert (from_npz.expression_names, from_npz.nose_tip) == (from_folder.expression_names, from_folder.nose_tip)


def test_faces_are_neutral_plus_weighted_modes_in_mm(tmp_path):
    arrays = dome_face_arrays()
    model = load_face_model(write_fake_npz(tmp_path / "model.npz"))
    identity = np.array([0.5, -1.0, 0.0, 2.0, 0.25])
    expected_neutral = 10 * (arrays["neutral"] + np.tensordot(identity, arrays["identity_modes"], axes=1))
    neutral = model.neutral_face_mm(identity)
    np.testing.assert_allclose(neutral, expected_neutral, rtol=1e-6, atol=1e-5)

    jaw, brow = model.expression_names.index("jawOpen"), model.expression_names.index("browDown_L")
    face = model.expressive_face_mm(neutral, {"jawOpen": 0.5, "browDown_L": 1.0})
    expected = neutral + 10 * (0.5 * arrays["expression_modes"][jaw] + arrays["expression_modes"][brow])
    np.testing.assert_allclose(face, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(model.expressive_face_mm(neutral, {}), neutral)
    with pytest.raises(KeyError):
        model.expressive_face_mm(neutral, {"noSuchShape": 1.0})


def assert_one_line_error_naming(error, path):
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(FaceModelError) as error:
        load_face_model(tmp_path / "nowhere.npz")
    assert_one_line_error_naming(error, tmp_path / "nowhere.npz")


@pytest.mark.parametrize("content", [b"not a zip file", b""])
def test_unreadable_npz_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(FaceModelError) as error:
        load_face_model(path)
    assert_one_line_error_naming(error, path)


@pytest.mark.parametrize("override", [
    {"triangles": np.array([[0, 1, 99999]], np.int32)},  # a vertex that does not exist
    {"expression_names": np.array(["only_one"])},  # fewer names than modes
    {"neutral": np.zeros((5, 2), np.float32)},
    {"landmarks_68": np.zeros(5, np.int32)},
])
def test_inconsistent_npz_is_a_one_line_error(tmp_path, override):
    path = write_fake_npz(tmp_path / "model.npz", **override)
    with pytest.raises(FaceModelError) as error:
        load_face_model(path)
    assert_one_line_error_naming(error, path)


def test_npz_without_a_required_array_is_a_one_line_error(tmp_path):
    arrays = dome_face_arrays()
    del arrays["identity_modes"]
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    with pytest.raises(FaceModelError) as error:
        load_face_model(path)
    assert_one_line_error_naming(error, path)
    assert "identity_modes" in str(error.value)


@pytest.mark.parametrize("damage, named", [
    (lambda folder: (folder / "vertex_indices.json").unlink(), "vertex_indices.json"),
    (lambda folder: (folder / "vertex_indices.json").write_text("{not json"), "vertex_indices.json"),
    (lambda folder: (folder / "vertex_indices.json").write_text('{"names": []}'), "vertex_indices.json"),
    (lambda folder: (folder / "jawOpen.obj").unlink(), "jawOpen.obj"),
    (lambda folder: (folder / "identity000.obj").unlink(), "FaceXModel"),
    (lambda folder: (folder / "browDown_L.obj").write_text("v 1 2 three\n"), "browDown_L.obj"),
    (lambda folder: (folder / "identity001.obj").write_text("v 1 2 3\n"), "identity001.obj"),
    (lambda folder: (folder / "generic_neutral_mesh.obj").write_text("v 1 2 3\nf 1 2\n"), "generic_neutral_mesh"),
])
def test_malformed_face_x_model_folder_is_a_one_line_error_naming_the_file(face_x_folder, damage, named):
    folder, _, _ = face_x_folder
    damage(folder)
    with pytest.raises(FaceModelError) as error:
        load_face_model(folder, topology=TINY_TOPOLOGY)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_kept_polygon_using_a_dropped_vertex_is_a_one_line_error(face_x_folder):
    folder, _, _ = face_x_folder
    # Polygon 1 uses source vertices 5 and 6, which no kept group holds: not the topology the loader expects.
    wrong = FolderTopology(groups=(("face", (0, 4), (0, 1)), ("teeth", (7, 9), (2, 3))), nose_tip=2)
    with pytest.raises(FaceModelError) as error:
        load_face_model(folder, topology=wrong)
    assert_one_line_error_naming(error, folder / "generic_neutral_mesh.obj")


def test_the_repository_model_loads_with_the_documented_shapes():
    model = load_face_model(DEFAULT_FACE_MODEL)
    assert model.neutral.shape == (22752, 3)
    assert model.identity_modes.shape == (100, 22752, 3)
    assert model.expression_modes.shape == (53, 22752, 3)
    assert model.triangles.shape == (45008, 3)
    assert model.nose_tip == 4857  # the ICT-FaceKit README's Multi-PIE landmark 30
    assert model.neutral[model.nose_tip, 2] > np.percentile(model.neutral[:, 2], 99)  # it sticks out
