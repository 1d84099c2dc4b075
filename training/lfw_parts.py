"""LFW Part Labels at 128 x 128, the face-segmentation data of the original network (task `segment`).

Layout (as the original repository ships it, flat, no split folders):
    DATA/inputs/NAME.jpg                face photographs (RGB JPEG; read in grayscale, as the original did)
    DATA/targets_face_only/NAME.jpg     mask: face vs the rest (hair is background) - the default
    DATA/targets/NAME.jpg               mask: face and hair vs background
Masks are JPEG-compressed, so their values scatter near 0 and 255: a pixel is foreground when > 127.

The split is deterministic: the file names of inputs/, sorted, are cut in order into train = the first
floor(0.70 N), valid = the next floor(0.15 N), test = the rest (N = 2,927 gives 2,048 / 439 / 440).
"""
import os

import cv2
import numpy as np

from depth.convention import IMAGE_SIZE
from depth.dataset import SPLITS, DataError, Dataset

SPLIT_PERCENT = (70, 15, 15)
TARGET_FOLDERS = ('targets_face_only', 'targets')
MASK_THRESHOLD = 127
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def split_names(names):
    """{'train': [...], 'valid': [...], 'test': [...]}: the sorted names cut 70/15/15 (floor, rest to test)."""
    names = sorted(names)
    n_train = len(names) * SPLIT_PERCENT[0] // 100     # integer arithmetic: no 0.7 * N rounding surprises
    n_valid = len(names) * SPLIT_PERCENT[1] // 100
    return {'train': names[:n_train], 'valid': names[n_train:n_train + n_valid],
            'test': names[n_train + n_valid:]}


def image_names(folder):
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: folder not found (LFW Part Labels layout: DATA/inputs/ and "
                        f"DATA/{'|'.join(TARGET_FOLDERS)}/ holding NAME.jpg files; see README)")
    return {name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS)}


def all_names(data_dir, targets=TARGET_FOLDERS[0]):
    """Sorted names of the input images; every input must have its mask in `targets` and vice versa."""
    input_dir, target_dir = os.path.join(data_dir, 'inputs'), os.path.join(data_dir, targets)
    inputs, masks = image_names(input_dir), image_names(target_dir)
    if not inputs:
        raise DataError(f"{input_dir}: holds no .jpg or .png images")
    for missing, folder, side in ((sorted(inputs - masks), target_dir, 'have no mask in'),
                                  (sorted(masks - inputs), input_dir, 'have no input image in')):
        if missing:
            raise DataError(f"{os.path.join(folder, missing[0])}: missing ({len(missing)} file(s) "
                            f"{side} {os.path.basename(folder)}/)")
    return sorted(inputs)


def split_sizes(data_dir, targets=TARGET_FOLDERS[0]):
    return {split: len(names) for split, names in split_names(all_names(data_dir, targets)).items()}


def read_grey(path):
    """A 128 x 128 image as uint8 grey levels (cv2 IMREAD_GRAYSCALE); one-line DataError otherwise."""
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(f"{path}: not a readable image")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: is {image.shape[1]} x {image.shape[0]}, expected {IMAGE_SIZE} x {IMAGE_SIZE}")
    return image


def mask_from_grey(grey):
    """A JPEG-compressed mask -> {0, 1} float32 (foreground where the grey level is > 127)."""
    return (np.asarray(grey) > MASK_THRESHOLD).astype(np.float32)


def load(data_dir, split, targets=TARGET_FOLDERS[0]):
    """The split as a Dataset: inputs N x 128 x 128 x 1 in [0, 1] (grey / 255), targets in {0, 1}."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    names = all_names(data_dir, targets)
    chosen = split_names(names)[split]
    if not chosen:
        raise DataError(f"{os.path.join(data_dir, 'inputs')}: its {len(names)} images leave the {split} split "
                        f"empty (a {'/'.join(map(str, SPLIT_PERCENT))} split needs at least 7)")
    inputs = np.stack([read_grey(os.path.join(data_dir, 'inputs', name)) for name in chosen])
    masks = np.stack([read_grey(os.path.join(data_dir, targets, name)) for name in chosen])
    return Dataset(chosen, (inputs.astype(np.float32) / 255)[..., np.newaxis], mask_from_grey(masks)[..., np.newaxis])
