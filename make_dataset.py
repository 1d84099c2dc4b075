"""Generate the depth-face dataset (input: a face with an expression, target: the same face neutral).

Faces come from the ICT Face Model Light (USC Institute for Creative Technologies, ICT-FaceKit, MIT licence)
and are rendered under the convention (version 1) that the README describes: 128 x 128 pixels, frontal
orthographic view, 1.5 mm pixel pitch centred on the subject's neutral nose tip, depth = height above a back
plane 120 mm behind that nose tip, stored as 16-bit PNG in 0.1 mm units.

    python make_dataset.py            # regenerates data128_128/ next to this script (needs --overwrite
                                      # when it already exists)
    python make_dataset.py --from-scans BU3DFE/ --output bu3dfe128/   # pairs from your own scan collection
                                      # (BU-3DFE .wrl, Bosphorus .bnt, or a file,subject,code list: scanning/)
"""
if __name__ == "__main__":  # before the imports, which take a second: Ctrl-C during them ends it in one line
    from support.command_line import stop_at_once_while_starting
    stop_at_once_while_starting()

import os
import sys
import time
from pathlib import Path

from depth.png import DepthImageError
from faces.expressions import MIXTURES_PER_SUBJECT, check_model_has_prototype_shapes
from faces.generator import GENERATOR, check_output_folder, generate, keep_only, plan_dataset
from faces.model import DEFAULT_FACE_MODEL, FaceModelError, load_face_model
from faces.variation import VARIATIONS
from scanning.alignment import face_template
from scanning.collection import COLLECTIONS, find_collection
from scanning.collection_build import build_collection, summary_line
from support.command_line import (OneLineErrorParser, UsageError, error_line, exit_status, non_negative_float,
                                  report_error, report_stop, whole_number)
from support.paths import REPOSITORY

DEFAULT_OUTPUT = Path(REPOSITORY) / "data128_128"
# What only the face model's renders use: refused beside --from-scans, which takes faces from scans.
FACE_MODEL_OPTIONS = ("train_subjects", "valid_subjects", "test_subjects", "mixtures_per_subject",
                      "pose_jitter_deg", "depth_noise_mm", "variations", "face_model")
SCAN_OPTIONS = ("collection", "scan_list", "keep_other_scans")


def parse_arguments(argv):
    parser = OneLineErrorParser(
        prog=GENERATOR,
        description="Render the depth-face dataset (expressive input, neutral target) from the ICT Face Model "
                    "Light. The same options always give byte-identical files.")
    parser.add_argument("--output", type=Path, default=None, metavar="FOLDER",
                        help="write the dataset into FOLDER (default: data128_128 next to this script; "
                             "--from-scans needs it given)")
    parser.add_argument("--from-scans", type=Path, default=None, metavar="DIR",
                        help="build the pairs from a 3D face scan collection in DIR (searched recursively): "
                             "each expressive scan aligned to its subject's neutral, which is the target")
    parser.add_argument("--collection", choices=COLLECTIONS, default=None,
                        help="--from-scans: how the files are named: bu3dfe (F0001_AN01WH_F3D.wrl), bosphorus "
                             "(bs000_E_HAPPY_0.bnt), frgc or csv (both with --scan-list) (default: told from "
                             "the files' type)")
    parser.add_argument("--scan-list", type=Path, default=None, metavar="FILE.csv",
                        help="--from-scans: a CSV of file,subject,code lines (code: NE, AN, DI, FE, HA, SA, SU "
                             "or MX, with a level, e.g. HA04, or without: NE00, or level 04); files relative to DIR")
    parser.add_argument("--keep-other-scans", action="store_true",
                        help="--from-scans: keep Bosphorus's action-unit, pose and occlusion scans, as mixtures "
                             "(MX01, MX02, ...); they are left out by default")
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
    parser.add_argument("--vary", nargs="+", choices=VARIATIONS, default=[], metavar="KIND", dest="variations",
                        help="vary the faces beyond the face model (faces/variation.py): "
                             f"{', '.join(VARIATIONS)}; input and target stay one person (default: none)")
    parser.add_argument("--only", nargs="+", metavar="CODE", default=None,
                        help="render only these of each subject's images, by code and level (e.g. NE00 HA04 MX01), "
                             "each exactly as the whole dataset has it: everything is drawn as before, then the rest "
                             "is left out (default: all)")
    parser.add_argument("--workers", type=whole_number(1, 256), default=os.cpu_count() or 1, metavar="N",
                        help="render with N processes; the files do not depend on N (default: the number "
                             "of CPUs, here %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow an output folder that already holds files: its inputs/, targets/ and "
                             "dataset.json are replaced, anything else in it is left alone")
    options = parser.parse_args(argv)
    check_source_options(parser, options)
    options.variations = tuple(kind for kind in VARIATIONS if kind in options.variations)  # one order, no repeats
    total = options.train_subjects + options.valid_subjects + options.test_subjects
    if total > 10000:
        parser.error(f"{total} subjects do not fit the four-digit subject numbers of the file names")
    return options


def check_source_options(parser, options):
    """Options of one source (the face model or a scan collection) are refused beside the other's."""
    given = lambda names: [name for name in names if getattr(options, name) != parser.get_default(name)]
    flag = lambda name: "--" + name.replace("_", "-")
    if options.from_scans is None:
        if given(SCAN_OPTIONS):
            parser.error(f"{flag(given(SCAN_OPTIONS)[0])} needs --from-scans DIR")
        options.output = options.output or DEFAULT_OUTPUT
        return
    if given(FACE_MODEL_OPTIONS):
        parser.error(f"{flag(given(FACE_MODEL_OPTIONS)[0])} is for the face model's renders, not --from-scans")
    if options.output is None:
        parser.error("--from-scans needs --output FOLDER (the committed data128_128 is the face model's)")


def written(write):
    """write() (a dataset's staged write), its failures as exit statuses: 0 written, 1 writing failed, 2 bad input
    found on the way (e.g. no usable scan), 130 interrupted (143 terminated); the output folder is left as it was
    unless 0."""
    try:
        write()
    except UsageError as error:
        report_error(GENERATOR, error)
        return 2
    except (OSError, DepthImageError) as error:
        report_error(GENERATOR, f"writing the dataset failed: {error_line(error)}")
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Terminated
        return report_stop(GENERATOR, stop, '; the output folder was left as it was')
    return 0


def main_from_scans(options):
    """make_dataset --from-scans: the collection's pairs (scanning/collection_build.py)."""
    try:
        check_output_folder(options.output, options.overwrite)
        collection = find_collection(options.from_scans, options.collection, options.scan_list,
                                     options.keep_other_scans)
        template = face_template(load_face_model(DEFAULT_FACE_MODEL))
    except (UsageError, FaceModelError, OSError) as error:
        report_error(GENERATOR, error)
        return 2
    started, summary = time.monotonic(), {}
    status = written(lambda: summary.update(build_collection(options, template, collection)))
    if status:
        return status
    print(f"{GENERATOR}: {summary_line(summary)}; wrote {summary['used']} pairs to {options.output} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


def main(argv=None):
    try:
        options = parse_arguments(argv)
        if options.from_scans is not None:
            return main_from_scans(options)
        check_output_folder(options.output, options.overwrite)
        model = load_face_model(options.face_model)
        check_model_has_prototype_shapes(model, options.face_model)
    except (UsageError, FaceModelError, OSError) as error:
        report_error(GENERATOR, error)
        return 2
    subjects = keep_only(plan_dataset(options, model), options.only)
    if not any(subject.renders for subject in subjects):
        report_error(GENERATOR, f"--only {' '.join(options.only)} names none of the subjects' images "
                                "(codes as in the file names: NE00, HA01-HA04, ..., MX01-MXnn)")
        return 2
    started = time.monotonic()
    status = written(lambda: generate(options, model, subjects))
    if status:
        return status
    pairs = sum(len(s.renders) for s in subjects)
    print(f"wrote {pairs} input/target pairs of {len(subjects)} subjects to {options.output} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(GENERATOR, main))
