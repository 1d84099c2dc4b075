"""The dataset generator: the convention on the real face model, the command line, determinism."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fake_face_model
import make_dataset
from conftest import dead_pid
from depth.convention import IMAGE_CENTRE
from depth.png import read_depth_png
from depth.rasterise import render_depth_mm
from faces.generator import plan_dataset, render_subject, subjects_from_description
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from fake_face_model import write_fake_npz

SCRIPT = Path(make_dataset.__file__)
TINY_COUNTS = ["--train-subjects", "2", "--valid-subjects", "1", "--test-subjects", "1",
               "--mixtures-per-subject", "1"]


def run_generator(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)], capture_output=True, text=True)


def folder_contents(folder):
    """{relative path: bytes} of every file under folder."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------------------------------------------------
# The convention, on the real model.
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_model():
    return load_face_model(DEFAULT_FACE_MODEL)


@pytest.mark.parametrize("identity_seed", [None, 1, 2, 3])
def test_neutral_nose_tip_lands_at_the_image_centre_120_mm_above_the_back_plane(real_model, identity_seed):
    identity = np.zeros(100) if identity_seed is None else np.random.default_rng(identity_seed).standard_normal(100)
    neutral = real_model.neutral_face_mm(identity)
    depth = render_depth_mm(neutral, neutral[real_model.nose_tip], real_model.triangles)
    assert depth.shape == (128, 128)
    # The nose tip is at (63.5, 63.5): the centres of the four central pixels lie within one pixel of it.
    central = depth[63:65, 63:65]
    assert (abs(central - 120.0) <= 1.0).all(), central
    assert depth.max() < 125.0  # nothing stands far in front of the nose tip


def test_neutral_input_equals_its_target_exactly(real_model, tmp_path):
    options = make_dataset.parse_arguments(["--train-subjects", "1", "--valid-subjects", "0", "--test-subjects",
                                            "0", "--mixtures-per-subject", "0"])
    [subject] = plan_dataset(options, real_model)
    for kind in ("inputs", "targets"):
        (tmp_path / kind / "train").mkdir(parents=True)
    render_subject(real_model, subject, tmp_path, depth_noise_mm=0.0)
    neutral_input = tmp_path / "inputs" / "train" / "0000_NE00.png"
    assert neutral_input.read_bytes() == (tmp_path / "targets" / "train" / "0000_NE00.png").read_bytes()
    assert neutral_input.read_bytes() != (tmp_path / "inputs" / "train" / "0000_HA04.png").read_bytes()


def test_jaw_open_changes_the_face_mostly_below_the_nose(real_model):
    neutral = real_model.neutral_face_mm(np.random.default_rng(5).standard_normal(100))
    nose_tip = neutral[real_model.nose_tip]
    jaw_open = real_model.expressive_face_mm(neutral, {"jawOpen": 1.0})
    change = abs(render_depth_mm(jaw_open, nose_tip, real_model.triangles)
                 - render_depth_mm(neutral, nose_tip, real_model.triangles))
    below_nose = np.arange(128) > IMAGE_CENTRE
    assert (change > 1.0).sum() > 1000
    # The jaw also pulls the face's lateral edges near the ears a little, above the nose: "mostly" is 90 %.
    assert change[below_nose].sum() > 0.9 * change.sum()


# ---------------------------------------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------------------------------------
def assert_one_line_error(result, *mentions):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("make_dataset.py: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for mention in mentions:
        assert str(mention) in lines[0]


def test_missing_face_model_is_one_line_and_writes_nothing(tmp_path):
    result = run_generator("--face-model", tmp_path / "nowhere.npz", "--output", tmp_path / "out")
    assert_one_line_error(result, tmp_path / "nowhere.npz")
    assert list(tmp_path.iterdir()) == []


def test_malformed_face_model_is_one_line(tmp_path):
    (tmp_path / "model.npz").write_text("not a model")
    result = run_generator("--face-model", tmp_path / "model.npz", "--output", tmp_path / "out")
    assert_one_line_error(result, tmp_path / "model.npz")


def test_face_model_without_the_prototype_shapes_is_one_line(tmp_path):
    names = [name.replace("jawOpen", "jawClosed") for name in fake_face_model.EXPRESSION_NAMES]
    model = write_fake_npz(tmp_path / "model.npz", expression_names=np.array(names))
    result = run_generator("--face-model", model, "--output", tmp_path / "out")
    assert_one_line_error(result, model, "jawOpen")


@pytest.mark.parametrize("arguments, mention", [
    (["--train-subjects", "0"], "--train-subjects"),
    (["--valid-subjects", "-1"], "--valid-subjects"),
    (["--test-subjects", "two"], "--test-subjects"),
    (["--mixtures-per-subject", "100"], "--mixtures-per-subject"),
    (["--train-subjects", "9000", "--valid-subjects", "900", "--test-subjects", "101"], "10001 subjects"),
    (["--pose-jitter-deg", "-2"], "--pose-jitter-deg"),
    (["--depth-noise-mm", "nan"], "--depth-noise-mm"),
    (["--no-such-option"], "--no-such-option"),
    (["--only", "MX09", "--train-subjects", "1", "--valid-subjects", "0", "--test-subjects", "0"], "--only MX09"),
])
def test_impossible_options_are_one_line(tmp_path, arguments, mention):
    result = run_generator(*arguments, "--output", tmp_path / "out")
    assert_one_line_error(result, mention)
    assert list(tmp_path.iterdir()) == []


def test_output_folder_holding_files_is_refused_and_left_untouched(tmp_path):
    output = tmp_path / "data"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    (output / "dataset.json").write_text("an older dataset")
    before = folder_contents(tmp_path)
    result = run_generator("--face-model", write_fake_npz(tmp_path / "model.npz"), "--output", output, *TINY_COUNTS)
    assert_one_line_error(result, output, "--overwrite")
    assert folder_contents(tmp_path) == {**before, "model.npz": (tmp_path / "model.npz").read_bytes()}


def test_overwrite_replaces_the_dataset_and_leaves_other_files(tmp_path):
    output = tmp_path / "data"
    (output / "inputs" / "train").mkdir(parents=True)
    (output / "inputs" / "train" / "stale.png").write_bytes(b"old")
    (output / "notes.txt").write_text("mine")
    model = write_fake_npz(tmp_path / "model.npz")
    result = run_generator("--face-model", model, "--output", output, "--overwrite", *TINY_COUNTS)
    assert result.returncode == 0, result.stderr
    assert (output / "notes.txt").read_text() == "mine"
    assert not (output / "inputs" / "train" / "stale.png").exists()
    assert json.loads((output / "dataset.json").read_text())["convention"]["version"] == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "model.npz"]  # no staging left behind


def test_the_staging_folder_a_killed_run_left_is_removed_by_the_next_run_which_says_so(tmp_path):
    dead = dead_pid()
    left = tmp_path / f".data.partial-{dead}"               # what kill -9 leaves: the staging folder, half written
    (left / "inputs" / "train").mkdir(parents=True)
    kept = [tmp_path / f".other.partial-{dead}", tmp_path / ".data.partial-x"]   # another output's; not our naming
    for folder in kept:
        folder.mkdir()
    result = run_generator("--face-model", write_fake_npz(tmp_path / "model.npz"), "--output", tmp_path / "data",
                           *TINY_COUNTS)
    assert result.returncode == 0, result.stderr
    assert f"make_dataset.py: removed what an interrupted run left in {tmp_path}: {left.name}\n" in result.stdout
    assert not left.exists() and all(folder.exists() for folder in kept)


# ---------------------------------------------------------------------------------------------------------
# Determinism, and dataset.json as a recipe for every file.
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The tiny dataset made six times from a fake model: plain, jittered and noisy, and with every training
    variation of faces.variation, each with 1 and 2 workers."""
    root = tmp_path_factory.mktemp("tiny")
    model = write_fake_npz(root / "model.npz")
    variants = {"plain": [], "jittered": ["--pose-jitter-deg", "4", "--depth-noise-mm", "0.5"],
                "varied": ["--vary", "reshape", "outline", "whole_face_motion", "mouth_depth", "faceted",
                           "scanner_noise"]}
    runs = {}
    for variant, extra in variants.items():
        for workers in (1, 2):
            output = root / f"{variant}-{workers}"
            result = run_generator("--face-model", model, "--output", output, "--workers", workers,
                                   *TINY_COUNTS, *extra)
            assert result.returncode == 0, result.stderr
            runs[variant, workers] = output
    return model, runs


def test_same_options_give_byte_identical_files_whatever_the_worker_count(tiny_runs):
    _, runs = tiny_runs
    for variant in ("plain", "jittered", "varied"):
        one, two = folder_contents(runs[variant, 1]), folder_contents(runs[variant, 2])
        assert len(one) == 2 * 4 * (1 + 24 + 1) + 1  # inputs and targets of 4 subjects, and dataset.json
        assert one == two


def test_jitter_and_noise_change_inputs_only(tiny_runs):
    _, runs = tiny_runs
    plain, jittered = folder_contents(runs["plain", 1]), folder_contents(runs["jittered", 1])
    for name, content in plain.items():
        if name.startswith("targets"):
            assert jittered[name] == content
        elif name.startswith("inputs"):
            assert jittered[name] != content


def test_variations_change_inputs_and_targets_alike_and_neutral_inputs_only_by_scanner_noise(tiny_runs):
    _, runs = tiny_runs
    plain, varied = folder_contents(runs["plain", 1]), folder_contents(runs["varied", 1])
    assert all(varied[name] != content for name, content in plain.items() if name != "dataset.json")
    description = json.loads((runs["varied", 1] / "dataset.json").read_text())
    assert description["options"]["variations"] == ["reshape", "outline", "whole_face_motion", "mouth_depth",
                                                    "faceted", "scanner_noise"]
    assert "variations" not in json.loads((runs["plain", 1] / "dataset.json").read_text())["options"]
    # one person: a neutral input is its target but for the scanner's noise and holes
    for name in (name for name in varied if name.startswith("inputs") and "_NE00" in name):
        given = read_depth_png(runs["varied", 1] / name)[0]
        target = read_depth_png(runs["varied", 1] / name.replace("inputs", "targets", 1))[0]
        both = (given > 0) & (target > 0)
        assert np.median(np.abs(given - target)[both]) < 1.0 and both.sum() > 0.9 * (target > 0).sum()


@pytest.mark.parametrize("variant", ["jittered", "varied"])
def test_dataset_json_is_enough_to_re_render_every_file(tiny_runs, tmp_path, variant):
    model_path, runs = tiny_runs
    model, output = load_face_model(model_path), runs[variant, 1]
    description = json.loads((output / "dataset.json").read_text())
    for entry in description["files"].values():
        assert set(entry["expression_weights"]) <= set(description["face_model"]["expression_names"])

    for subject in subjects_from_description(description):
        for kind in ("inputs", "targets"):
            (tmp_path / kind / subject.split).mkdir(parents=True, exist_ok=True)
        render_subject(model, subject, tmp_path, description["options"]["depth_noise_mm"],
                       description["options"].get("variations", ()))
    assert folder_contents(tmp_path) == {name: content for name, content in folder_contents(output).items()
                                         if name != "dataset.json"}
