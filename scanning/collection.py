"""A 3D face collection's scans: who and which expression each file holds, by the naming of BU-3DFE, Bosphorus
and FRGC (or a file,subject,code list), each subject's reference neutral, and subject-disjoint splits.

  * BU-3DFE: F0001_AN01WH_F3D.wrl: subject F0001 (or M0001), expression AN/DI/FE/HA/SA/SU at intensity 01-04,
    NE00 the neutral; WH is the subject's ethnicity code. Files not named so (the RAW models, the 2D images'
    neighbours) are skipped.
  * Bosphorus: bs000_N_N_0.bnt neutral, bs000_E_HAPPY_0.bnt (ANGER, DISGUST, FEAR, HAPPY, SADNESS, SURPRISE) the
    prototypes, at level 04 (they are posed at full strength); action units (LFAU, UFAU, CAU), turns (YR, PR,
    CR) and occlusions (O) are skipped unless kept as mixtures (code MX).
  * FRGC v2 (.abs) names carry no expression: its scans, like any other collection's, come from a CSV list.
A subject's reference neutral is its first neutral scan by file name; a later scan of an expression and level
the subject already has (e.g. another session's neutral) is skipped: the data128_128 names (SSSS_CCLL.png) hold
one image per subject, expression and level.
"""
import csv
import os
import re
from dataclasses import dataclass

import numpy as np

from depth.dataset import SPLITS
from evaluation.metrics import EXPRESSION_NAMES
from scanning.mesh_io import SCAN_SUFFIXES
from support.command_line import UsageError

COLLECTIONS = ('bu3dfe', 'bosphorus', 'frgc', 'csv')
SUFFIX_OF_COLLECTION = {'bu3dfe': '.wrl', 'bosphorus': '.bnt', 'frgc': '.abs'}
SPLIT_SHARES = {'train': 0.70, 'valid': 0.15, 'test': 0.15}
PROTOTYPE_LEVEL = 4  # a prototype posed at full strength (Bosphorus's emotions; a CSV code without a level)
MAX_OTHER_LEVEL = 99  # kept other scans are numbered MX01..MX99 per subject
_BU3DFE_NAME = re.compile(r'(?P<subject>[FM]\d{4})_(?P<code>NE|AN|DI|FE|HA|SA|SU)(?P<level>\d\d)[A-Z]{2}_F3D\.wrl',
                          re.IGNORECASE)
_BOSPHORUS_NAME = re.compile(r'(?P<subject>bs\d{3})_(?P<kind>[A-Z]+)_(?P<what>[A-Z0-9]+)_\d+\.bnt', re.IGNORECASE)
_BOSPHORUS_EMOTIONS = {'ANGER': 'AN', 'DISGUST': 'DI', 'FEAR': 'FE', 'HAPPY': 'HA', 'SADNESS': 'SA', 'SURPRISE': 'SU'}
_CSV_CODE = re.compile(r'(?P<code>[A-Z]{2})(?P<level>\d\d)?')

# Reasons a scan is not used (the summary counts them by these words).
NOT_NAMED = 'name not understood'
OTHER_SCAN = 'action unit, pose or occlusion scan'
REPEAT = 'repeats an expression of its subject'
NO_NEUTRAL = 'no neutral for the subject'
NOT_A_FACE = 'not a face'
UNREADABLE = 'unreadable'


@dataclass
class CollectionScan:
    path: str  # the file, as found under the collection's folder
    subject: str  # the collection's own subject id (F0001, bs000, 04200, ...)
    code: str  # NE, AN, DI, FE, HA, SA, SU or MX
    level: int

    @property
    def is_neutral(self):
        return self.code == 'NE'

    @property
    def label(self):
        return f'{self.code}{self.level:02d}'


@dataclass
class Collection:
    kind: str  # one of COLLECTIONS
    scans: list  # CollectionScan, in file-name order, the first neutral of each subject its reference
    skipped: list  # (path, reason) of the files not used


# ---------------------------------------------------------------------------------------------------------
# Finding the scans.
# ---------------------------------------------------------------------------------------------------------
def scan_files(folder):
    """Every scan file under the folder and its subfolders (BU-3DFE and Bosphorus keep a folder per subject)."""
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: not a folder (--from-scans takes the collection's folder)")
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith('.'))  # not our own staging folders
        found += [os.path.join(root, name) for name in sorted(names) if name.lower().endswith(SCAN_SUFFIXES)]
    return found


def detect_collection(paths):
    """The collection whose file type all the scans share; UsageError when none or mixed."""
    suffixes = {os.path.splitext(path)[1].lower() for path in paths}
    matches = [name for name, suffix in SUFFIX_OF_COLLECTION.items() if suffixes == {suffix}]
    if not matches:
        found = ', '.join(sorted(suffixes)) or 'no scan files'
        raise UsageError(f"cannot tell the collection from its files ({found}); give --collection "
                         f"({', '.join(COLLECTIONS)}), and --scan-list for csv")
    return matches[0]


def find_collection(folder, collection=None, scan_list=None, keep_other_scans=False):
    """The Collection under `folder`: named as `collection` says (None: detected from the files' type)."""
    if scan_list is not None:
        collection = collection or 'csv'
        if collection not in ('csv', 'frgc'):
            raise UsageError(f"--scan-list is for --collection csv or frgc, not {collection}")
        return _with_references(collection, _listed_scans(folder, scan_list), [])
    paths = scan_files(folder)
    collection = collection or detect_collection(paths)
    if collection in ('csv', 'frgc'):
        raise UsageError(f"--collection {collection} needs --scan-list FILE.csv (file,subject,code): "
                         "FRGC names carry no expression")
    parse = _bu3dfe_scan if collection == 'bu3dfe' else _bosphorus_scan
    scans, skipped = [], []
    for path in paths:
        found = parse(path)
        if isinstance(found, str):
            skipped.append((path, found))
        else:
            scans.append(found)
    if collection == 'bosphorus' and keep_other_scans:
        scans = _others_as_mixtures(scans)
    skipped += [(scan.path, OTHER_SCAN) for scan in scans if scan.code == 'other']
    return _with_references(collection, [scan for scan in scans if scan.code != 'other'], skipped)


def _bu3dfe_scan(path):
    match = _BU3DFE_NAME.fullmatch(os.path.basename(path))
    if match is None or not os.path.basename(path).lower().endswith('.wrl'):
        return NOT_NAMED
    code, level = match['code'].upper(), int(match['level'])
    if (code == 'NE') != (level == 0) or level > 4:
        return NOT_NAMED
    return CollectionScan(path, match['subject'].upper(), code, level)


def _bosphorus_scan(path):
    """The scan of a Bosphorus name; action-unit, pose and occlusion scans get the code 'other'."""
    match = _BOSPHORUS_NAME.fullmatch(os.path.basename(path))
    if match is None:
        return NOT_NAMED
    kind, what, subject = match['kind'].upper(), match['what'].upper(), match['subject'].lower()
    if kind == 'N' and what == 'N':
        return CollectionScan(path, subject, 'NE', 0)
    if kind == 'E' and what in _BOSPHORUS_EMOTIONS:
        return CollectionScan(path, subject, _BOSPHORUS_EMOTIONS[what], PROTOTYPE_LEVEL)
    return CollectionScan(path, subject, 'other', 0)


def _others_as_mixtures(scans):
    """The other scans kept as mixtures, numbered MX01, MX02, ... per subject in file-name order."""
    numbers = {}
    for scan in scans:
        if scan.code == 'other' and numbers.get(scan.subject, 0) < MAX_OTHER_LEVEL:
            numbers[scan.subject] = numbers.get(scan.subject, 0) + 1
            scan.code, scan.level = 'MX', numbers[scan.subject]
    return scans


def _listed_scans(folder, scan_list):
    """The scans of a file,subject,code CSV (a header line is allowed); files are relative to `folder`."""
    try:
        with open(scan_list, newline='') as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"{scan_list}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    if rows and [cell.strip().lower() for cell in rows[0]] == ['file', 'subject', 'code']:
        rows = [None] + rows[1:]  # keeps the line numbers of the messages right
    scans = [_listed_scan(folder, scan_list, number, row) for number, row in enumerate(rows, 1) if row]
    if not scans:
        raise UsageError(f"{scan_list}: lists no scans (one line per scan: file,subject,code)")
    return sorted(scans, key=lambda scan: scan.path)


def _listed_scan(folder, scan_list, number, row):
    where = f"{scan_list}, line {number}"
    if len(row) != 3:
        raise UsageError(f"{where}: has {len(row)} fields, not 3 (file,subject,code)")
    name, subject, code = (cell.strip() for cell in row)
    match = _CSV_CODE.fullmatch(code.upper())
    if not name or not subject or match is None or match['code'] not in EXPRESSION_NAMES:
        raise UsageError(f"{where}: needs a file, a subject and a code of {', '.join(EXPRESSION_NAMES)} "
                         f"(with a two-digit level, e.g. HA04, or none), not {','.join(row)!r}")
    code = match['code']
    level = int(match['level']) if match['level'] else (0 if code == 'NE' else PROTOTYPE_LEVEL)
    path = os.path.join(folder, name)
    if not name.lower().endswith(SCAN_SUFFIXES):
        raise UsageError(f"{where}: {name} is not a 3D scan file ({', '.join(SCAN_SUFFIXES)})")
    return CollectionScan(path, subject, code, level)


def _with_references(kind, scans, skipped):
    """The scans without repeats of a subject's expression and level, each subject's first neutral first;
    UsageError when no scan is a neutral (nothing could be built: the naming is probably not this collection's)."""
    if not any(scan.is_neutral for scan in scans):
        reasons = sorted({reason for _, reason in skipped})
        raise UsageError(f"no scan is a {kind} neutral ({len(scans)} expressive scans found, {len(skipped)} files "
                         f"skipped{': ' + ', '.join(reasons) if reasons else ''}); see --collection")
    kept, seen = [], set()
    for scan in sorted(scans, key=lambda scan: (not scan.is_neutral, scan.path)):
        if (scan.subject, scan.label) in seen:
            skipped.append((scan.path, REPEAT))
        else:
            seen.add((scan.subject, scan.label))
            kept.append(scan)
    return Collection(kind, sorted(kept, key=lambda scan: scan.path), skipped)


def reference_neutrals(collection):
    """{subject: its reference neutral scan}."""
    return {scan.subject: scan for scan in collection.scans if scan.is_neutral and scan.label == 'NE00'}


# ---------------------------------------------------------------------------------------------------------
# Splits and names.
# ---------------------------------------------------------------------------------------------------------
def split_subjects(subjects, seed):
    """{subject: split}: subject-disjoint, 70/15/15 after a seeded shuffle, at least one subject in each split
    from three subjects on (fewer all train)."""
    order = sorted(subjects)
    np.random.default_rng(seed).shuffle(order)
    count = len(order)
    held_out = [max(1, round(SPLIT_SHARES[split] * count)) if count >= 3 else 0 for split in ('valid', 'test')]
    sizes = {'train': count - sum(held_out), 'valid': held_out[0], 'test': held_out[1]}
    splits, start = {}, 0
    for split in SPLITS:
        splits.update({subject: split for subject in order[start:start + sizes[split]]})
        start += sizes[split]
    return splits


def numbered_subjects(splits):
    """{subject: 'SSSS'}: numbered 0000... over the splits in the order train, valid, test, as make_dataset
    numbers its subjects; UsageError beyond the four digits of the names."""
    if len(splits) > 10000:
        raise UsageError(f"{len(splits)} subjects do not fit the four-digit subject numbers of the file names")
    ordered = sorted(splits, key=lambda subject: (SPLITS.index(splits[subject]), subject))
    return {subject: f'{number:04d}' for number, subject in enumerate(ordered)}
