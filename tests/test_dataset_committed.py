"""The committed data128_128/: complete pairs, disjoint splits, a dataset.json that agrees with the files."""
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import make_dataset
from depth.convention import DESCRIPTION
from depth.dataset import SPLITS, Dataset
from depth.png import read_depth_png
from faces.expressions import INTENSITIES, PROTOTYPES, prototype_weights
from faces.generator import GENERATOR_VERSION, render_subject, subjects_from_description
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from training.splits import check_separate_subjects

DATA = Path(__file__).resolve().parents[1] / "data128_128"
NAME = re.compile(r"(\d{4})_(NE|HA|SA|SU|FE|AN|DI|MX)(\d\d)\.png")


@pytest.fixture(scope="module")
def description():
    return json.loads((DATA / "dataset.json").read_text())


@pytest.fixture(scope="module")
def names():
    """{(kind, split): sorted file names} of the PNG folders on disk."""
    return {(kind, split): sorted(path.name for path in (DATA / kind / split).iterdir())
            for kind in ("inputs", "targets") for split in SPLITS}


def test_the_folder_holds_inputs_targets_and_dataset_json_only():
    assert sorted(path.name for path in DATA.iterdir()) == ["dataset.json", "inputs", "targets"]
    for kind in ("inputs", "targets"):
        assert sorted(path.name for path in (DATA / kind).iterdir()) == sorted(SPLITS)


def test_every_input_has_its_target_and_names_follow_the_pattern(names):
    for split in SPLITS:
        assert names["inputs", split] == names["targets", split]
        assert names["inputs", split], f"no {split} files"
        assert all(NAME.fullmatch(name) for name in names["inputs", split])


def test_splits_are_subject_disjoint(names, description):
    on_disk = {split: {name[:4] for name in names["inputs", split]} for split in SPLITS}
    listed = {split: {subject["id"] for subject in description["splits"][split]} for split in SPLITS}
    for first, second in [("train", "valid"), ("train", "test"), ("valid", "test")]:
        assert not on_disk[first] & on_disk[second]
        assert not listed[first] & listed[second]
    assert on_disk == listed


def test_the_splits_pass_the_check_of_training_and_test_mode():
    """No subject id in two splits, no target image in two splits (training.splits), as loading checks them."""
    check_separate_subjects(str(DATA), {split: Dataset.load(DATA, split) for split in SPLITS})


def test_dataset_json_agrees_with_the_files(names, description):
    options = description["options"]
    assert description["convention"] == DESCRIPTION
    assert description["generator"]["version"] == GENERATOR_VERSION
    assert {split: len(subjects) for split, subjects in description["splits"].items()} == {
        "train": options["train_subjects"], "valid": options["valid_subjects"], "test": options["test_subjects"]}

    files = description["files"]
    by_split = defaultdict(list)
    for name, entry in files.items():
        by_split[entry["split"]].append(name)
    assert {split: sorted(by_split[split]) for split in SPLITS} == {
        split: names["inputs", split] for split in SPLITS}

    expression_names = description["face_model"]["expression_names"]
    renders_per_subject = 1 + len(PROTOTYPES) * len(INTENSITIES) + options[
        "mixtures_per_subject"]
    for split, subjects in description["splits"].items():
        for subject in subjects:
            assert len(subject["identity_weights"]) == description["face_model"]["identity_modes"]
            assert len([e for e in files.values() if e["subject"] == subject["id"]]) == renders_per_subject
    for name, entry in files.items():
        subject, code, level = NAME.fullmatch(name).groups()
        assert (entry["subject"], entry["code"], entry["level"]) == (subject, code, int(level))
        assert set(entry["expression_weights"]) <= set(expression_names)
        if code == "NE":
            assert entry["expression_weights"] == {}
        elif code != "MX":
            intensity = INTENSITIES[int(level) - 1]
            assert entry["expression_weights"] == prototype_weights(code, intensity, expression_names)


def test_it_is_what_the_default_command_makes(description):
    defaults = make_dataset.parse_arguments([])
    assert description["seed"] == defaults.seed
    assert description["options"] == {key: getattr(defaults, key) for key in description["options"]}


def test_pngs_are_128_by_128_uint16_with_the_neutral_nose_tip_at_the_centre(names):
    for (kind, split), file_names in names.items():
        for name in file_names:
            depth, bits = read_depth_png(DATA / kind / split / name, size=128)
            assert bits == 16, name
            if kind == "targets":
                assert (abs(depth[63:65, 63:65] - 120.0) <= 1.0).all(), name


def test_targets_are_the_subjects_neutral_face(names):
    for split in SPLITS:
        targets = defaultdict(set)
        for name in names["targets", split]:
            targets[name[:4]].add((DATA / "targets" / split / name).read_bytes())
        for subject, contents in targets.items():
            assert len(contents) == 1, f"subject {subject} has differing targets"
            assert contents == {(DATA / "inputs" / split / f"{subject}_NE00.png").read_bytes()}


def test_first_subject_of_each_split_re_renders_from_dataset_json(description, tmp_path):
    model = load_face_model(DEFAULT_FACE_MODEL)
    subjects = subjects_from_description(description)
    for split in SPLITS:
        subject = next(subject for subject in subjects if subject.split == split)
        for kind in ("inputs", "targets"):
            (tmp_path / kind / split).mkdir(parents=True)
        render_subject(model, subject, tmp_path, description["options"]["depth_noise_mm"])
        for render in subject.renders:
            for kind in ("inputs", "targets"):
                # Pixels, not bytes: another zlib may compress the same image differently.
                again, _ = read_depth_png(tmp_path / kind / split / render.name)
                committed, _ = read_depth_png(DATA / kind / split / render.name)
                np.testing.assert_array_equal(again, committed, err_msg=render.name)


def test_make_dataset_remakes_the_committed_data_byte_for_byte(tmp_path):
    """The committed benchmark is exactly what the generator makes from the face model the repository carries."""
    finished = subprocess.run([sys.executable, make_dataset.__file__, "--output", str(tmp_path / "data")],
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    for path in sorted(DATA.rglob("*")):
        if path.is_file():
            again = tmp_path / "data" / path.relative_to(DATA)
            assert again.read_bytes() == path.read_bytes(), path.relative_to(DATA)
    assert sum(1 for _ in (tmp_path / "data").rglob("*.png")) == sum(1 for _ in DATA.rglob("*.png"))
