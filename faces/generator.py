"""The depth-face dataset generator (input: a face with an expression, target: the same face neutral): every
random choice planned up front, each subject rendered under the convention, dataset.json, and the staged write.

Faces come from the ICT Face Model Light (USC Institute for Creative Technologies, ICT-FaceKit, MIT licence)
and are rendered under the convention (depth.convention): 128 x 128 pixels, frontal orthographic view, 1.5 mm
pixel pitch centred on the subject's neutral nose tip, depth = height above a back plane 120 mm behind that nose
tip, stored as 16-bit PNG in 0.1 mm units. make_dataset.py is its command line.
"""
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth.convention import DESCRIPTION
from depth.dataset import SPLITS
from depth.png import write_depth_png
from depth.rasterise import render_depth_mm
from faces.expressions import (DECIMALS, INTENSITIES, PROTOTYPES, mixture_actions, prototype_weights,
                               random_mixture_weights)
from faces.model import FaceModel
from faces.variation import Switches, expression_intensity, vary_expression, vary_input_image, vary_subject
from support.command_line import UsageError, leave_ctrl_c_to_the_parent
from support.progress import ProgressLine
from support.safe_files import remove_leftovers, remove_path, temporary_name

GENERATOR = "make_dataset.py"  # the command that runs this generator, as dataset.json records it
GENERATOR_VERSION = "1.0"


@dataclass
class Render:
    """One input image; its target is the subject's neutral face."""
    name: str  # file name, SSSS_CCLL.png
    code: str
    level: int
    expression_weights: dict  # shape name -> weight, shapes not named are 0
    pose_jitter_deg: dict = None  # yaw, pitch, roll of the input mesh about the neutral nose tip
    depth_noise_seed: int = None  # seed of the input's Gaussian depth noise
    variation_seed: int = None  # seed of the input's variations (faces.variation), when any is on


@dataclass
class Subject:
    number: int
    split: str
    identity_weights: list
    renders: list = field(default_factory=list)
    variation_seed: int = None  # seed of the subject's variations (reshaping, outline, ...), when any is on

    @property
    def id(self):
        return f"{self.number:04d}"


def rotated_about(face_mm: np.ndarray, centre_mm: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    """The face turned by yaw (about y), then pitch (about x), then roll (about z), in degrees, about a point."""
    yaw, pitch, roll = np.radians([yaw, pitch, roll])
    about_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    about_z = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    rotation = about_z @ about_x @ about_y
    return (face_mm - centre_mm) @ rotation.T + centre_mm


def render_subject(model: FaceModel, subject: Subject, output: Path, depth_noise_mm: float, variations=()) -> int:
    """Write the subject's input and target PNGs into output/{inputs,targets}/<split>/; return how many pairs.

    `variations` names the faces.variation switches that are on: the subject's reshaping, outline and coarse
    grid apply to its target and every input alike; whole-face motion, mouth depth and scanner noise to inputs.
    """
    switches = Switches.only(*variations)
    varied = vary_subject(model.neutral_face_mm(subject.identity_weights), model.triangles, model.nose_tip,
                          switches, np.random.default_rng(subject.variation_seed))
    nose_tip = varied.nose_tip_mm
    target = varied.render(varied.neutral_mm, render_depth_mm)
    for render in subject.renders:
        face = model.expressive_face_mm(varied.neutral_mm, render.expression_weights)
        render_rng = np.random.default_rng(render.variation_seed)
        face = vary_expression(varied, face, expression_intensity(render.expression_weights), switches, render_rng)
        if render.pose_jitter_deg:
            face = rotated_about(face, nose_tip, **render.pose_jitter_deg)
        depth = vary_input_image(varied.render(face, render_depth_mm), switches, render_rng)
        if render.depth_noise_seed is not None:
            noise = np.random.default_rng(render.depth_noise_seed).normal(0.0, depth_noise_mm, depth.shape)
            depth = depth + noise * (depth > 0)  # face pixels only; negatives are clipped when written
        write_depth_png(output / "inputs" / subject.split / render.name, depth)
        write_depth_png(output / "targets" / subject.split / render.name, target)
    return len(subject.renders)


# ---------------------------------------------------------------------------------------------------------
# The plan: every random choice, drawn up front in the main process from independent streams.
# ---------------------------------------------------------------------------------------------------------
def plan_dataset(options, model: FaceModel) -> list:
    """All subjects with their renders, numbered 0000... over the splits in the order train, valid, test."""
    # Independent streams, so that e.g. changing the number of mixtures leaves the identities as they were.
    # (SeedSequence children depend on their index only: a fifth stream leaves the first four as they were.)
    identity_seed, mixture_seed, jitter_seed, noise_seed, variation_seed = np.random.SeedSequence(options.seed).spawn(5)
    identity_rng, mixture_rng = np.random.default_rng(identity_seed), np.random.default_rng(mixture_seed)
    jitter_rng, noise_rng = np.random.default_rng(jitter_seed), np.random.default_rng(noise_seed)
    variation_rng = np.random.default_rng(variation_seed)

    counts = {"train": options.train_subjects, "valid": options.valid_subjects, "test": options.test_subjects}
    splits = [split for split in SPLITS for _ in range(counts[split])]
    identities = identity_rng.standard_normal((len(splits), model.identity_modes.shape[0]))
    names = model.expression_names
    actions = mixture_actions(names)

    subjects = []
    for number, split in enumerate(splits):
        subject = Subject(number, split, [round(float(w), DECIMALS) for w in identities[number]])
        if options.variations:
            subject.variation_seed = int(variation_rng.integers(2 ** 32))
        expressions = [("NE", 0, {})]
        expressions += [(code, level, prototype_weights(code, intensity, names))
                        for code in PROTOTYPES for level, intensity in enumerate(INTENSITIES, start=1)]
        expressions += [("MX", level, random_mixture_weights(mixture_rng, actions, names))
                        for level in range(1, options.mixtures_per_subject + 1)]
        for code, level, weights in expressions:
            render = Render(f"{subject.id}_{code}{level:02d}.png", code, level, weights)
            if options.pose_jitter_deg > 0:
                angles = jitter_rng.uniform(-options.pose_jitter_deg, options.pose_jitter_deg, 3)
                render.pose_jitter_deg = {axis: round(float(angle), DECIMALS)
                                          for axis, angle in zip(("yaw", "pitch", "roll"), angles)}
            if options.depth_noise_mm > 0:
                render.depth_noise_seed = int(noise_rng.integers(2 ** 32))
            if options.variations:
                render.variation_seed = int(variation_rng.integers(2 ** 32))
            subject.renders.append(render)
        subjects.append(subject)
    return subjects


def keep_only(subjects, codes):
    """The subjects with only the renders named by `codes` (e.g. 'NE00', 'MX01'; None: all). Filtered after the
    plan, so that each kept render is drawn, and rendered, exactly as in the whole dataset."""
    if codes is None:
        return subjects
    wanted = set(codes)
    for subject in subjects:
        subject.renders = [render for render in subject.renders if f"{render.code}{render.level:02d}" in wanted]
    return subjects


def dataset_description(options, model: FaceModel, subjects) -> dict:
    """The contents of dataset.json: enough to re-render any file independently."""
    files = {}
    for subject in subjects:
        for render in subject.renders:
            entry = {"split": subject.split, "subject": subject.id, "code": render.code, "level": render.level,
                     "expression_weights": render.expression_weights}
            if render.pose_jitter_deg:
                entry["pose_jitter_deg"] = render.pose_jitter_deg
            if render.depth_noise_seed is not None:
                entry["depth_noise_seed"] = render.depth_noise_seed
            if render.variation_seed is not None:
                entry["variation_seed"] = render.variation_seed
            files[render.name] = entry
    return {
        "convention": DESCRIPTION,
        "generator": {"program": GENERATOR, "version": GENERATOR_VERSION},
        "seed": options.seed,
        "options": {
            "train_subjects": options.train_subjects, "valid_subjects": options.valid_subjects,
            "test_subjects": options.test_subjects, "mixtures_per_subject": options.mixtures_per_subject,
            "pose_jitter_deg": options.pose_jitter_deg, "depth_noise_mm": options.depth_noise_mm,
            # only when some are on: a dataset without variations is described byte for byte as before them
            **({"variations": list(options.variations)} if options.variations else {}),
            **({"only": list(options.only)} if getattr(options, "only", None) else {}),
        },
        "face_model": {
            "name": "ICT Face Model Light (USC Institute for Creative Technologies, ICT-FaceKit, MIT licence)",
            "identity_modes": int(model.identity_modes.shape[0]),
            "expression_names": list(model.expression_names),
        },
        "layout": "inputs/<split>/<name> and targets/<split>/<name>; the target is the subject's neutral face "
                  "(no expression, jitter or noise)",
        "face": "mm = 10 * (neutral + sum identity_weights[i] * identity_modes[i] "
                "+ sum expression_weights[name] * expression_modes[name]); pose jitter turns the input by yaw "
                "(about y), then pitch (about x), then roll (about z), in degrees, about the neutral nose tip; "
                "depth noise is Gaussian, sd depth_noise_mm, numpy default_rng(depth_noise_seed).normal over "
                "the 128 x 128 image, added to face pixels only",
        "expression_weights_omitted_are_zero": True,
        "splits": {split: [subject_entry(s) for s in subjects if s.split == split] for split in SPLITS},
        "files": files,
    }


def subject_entry(subject: Subject) -> dict:
    entry = {"id": subject.id, "identity_weights": subject.identity_weights}
    if subject.variation_seed is not None:
        entry["variation_seed"] = subject.variation_seed
    return entry


def subjects_from_description(description: dict) -> list:
    """The subjects and renders that dataset.json describes, for render_subject to re-render any of them."""
    subjects = {}
    for split, members in description["splits"].items():
        for member in members:
            subjects[member["id"]] = Subject(int(member["id"]), split, member["identity_weights"],
                                             variation_seed=member.get("variation_seed"))
    for name, entry in description["files"].items():
        subjects[entry["subject"]].renders.append(
            Render(name, entry["code"], entry["level"], entry["expression_weights"],
                   entry.get("pose_jitter_deg"), entry.get("depth_noise_seed"), entry.get("variation_seed")))
    return sorted(subjects.values(), key=lambda subject: subject.number)


# ---------------------------------------------------------------------------------------------------------
# Running it.
# ---------------------------------------------------------------------------------------------------------
_worker_model = None  # the model in a worker process, set once by the pool's initializer


def _set_worker_model(model):
    global _worker_model
    _worker_model = model
    leave_ctrl_c_to_the_parent()


def _render_in_worker(job):
    return render_subject(_worker_model, *job)


def write_dataset(options, model: FaceModel, subjects, folder: Path):
    """Render every subject into `folder` (one subject per task, `options.workers` processes), then dataset.json."""
    for subject in subjects:
        for kind in ("inputs", "targets"):
            (folder / kind / subject.split).mkdir(parents=True, exist_ok=True)
    progress = ProgressLine(sum(len(s.renders) for s in subjects), counted=" pairs", unit="pairs", log_interval=10.0)
    jobs = [(subject, folder, options.depth_noise_mm, options.variations) for subject in subjects]
    done = 0
    if options.workers == 1:
        for job in jobs:
            done += render_subject(model, *job)
            progress.update(done)
    else:
        # Each task writes its own files, so the order in which tasks finish does not matter.
        with multiprocessing.Pool(options.workers, _set_worker_model, (model,)) as pool:
            for count in pool.imap_unordered(_render_in_worker, jobs):
                done += count
                progress.update(done)
    description = dataset_description(options, model, subjects)
    (folder / "dataset.json").write_text(json.dumps(description, indent=1) + "\n")


OWNED = ("inputs", "targets", "dataset.json")  # what the generator writes, and may replace, in --output


def check_output_folder(output: Path, overwrite: bool):
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UsageError(f"output folder {output} already holds files; "
                               "pass --overwrite to replace the dataset in it")


def generate(options, model: FaceModel, subjects):
    """Write the dataset into --output through a staging folder (staged_write)."""
    staged_write(options.output, lambda staging: write_dataset(options, model, subjects, staging))


def staged_write(output: Path, write):
    """write(staging folder) into a staging folder beside `output` (.NAME.partial-PID), then move what it wrote
    of OWNED in: an interrupted or failed run leaves an existing dataset as it was, and the staging folder a
    killed run left is removed by the next run, which says so. (make_dataset --from-scans uses it too.)"""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(output.parent, lambda text: print(f"{GENERATOR}: {text}", flush=True), of=output.name)
    staging = Path(temporary_name(output))
    remove_path(staging)
    staging.mkdir()
    try:
        write(staging)
        output.mkdir(exist_ok=True)
        for name in OWNED:
            old = output / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
            os.replace(staging / name, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
