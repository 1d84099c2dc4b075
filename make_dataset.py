"""Generate the depth-face dataset (input: a face with an expression, target: the same face neutral).

Faces come from the ICT Face Model Light (USC Institute for Creative Technologies, ICT-FaceKit, MIT licence)
and are rendered under the convention (version 1) that the README describes: 128 x 128 pixels, frontal
orthographic view, 1.5 mm pixel pitch centred on the subject's neutral nose tip, depth = height above a back
plane 120 mm behind that nose tip, stored as 16-bit PNG in 0.1 mm units.

    python make_dataset.py            # regenerates data128_128/ next to this script (needs --overwrite
                                      # when it already exists)
"""
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from command_line import OneLineErrorParser, UsageError, error_line, non_negative_float, report_error, whole_number
from depth_dataset import IMAGE_SIZE, PIXEL_PITCH_MM, SPLITS
from depth_png import DepthImageError, write_depth_png
from face_model import FaceModel, FaceModelError, load_face_model
from progress import ProgressLine
from rasterise import rasterise_depth

GENERATOR = "make_dataset.py"
GENERATOR_VERSION = "1.0"
REPOSITORY = Path(__file__).resolve().parent
DEFAULT_OUTPUT = REPOSITORY / "data128_128"
DEFAULT_FACE_MODEL = REPOSITORY / "facemodel" / "ict_face_model_light.npz"

# The convention, version 1 (its image size and pixel pitch are depth_dataset's, which every module reads).
BACK_PLANE_MM = 120.0  # behind the neutral nose tip
IMAGE_CENTRE = (IMAGE_SIZE - 1) / 2  # the nose tip lies between the four central pixels
CONVENTION = {
    "version": 1,
    "size_px": IMAGE_SIZE,
    "pixel_pitch_mm": PIXEL_PITCH_MM,
    "depth_unit_mm": 0.1,
    "back_plane_mm_behind_neutral_nose_tip": BACK_PLANE_MM,
    "frame": "pixel (row r, col c) centre at x = (c - 63.5) * 1.5 mm, y = (63.5 - r) * 1.5 mm from the nose tip "
             "(Multi-PIE landmark 30) of the subject's neutral face; orthographic view along -z",
    "depth": "height in mm of the front-most surface above the back plane at the pixel centre; "
             "0 = no surface or a surface behind the plane; PNG value = round(10 * height)",
}

# Expression protocol, modelled on BU-3DFE: six prototypic expressions at four intensities, plus neutral.
# An action names an ICT shape, or an _L/_R pair of shapes when the model has no shape of that exact name.
PROTOTYPES = {  # at intensity 1.0
    "HA": {"cheekSquint": 1.0, "mouthSmile": 1.0},
    "SA": {"browInnerUp": 1.0, "browDown": 0.5, "mouthFrown": 1.0},
    "SU": {"browInnerUp": 1.0, "browOuterUp": 1.0, "eyeWide": 1.0, "jawOpen": 0.5},
    "FE": {"browInnerUp": 1.0, "browOuterUp": 1.0, "browDown": 0.5, "eyeWide": 1.0, "mouthStretch": 1.0,
           "jawOpen": 0.3},
    "AN": {"browDown": 1.0, "eyeWide": 0.5, "eyeSquint": 0.7, "mouthPress": 1.0},
    "DI": {"noseSneer": 1.0, "mouthFrown": 0.7, "mouthLowerDown": 0.7},
}
INTENSITIES = (0.25, 0.5, 0.75, 1.0)  # levels 1 to 4
MIXTURES_PER_SUBJECT = 6  # the committed data's random mixtures per subject (--mixtures-per-subject)
# Random mixtures: 1 to 4 actions, pairs used on one side only with this probability, weights uniform in
# [0.3, 1.0]. Eye-gaze shapes (eyeLook*) are left out: they turn the eyeballs and barely change depth.
MIXTURE_ACTIONS = (1, 4)
ONE_SIDED_PROBABILITY = 0.5
MIXTURE_WEIGHTS = (0.3, 1.0)
EXCLUDED_FROM_MIXTURES = ("eyeLook",)
DECIMALS = 6  # weights and angles are rounded to this before rendering, so dataset.json re-renders exactly


@dataclass
class Render:
    """One input image; its target is the subject's neutral face."""
    name: str  # file name, SSSS_CCLL.png
    code: str
    level: int
    expression_weights: dict  # shape name -> weight, shapes not named are 0
    pose_jitter_deg: dict = None  # yaw, pitch, roll of the input mesh about the neutral nose tip
    depth_noise_seed: int = None  # seed of the input's Gaussian depth noise


@dataclass
class Subject:
    number: int
    split: str
    identity_weights: list
    renders: list = field(default_factory=list)

    @property
    def id(self):
        return f"{self.number:04d}"


# ---------------------------------------------------------------------------------------------------------
# Rendering under the convention.
# ---------------------------------------------------------------------------------------------------------
def image_frame(face_mm: np.ndarray, nose_tip_mm: np.ndarray) -> np.ndarray:
    """(V, 3) column, row and height in mm above the back plane of points in mm, framed on `nose_tip_mm`."""
    frame = np.empty_like(face_mm)
    frame[:, 0] = IMAGE_CENTRE + (face_mm[:, 0] - nose_tip_mm[0]) / PIXEL_PITCH_MM  # column
    frame[:, 1] = IMAGE_CENTRE - (face_mm[:, 1] - nose_tip_mm[1]) / PIXEL_PITCH_MM  # row: y points up
    frame[:, 2] = face_mm[:, 2] - (nose_tip_mm[2] - BACK_PLANE_MM)
    return frame


def render_depth_mm(face_mm: np.ndarray, nose_tip_mm: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(128, 128) heights in mm above the back plane of a face (vertices in mm), framed on `nose_tip_mm`."""
    return rasterise_depth(image_frame(face_mm, nose_tip_mm), triangles, IMAGE_SIZE, IMAGE_SIZE)


def rotated_about(face_mm: np.ndarray, centre_mm: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    """The face turned by yaw (about y), then pitch (about x), then roll (about z), in degrees, about a point."""
    yaw, pitch, roll = np.radians([yaw, pitch, roll])
    about_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    about_z = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    rotation = about_z @ about_x @ about_y
    return (face_mm - centre_mm) @ rotation.T + centre_mm


def render_subject(model: FaceModel, subject: Subject, output: Path, depth_noise_mm: float) -> int:
    """Write the subject's input and target PNGs into output/{inputs,targets}/<split>/; return how many pairs."""
    neutral = model.neutral_face_mm(subject.identity_weights)
    nose_tip = neutral[model.nose_tip]
    target = render_depth_mm(neutral, nose_tip, model.triangles)
    for render in subject.renders:
        face = model.expressive_face_mm(neutral, render.expression_weights)
        if render.pose_jitter_deg:
            face = rotated_about(face, nose_tip, **render.pose_jitter_deg)
        depth = render_depth_mm(face, nose_tip, model.triangles)
        if render.depth_noise_seed is not None:
            noise = np.random.default_rng(render.depth_noise_seed).normal(0.0, depth_noise_mm, depth.shape)
            depth = depth + noise * (depth > 0)  # face pixels only; negatives are clipped when written
        write_depth_png(output / "inputs" / subject.split / render.name, depth)
        write_depth_png(output / "targets" / subject.split / render.name, target)
    return len(subject.renders)


# ---------------------------------------------------------------------------------------------------------
# The plan: every random choice, drawn up front in the main process from independent streams.
# ---------------------------------------------------------------------------------------------------------
def shapes_of_action(action: str, expression_names) -> list:
    """The shape names an action stands for: the shape itself, or its _L and _R shapes."""
    if action in expression_names:
        return [action]
    return [f"{action}_L", f"{action}_R"]


def mixture_actions(expression_names) -> list:
    """The actions random mixtures choose from: each _L/_R pair as one action, every other shape alone."""
    actions = []
    for name in expression_names:
        if name.startswith(EXCLUDED_FROM_MIXTURES):
            continue
        other_side = {"_L": "_R", "_R": "_L"}.get(name[-2:])
        action = name[:-2] if other_side and name[:-2] + other_side in expression_names else name
        if action not in actions:
            actions.append(action)
    return actions


def prototype_weights(code: str, intensity: float, expression_names) -> dict:
    return {shape: round(weight * intensity, DECIMALS)
            for action, weight in PROTOTYPES[code].items() for shape in shapes_of_action(action, expression_names)}


def random_mixture_weights(rng: np.random.Generator, actions, expression_names) -> dict:
    """1 to 4 distinct actions; a pair is often used on one side only; both sides of a pair share a weight."""
    weights = {}
    count = min(rng.integers(MIXTURE_ACTIONS[0], MIXTURE_ACTIONS[1] + 1), len(actions))  # tiny test models
    for action_index in rng.choice(len(actions), size=count, replace=False):
        weight = round(float(rng.uniform(*MIXTURE_WEIGHTS)), DECIMALS)
        shapes = shapes_of_action(actions[action_index], expression_names)
        if len(shapes) == 2 and rng.random() < ONE_SIDED_PROBABILITY:
            shapes = [shapes[rng.integers(2)]]
        weights.update({shape: weight for shape in shapes})
    return weights


def plan_dataset(options, model: FaceModel) -> list:
    """All subjects with their renders, numbered 0000... over the splits in the order train, valid, test."""
    # Independent streams, so that e.g. changing the number of mixtures leaves the identities as they were.
    identity_seed, mixture_seed, jitter_seed, noise_seed = np.random.SeedSequence(options.seed).spawn(4)
    identity_rng, mixture_rng = np.random.default_rng(identity_seed), np.random.default_rng(mixture_seed)
    jitter_rng, noise_rng = np.random.default_rng(jitter_seed), np.random.default_rng(noise_seed)

    counts = {"train": options.train_subjects, "valid": options.valid_subjects, "test": options.test_subjects}
    splits = [split for split in SPLITS for _ in range(counts[split])]
    identities = identity_rng.standard_normal((len(splits), model.identity_modes.shape[0]))
    names = model.expression_names
    actions = mixture_actions(names)

    subjects = []
    for number, split in enumerate(splits):
        subject = Subject(number, split, [round(float(w), DECIMALS) for w in identities[number]])
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
            subject.renders.append(render)
        subjects.append(subject)
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
            files[render.name] = entry
    return {
        "convention": CONVENTION,
        "generator": {"program": GENERATOR, "version": GENERATOR_VERSION},
        "seed": options.seed,
        "options": {
            "train_subjects": options.train_subjects, "valid_subjects": options.valid_subjects,
            "test_subjects": options.test_subjects, "mixtures_per_subject": options.mixtures_per_subject,
            "pose_jitter_deg": options.pose_jitter_deg, "depth_noise_mm": options.depth_noise_mm,
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
        "splits": {split: [{"id": s.id, "identity_weights": s.identity_weights}
                           for s in subjects if s.split == split] for split in SPLITS},
        "files": files,
    }


def subjects_from_description(description: dict) -> list:
    """The subjects and renders that dataset.json describes, for render_subject to re-render any of them."""
    subjects = {}
    for split, members in description["splits"].items():
        for member in members:
            subjects[member["id"]] = Subject(int(member["id"]), split, member["identity_weights"])
    for name, entry in description["files"].items():
        subjects[entry["subject"]].renders.append(
            Render(name, entry["code"], entry["level"], entry["expression_weights"],
                   entry.get("pose_jitter_deg"), entry.get("depth_noise_seed")))
    return sorted(subjects.values(), key=lambda subject: subject.number)


# ---------------------------------------------------------------------------------------------------------
# Running it.
# ---------------------------------------------------------------------------------------------------------
_worker_model = None  # the model in a worker process, set once by the pool's initializer


def _set_worker_model(model):
    global _worker_model
    _worker_model = model


def _render_in_worker(job):
    return render_subject(_worker_model, *job)


def write_dataset(options, model: FaceModel, subjects, folder: Path):
    """Render every subject into `folder` (one subject per task, `options.workers` processes), then dataset.json."""
    for subject in subjects:
        for kind in ("inputs", "targets"):
            (folder / kind / subject.split).mkdir(parents=True, exist_ok=True)
    progress = ProgressLine(sum(len(s.renders) for s in subjects), counted=" pairs", unit="pairs", log_interval=10.0)
    jobs = [(subject, folder, options.depth_noise_mm) for subject in subjects]
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
    """Write the dataset into a staging folder beside --output, then move it in: an interrupted or failed
    run leaves an existing dataset as it was."""
    output = options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        write_dataset(options, model, subjects, staging)
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


def parse_arguments(argv):
    parser = OneLineErrorParser(
        prog=GENERATOR,
        description="Render the depth-face dataset (expressive input, neutral target) from the ICT Face Model "
                    "Light. The same options always give byte-identical files.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="FOLDER",
                        help="write the dataset into FOLDER (default: data128_128 next to this script)")
    parser.add_argument("--face-model", type=Path, default=DEFAULT_FACE_MODEL, metavar="PATH",
                        help="read the face model from PATH: the compact .npz, or the FaceXModel folder of a "
                             "clone of the ICT-FaceKit repository (default: facemodel/ict_face_model_light.npz, "
                             "the copy this repository carries)")
    parser.add_argument("--train-subjects", type=whole_number(1, 9999), default=80, metavar="N",
                        help="make N training subjects (default: 80)")
    parser.add_argument("--valid-subjects", type=whole_number(0, 9999), default=20, metavar="N",
                        help="make N validation subjects (default: 20)")
    parser.add_argument("--test-subjects", type=whole_number(0, 9999), default=20, metavar="N",
                        help="make N test subjects (default: 20)")
    parser.add_argument("--mixtures-per-subject", type=whole_number(0, 99), default=MIXTURES_PER_SUBJECT, metavar="N",
                        help="give each subject N random mixtures of expression shapes besides the neutral "
                             f"face and the 24 prototypic expressions (default: {MIXTURES_PER_SUBJECT})")
    parser.add_argument("--seed", type=whole_number(0, 2 ** 63 - 1), default=0, metavar="N",
                        help="draw identities, mixtures, jitter and noise from seed N (default: 0)")
    parser.add_argument("--pose-jitter-deg", type=non_negative_float, default=0.0, metavar="DEG",
                        help="turn each input face about its neutral nose tip by a yaw, a pitch and a roll each "
                             "drawn uniformly from -DEG to DEG degrees; targets stay frontal (default: 0 = off)")
    parser.add_argument("--depth-noise-mm", type=non_negative_float, default=0.0, metavar="MM",
                        help="add Gaussian noise of standard deviation MM millimetres to the face pixels of "
                             "each input; targets stay clean (default: 0 = off)")
    parser.add_argument("--workers", type=whole_number(1, 256), default=os.cpu_count() or 1, metavar="N",
                        help="render with N processes; the files do not depend on N (default: the number "
                             "of CPUs, here %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow an output folder that already holds files: its inputs/, targets/ and "
                             "dataset.json are replaced, anything else in it is left alone")
    options = parser.parse_args(argv)
    total = options.train_subjects + options.valid_subjects + options.test_subjects
    if total > 10000:
        parser.error(f"{total} subjects do not fit the four-digit subject numbers of the file names")
    return options


def check_model_has_prototype_shapes(model: FaceModel, path: Path):
    needed = {shape for weights in PROTOTYPES.values() for action in weights
              for shape in shapes_of_action(action, model.expression_names)}
    missing = sorted(needed - set(model.expression_names))
    if missing:
        raise UsageError(f"{path}: the face model lacks the expression shapes {', '.join(missing)}")


def main(argv=None):
    try:
        options = parse_arguments(argv)
        check_output_folder(options.output, options.overwrite)
        model = load_face_model(options.face_model)
        check_model_has_prototype_shapes(model, options.face_model)
    except (UsageError, FaceModelError, OSError) as error:
        report_error(GENERATOR, error)
        return 2
    subjects = plan_dataset(options, model)
    started = time.monotonic()
    try:
        generate(options, model, subjects)
    except (OSError, DepthImageError) as error:
        report_error(GENERATOR, f"writing the dataset failed: {error_line(error)}")
        return 1
    except KeyboardInterrupt:
        print(f"\n{GENERATOR}: interrupted; the output folder was left as it was", file=sys.stderr)
        return 130
    pairs = sum(len(s.renders) for s in subjects)
    print(f"wrote {pairs} input/target pairs of {len(subjects)} subjects to {options.output} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
