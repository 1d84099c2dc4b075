"""Synthetic scan collections with a known answer, in the files of BU-3DFE (.wrl), Bosphorus (.bnt) or FRGC
(.abs with a file,subject,code list): new identities of the face model (scanning.synthetic), each scanned
neutral and with prototype expressions, turned within +-10 degrees and shifted, with scanner noise. The .wrl
holds the model's own mesh (polygons, comments, texture coordinates: scan_formats.write_wrl); the range grids
are what a frontal range scanner 1 mm apart sees (background where it sees nothing: zmin, or flag 0 and
-999999). The answer of a scan is the exact render of its face in its subject's neutral frame.
"""
import os
import zlib
from dataclasses import dataclass

import numpy as np

from faces.expressions import INTENSITIES
from scanning.scan_formats import range_grid, write_abs, write_bnt, write_wrl
from scanning.synthetic import exact_depth_mm, new_subject, posed, prototype

MAX_TURN_DEG = 10.0
MAX_SHIFT_MM = 50.0
NOISE_MM = 0.15
GRID_SPACING_MM = 1.0
BOSPHORUS_EMOTIONS = {'AN': 'ANGER', 'DI': 'DISGUST', 'FE': 'FEAR', 'HA': 'HAPPY', 'SA': 'SADNESS', 'SU': 'SURPRISE'}
SCAN_LIST = 'scans.csv'  # the FRGC collection's file,subject,code list, in its folder


@dataclass
class SyntheticScan:
    path: str
    subject: str  # as the collection names it
    label: str  # CCLL, as the dataset will name it
    pose: dict  # yaw, pitch, roll (degrees) about the neutral nose tip, then the shift (mm)
    shift: np.ndarray
    neutral: np.ndarray  # the subject's neutral face (mm, unposed)
    face: np.ndarray  # the face scanned (mm, unposed)

    def exact_depth_mm(self, model):
        return exact_depth_mm(model, self.neutral, self.face)


def file_name(collection, subject_number, code, level, scan_number):
    """The file name the collection would give the scan."""
    if collection == 'bu3dfe':
        return f"F{subject_number + 1:04d}_{code}{level:02d}WH_F3D.wrl"
    if collection == 'bosphorus':
        kind = 'N_N' if code == 'NE' else f'E_{BOSPHORUS_EMOTIONS[code]}'
        return f"bs{subject_number:03d}_{kind}_0.bnt"
    return f"{4200 + subject_number:05d}d{scan_number:02d}.abs"


def write_scan(path, model, face):
    """The posed face as the format's file: a .wrl mesh with noise, or a range grid with noise in z."""
    rng = np.random.default_rng(zlib.crc32(os.path.basename(path).encode()))  # the same file, the same noise
    if path.endswith('.wrl'):
        write_wrl(path, face + rng.normal(0, NOISE_MM, face.shape), model.triangles)
        return
    grid = range_grid(face, model.triangles, GRID_SPACING_MM)
    grid[..., 2] += rng.normal(0, NOISE_MM, grid.shape[:2])
    (write_bnt if path.endswith('.bnt') else write_abs)(path, grid)


def write_collection(folder, collection, model, subjects, codes, seed=0):
    """Write `subjects` new subjects into folder (BU-3DFE and Bosphorus: a folder per subject), each scanned
    neutral and with each of `codes` (at level 04); for frgc also the list SCAN_LIST. Returns the SyntheticScans."""
    rng = np.random.default_rng(seed)
    scans = []
    for number in range(subjects):
        neutral, _ = new_subject(model, rng)
        subject_folder = folder if collection == 'frgc' else os.path.join(folder, f'subject{number}')
        os.makedirs(subject_folder, exist_ok=True)
        for scan_number, code in enumerate(('NE', *codes)):
            level = 0 if code == 'NE' else 4
            face = model.expressive_face_mm(neutral, prototype(model, None if code == 'NE' else code,
                                                              INTENSITIES[3]))
            turn = dict(zip(('yaw', 'pitch', 'roll'), rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG, 3)))
            shift = rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 3)
            path = os.path.join(subject_folder, file_name(collection, number, code, level, scan_number))
            write_scan(path, model, posed(face, neutral[model.nose_tip], **turn, shift=shift))
            subject = os.path.basename(path).split('_')[0] if collection != 'frgc' else f'{4200 + number:05d}'
            scans.append(SyntheticScan(path, subject, f'{code}{level:02d}', turn, shift, neutral, face))
    if collection == 'frgc':
        write_scan_list(os.path.join(folder, SCAN_LIST), folder, scans)
    return scans


def write_scan_list(path, folder, scans):
    lines = ['file,subject,code'] + [f'{os.path.relpath(scan.path, folder)},{scan.subject},{scan.label}'
                                     for scan in scans]
    with open(path, 'w') as file:
        file.write('\n'.join(lines) + '\n')
