"""The splits of a data folder hold other people: checked whenever data are loaded.

A subject in two splits makes a score say nothing about new faces: on the test split, the model has seen the
face; on the valid split, the checkpoint was chosen on a face it trained on. Two ways a subject lands in two
splits: the same id in both (a file copied or moved), or the same face under another id (a collection that
names one person twice). The first shows in the file names, the second in the images: a subject's neutral
target is the same image in every one of its pairs.
"""
import hashlib
import os

from depth.dataset import SPLITS, DataError
from evaluation.metrics import parse_name
from support.command_line import display_name

WHY = "a subject belongs to one split, or the scores of the other say nothing about new faces"


def check_separate_subjects(folder, loaded):
    """Refuse (DataError, one line) a data folder whose splits share a subject: the same subject id in the
    names (SSSS_CCLL.png) of two of its splits, all splits present listed, or the same target image in two of
    the `loaded` splits ({split: Dataset}) under other ids."""
    check_subject_ids(folder)
    check_target_images(folder, loaded)


def check_subject_ids(folder):
    first_seen = {}   # subject id: (split, file name)
    for split in SPLITS:
        for subject, name in subjects_of(folder, split).items():
            if subject in first_seen:
                split_before, name_before = first_seen[subject]
                raise DataError(f"{display_name(folder)}: subject {subject} is in two splits (inputs/{split_before}/"
                                f"{display_name(name_before)}, inputs/{split}/{display_name(name)}); {WHY}")
            first_seen[subject] = (split, name)


def subjects_of(folder, split):
    """{subject id: its first file name} of a split's inputs (names without a subject id are left out)."""
    inputs = os.path.join(folder, 'inputs', split)
    if not os.path.isdir(inputs):
        return {}
    subjects = {}
    for name in sorted(os.listdir(inputs)):
        subject = parse_name(name)[0] if name.lower().endswith('.png') else None
        if subject is not None:
            subjects.setdefault(subject, name)
    return subjects


def check_target_images(folder, loaded):
    """The same target image in two loaded splits: one face under two ids. Targets without a face pixel are
    left out (blank images are all alike)."""
    first_seen = {}   # digest of a target: (split, file name)
    for split, dataset in loaded.items():
        for name, target in zip(dataset.names, dataset.targets):
            if not target.any():
                continue
            split_before, name_before = first_seen.setdefault(image_digest(target), (split, name))
            if split_before != split:
                raise DataError(f"{display_name(folder)}: targets/{split_before}/{display_name(name_before)} and "
                                f"targets/{split}/{display_name(name)} are the same face (identical images) under "
                                f"two subject ids; {WHY}")


def image_digest(image):
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()
