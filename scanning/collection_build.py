"""make_dataset --from-scans: a 3D face collection (scanning/collection.py) -> the data128_128 layout.

Each subject's reference neutral is prepared first (scanning/alignment.prepare_scan): its depth image is the
target of every pair of the subject, and its own pair (NE00) holds it as input too. Then every expressive scan
is prepared and aligned to its neutral by a rigid point-to-plane ICP of the scan's own points where the face
stays still (the face-model vertices that neither its fitted expression nor the neutral's moves: with most
expressions the nose, nose bridge and parts of the forehead) against the neutral scan's points. Each prepared
frame comes from a face model fitted to one scan, and on a real face an expression can pull that fit; the
alignment puts the expressive scan in the neutral's frame by the surfaces themselves. Then the expressive scan is
rendered in the neutral's frame, completed by its own fitted face.

Scans are prepared in worker processes (one scan per task); the main process writes the images, so the files
do not depend on the number of workers. The dataset is written through faces.generator.staged_write.
"""
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth.convention import DESCRIPTION
from depth.dataset import SPLITS
from depth.png import write_depth_png
from faces.generator import GENERATOR, GENERATOR_VERSION, staged_write
from scanning import collection as found
from scanning.alignment import (OUTLIER_FACTOR, OUTLIER_FLOOR_MM, ScanError, framed_depth_mm, nearest_indexed,
                                nearest_neighbour_index, point_to_plane_system, prepare_scan, small_rotation)
from scanning.mesh_io import MeshError, read_scan
from support.command_line import UsageError, leave_ctrl_c_to_the_parent
from support.progress import ProgressLine

# The surface the alignment matches: the scan's points near the face-model vertices that neither the scan's fitted
# expression nor its neutral's moves by STILL_MM, and that lie ERODE_MM from every vertex one of them does move.
# The template's steady vertices (no expression shape moves them by 3 mm) are not still enough: shapes add up, and
# a full surprise moves its forehead by more; a scan-to-scan ICP on them turned two synthetic surprised faces by
# 0.8 and 1.1 degrees (1.0-1.2 mm median height error; 0.17 mm in their own prepared frames). Still vertices next
# to moving ones meet surfaces that moved over them (eyelids over the eyeballs, the jaw over the neck): an ICP in
# the true frames on vertices no expression moved by 0.3 mm, not eroded, drifted 0.2-0.3 degrees. With these
# values the two surprised faces came out at 0.26 and 0.41 mm (erosion 0: 0.38, 0.35 mm; 6 mm: 0.36, 0.22 mm,
# on 230-250 points). On synthetic faces, which the face model fits exactly, the scans' own prepared frames are
# closer still; the alignment is for real faces, whose fit an expression can pull (see README).
STILL_MM = 0.3
ERODE_MM = 3.0
NORMAL_NEIGHBOURS = 12  # the neutral's normals: the plane through each point and its nearest neighbours
ICP_ITERATIONS = 30
ICP_CONVERGED = 1e-6  # radians and mm: a step this small ends the iteration
MIN_STEADY_POINTS = 100  # the synthetic smiling model-mesh .wrl scans (a few mm between vertices) had 177-2,406
# Fewer still points than this (happy and surprised faces leave the nose and bits of the forehead still) are matched
# only to tell a wrong neutral; the scan keeps its own prepared frame. On 16 synthetic Bosphorus-like scans (4
# subjects x HA, SU, AN, SA at level 04, seed 2026) those with 286-997 still points came out at 0.17-0.70 mm
# median height error aligned (3 beyond 0.5 mm), 0.10-0.42 mm in their own frames; those with 10,676-17,288
# (anger, sadness) at 0.14-0.31 mm aligned.
MIN_ALIGNMENT_POINTS = 2000
MATCHES_NEUTRAL_MM = 1.0  # the median still-surface distance above which a scan is not its subject's neutral
DOES_NOT_MATCH = 'does not match its neutral'
REFUSED = (found.NOT_A_FACE, found.UNREADABLE, DOES_NOT_MATCH)


@dataclass
class Neutral:
    """What the expressive scans of a subject need of its reference neutral."""
    depth_mm: np.ndarray
    points: np.ndarray  # (N, 3) the neutral scan's kept points in its frame
    normals: np.ndarray
    expression_weights: np.ndarray  # its fitted expression (identity weights 0), to tell still vertices
    facts: dict  # for dataset.json


# ---------------------------------------------------------------------------------------------------------
# One scan (in a worker).
# ---------------------------------------------------------------------------------------------------------
def prepared_in_frame(path, template):
    """(prepared scan, the fitted face in the scan's frame); ScanError or MeshError when it fails."""
    prepared = prepare_scan(read_scan(path), template)
    weights = prepared.registration.weights
    fitted = template.face(weights) - template.neutral_nose_tip(weights)
    return prepared, fitted


def expression_only(weights, template):
    only = np.array(weights, np.float64)
    only[:template.identity_count] = 0.0
    return only


def still_vertices(template, fitted, *expression_weights):
    """Which of the template's sampled vertices none of these expressions moves by STILL_MM, ERODE_MM or more
    from every vertex one of them does move (distances on the fitted face)."""
    modes = template.modes[:, template.sample]
    motion = np.max([np.linalg.norm(np.einsum('m,mvk->vk', weights, modes), axis=1) for weights in expression_weights],
                    axis=0)
    moving = motion >= STILL_MM
    if not moving.any():
        return ~moving
    squared = nearest_indexed(nearest_neighbour_index(fitted[template.sample[moving]]), fitted[template.sample])[1]
    return ~moving & (squared > ERODE_MM ** 2)


def plane_normals(points, neighbours=NORMAL_NEIGHBOURS):
    """Unit normals of the planes fitted (least squares) to each point's nearest neighbours."""
    index = nearest_neighbour_index(points)
    found_indices, _ = index.knnSearch(points.astype(np.float32), min(neighbours, len(points)), params=dict(checks=-1))
    patches = points[found_indices] - points[found_indices].mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum('npi,npj->nij', patches, patches))
    return vectors[:, :, 0]  # eigenvalues ascend: the direction of least spread


def prepare_neutral(path, template):
    prepared, _ = prepared_in_frame(path, template)
    points = prepared.framed_mm[prepared.kept]
    return Neutral(prepared.depth_mm, points, plane_normals(points),
                   expression_only(prepared.registration.weights, template), scan_facts(prepared))


def rigid_alignment(points, neutral: Neutral):
    """(rotation, translation, median distance) moving `points` onto the neutral scan's surface."""
    index = nearest_neighbour_index(neutral.points)
    rotation, translation = np.eye(3), np.zeros(3)
    for _ in range(ICP_ITERATIONS):
        moved = points @ rotation.T + translation
        nearest, squared = nearest_indexed(index, moved)
        distance = np.sqrt(squared)
        inlier = distance < max(OUTLIER_FACTOR * np.median(distance), OUTLIER_FLOOR_MM)
        rows, values = point_to_plane_system(moved[inlier], neutral.points[nearest[inlier]],
                                             neutral.normals[nearest[inlier]], None)
        solution = np.linalg.lstsq(rows, values, rcond=None)[0]
        step = small_rotation(solution[:3])
        rotation, translation = step @ rotation, step @ translation + solution[3:]
        if np.abs(solution).max() < ICP_CONVERGED:
            break
    moved = points @ rotation.T + translation
    nearest, _ = nearest_indexed(index, moved)
    gaps = np.abs(np.einsum('nk,nk->n', moved - neutral.points[nearest], neutral.normals[nearest]))
    return rotation, translation, float(np.median(gaps))


def prepare_expressive(path, neutral: Neutral, template):
    """The depth image of an expressive scan in its neutral's frame, and its facts for dataset.json."""
    prepared, fitted = prepared_in_frame(path, template)
    still = still_vertices(template, fitted, expression_only(prepared.registration.weights, template),
                           neutral.expression_weights)
    points = prepared.framed_mm[prepared.kept]
    # A point belongs to its nearest sampled vertex: as many points as the scan has there, dense or sparse.
    nearest = nearest_indexed(nearest_neighbour_index(fitted[template.sample]), points)[0]
    steady = points[still[nearest]]
    if len(steady) < MIN_STEADY_POINTS:
        raise ScanError(f"{DOES_NOT_MATCH}: only {len(steady)} of its points lie where its expression leaves the "
                        f"face still (at least {MIN_STEADY_POINTS})")
    rotation, translation, gap = rigid_alignment(steady, neutral)
    if gap > MATCHES_NEUTRAL_MM:
        raise ScanError(f"{DOES_NOT_MATCH}: where its expression leaves the face still it lies {gap:.1f} mm "
                        f"from the neutral (at most {MATCHES_NEUTRAL_MM} mm)")
    aligned = len(steady) >= MIN_ALIGNMENT_POINTS
    if not aligned:  # too small a patch to turn the scan by: its own prepared frame is closer (see above)
        rotation, translation = np.eye(3), np.zeros(3)
    depth = framed_depth_mm(prepared.triangles, prepared.framed_mm @ rotation.T + translation, prepared.kept,
                            fitted @ rotation.T + translation, template)
    turn = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    return depth, {**scan_facts(prepared), 'aligned_to_neutral': aligned, 'alignment_points': len(steady),
                   'alignment_mm': round(gap, 3), 'alignment_turn_deg': round(turn, 3),
                   'alignment_shift_mm': round(float(np.linalg.norm(translation)), 3)}


def scan_facts(prepared):
    registration = prepared.registration
    return {'units': prepared.units, 'fit_mm': round(registration.residual_mm, 3),
            'fit_share': round(registration.inlier_fraction, 3)}


_worker_template = None  # the face template in a worker process, set once by the pool's initializer


def _set_worker_template(template):
    global _worker_template
    _worker_template = template
    leave_ctrl_c_to_the_parent()


def _run(job):
    """(path, result or None, (reason, message) or None): a failure is an answer, not an exception."""
    path, neutral = job
    try:
        if neutral is None:
            return path, prepare_neutral(path, _worker_template), None
        return path, prepare_expressive(path, neutral, _worker_template), None
    except MeshError as error:
        return path, None, (found.UNREADABLE, str(error))
    except ScanError as error:
        reason = DOES_NOT_MATCH if str(error).startswith(DOES_NOT_MATCH) else found.NOT_A_FACE
        return path, None, (reason, f"{path}: {error}")


# ---------------------------------------------------------------------------------------------------------
# The collection (main process).
# ---------------------------------------------------------------------------------------------------------
class Build:
    """The run's bookkeeping: what was used, skipped and refused, and the files written."""

    def __init__(self, options, collection, folder: Path, total):
        self.options, self.folder = options, folder
        self.files, self.not_used = {}, list(collection.skipped)
        self.progress = ProgressLine(total, counted=' scans', unit='scans', log_interval=10.0)
        self.done = 0

    def relative(self, path):
        return os.path.relpath(path, self.options.from_scans)

    def failed(self, path, reason, message=None):
        if message:
            self.progress.end_line()
            print(f"{GENERATOR}: skipped {message}", file=sys.stderr, flush=True)
        self.not_used.append((path, reason))

    def counted(self):
        self.done += 1
        self.progress.update(self.done)

    def write_pair(self, name, split, input_mm, target_mm, entry):
        write_depth_png(self.folder / 'inputs' / split / name, input_mm)
        write_depth_png(self.folder / 'targets' / split / name, target_mm)
        self.files[name] = entry


def prepared_scans(options, template, jobs):
    """(path, result, failure) of every job (path, its neutral or None for a neutral), in the order they finish."""
    if options.workers == 1 or len(jobs) <= 1:
        _set_worker_template(template)
        yield from map(_run, jobs)
        return
    with multiprocessing.Pool(min(options.workers, len(jobs)), _set_worker_template, (template,)) as pool:
        yield from pool.imap_unordered(_run, jobs)


def build_collection(options, template, collection):
    """Prepare, align and write the collection into options.output (staged); returns the dataset.json summary."""
    neutrals = found.reference_neutrals(collection)
    expressive = [scan for scan in collection.scans if neutrals.get(scan.subject) is not scan]
    summary = {}

    def write(folder):
        build = Build(options, collection, folder, len(neutrals) + len(expressive))
        ready = _neutrals(options, template, build, neutrals)
        splits = found.split_subjects(ready, options.seed)
        numbers = found.numbered_subjects(splits)
        for split in SPLITS:
            for side in ('inputs', 'targets'):
                (folder / side / split).mkdir(parents=True)
        for subject, neutral in ready.items():
            entry = _entry(build, splits[subject], numbers[subject], neutrals[subject], neutrals[subject])
            build.write_pair(f"{numbers[subject]}_NE00.png", splits[subject], neutral.depth_mm, neutral.depth_mm,
                             {**entry, **neutral.facts})
        _expressive(options, template, build, expressive, ready, neutrals, splits, numbers)
        summary.update(_summary(build, collection))
        description = _description(options, collection, build, splits, numbers, summary)
        (folder / 'dataset.json').write_text(json.dumps(description, indent=1) + '\n')

    staged_write(options.output, write)
    return summary


def _neutrals(options, template, build, neutrals):
    """{subject: Neutral} of the subjects whose reference neutral could be prepared; UsageError when none."""
    ready = {}
    by_path = {scan.path: scan for scan in neutrals.values()}
    jobs = [(scan.path, None) for scan in neutrals.values()]
    for path, neutral, failure in prepared_scans(options, template, jobs):
        build.counted()
        if failure:
            build.failed(path, *failure)
        else:
            ready[by_path[path].subject] = neutral
    if not ready:
        raise UsageError(f"{options.from_scans}: no subject has a neutral scan that could be prepared "
                         "(see the lines above); nothing was written")
    return dict(sorted(ready.items()))


def _expressive(options, template, build, scans, ready, neutrals, splits, numbers):
    jobs, by_path = [], {}
    for scan in scans:
        if scan.subject in ready:
            jobs.append((scan.path, ready[scan.subject]))
            by_path[scan.path] = scan
        else:  # its neutral is missing (counted now) or was refused (already reported)
            build.failed(scan.path, found.NO_NEUTRAL)
            build.counted()
    for path, result, failure in prepared_scans(options, template, jobs):
        build.counted()
        if failure:
            build.failed(path, *failure)
            continue
        scan = by_path[path]
        depth, facts = result
        split, number = splits[scan.subject], numbers[scan.subject]
        entry = _entry(build, split, number, scan, neutrals[scan.subject])
        build.write_pair(f"{number}_{scan.label}.png", split, depth, ready[scan.subject].depth_mm, {**entry, **facts})


def _entry(build, split, number, scan, neutral_scan):
    return {'split': split, 'subject': number, 'collection_subject': scan.subject, 'code': scan.code,
            'level': scan.level, 'input_scan': build.relative(scan.path),
            'target_scan': build.relative(neutral_scan.path)}


def _summary(build, collection):
    counts = {'used': len(build.files), 'skipped': {}, 'refused': {}}
    for _, reason in build.not_used:
        side = counts['refused' if reason in REFUSED else 'skipped']
        side[reason] = side.get(reason, 0) + 1
    return counts


def summary_line(summary):
    parts = [f"{summary['used']} scans used"]
    for side in ('skipped', 'refused'):
        reasons = summary[side]
        details = ', '.join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        parts.append(f"{sum(reasons.values())} {side}" + (f" ({details})" if details else ''))
    return '; '.join(parts)


def _description(options, collection, build, splits, numbers, summary):
    return {
        'convention': DESCRIPTION,
        'generator': {'program': GENERATOR, 'version': GENERATOR_VERSION},
        'seed': options.seed,
        'source': {'scans': str(options.from_scans), 'collection': collection.kind,
                   'keep_other_scans': options.keep_other_scans},
        'layout': "inputs/<split>/<name> and targets/<split>/<name>: an input is a scan prepared and aligned to its "
                  "subject's reference neutral (target_scan) on the forehead and nose; the target is that neutral "
                  "prepared. Paths are relative to source.scans.",
        'splits': {split: [{'id': numbers[subject], 'collection_subject': subject}
                           for subject in sorted(splits, key=numbers.get) if splits[subject] == split]
                   for split in SPLITS},
        'summary': summary,
        'not_used': [{'scan': build.relative(path), 'reason': reason} for path, reason in sorted(build.not_used)],
        'files': dict(sorted(build.files.items())),
    }
