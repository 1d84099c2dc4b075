"""The measurement of --mode prepare (and prepare -> infer) on synthetic scans (scanning.synthetic): the median
height error against the exact render, the coverage, the seconds per scan, and the RMSE after infer.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from depth.png import read_depth_png, write_depth_png
from evaluation.plotting import PREVIEW_FOLDER
from scanning.alignment import ScanError, face_template, prepare_scan
from scanning.mesh_io import read_scan, write_ply
from scanning.prepare import prepare_files
from scanning.synthetic import benchmark_scans, exact_depth_mm, new_subject, prototype, scan_file, synthetic_scan
from support.paths import REPOSITORY

HEIGHT_ERROR_BOUND_MM = 0.5  # the bound on the median height error over the face


def height_error_and_coverage(depth_mm, exact_mm):
    """Median absolute height difference (mm) where both images have a surface, and the share of the exact
    render's face that the prepared image covers."""
    face = exact_mm > 0
    both = face & (depth_mm > 0)
    return float(np.median(np.abs(depth_mm - exact_mm)[both])), float(both.sum() / face.sum())


def measure_prepare(model, folder, seed):
    """Write every scan of benchmark_scans as a file, read and prepare it as --mode prepare does (the seconds
    count both); write the prepared images, their exact renders and the neutral targets into
    folder/{prepared,exact,target}."""
    template = face_template(model)
    for name in ('scans', 'prepared', 'exact', 'target'):
        os.makedirs(os.path.join(folder, name))
    rows = []
    for item in benchmark_scans(model, seed):
        pose = item.pose
        path = scan_file(item, os.path.join(folder, 'scans'))
        started = time.monotonic()
        try:
            prepared = prepare_scan(read_scan(path), template)
        except ScanError as error:  # a failure to count, not to stop the measurement
            rows.append(dict(number=item.number, **pose, kind=item.kind, units=item.unit, refused=str(error)))
            print(f'{item.name} {pose} {item.kind} {item.unit}: refused: {error}', flush=True)
            continue
        seconds = time.monotonic() - started
        exact = exact_depth_mm(model, item.neutral, item.face)
        error, coverage = height_error_and_coverage(prepared.depth_mm, exact)
        for image, subfolder in ((prepared.depth_mm, 'prepared'), (exact, 'exact'),
                                 (exact_depth_mm(model, item.neutral, item.neutral), 'target')):
            write_depth_png(os.path.join(folder, subfolder, item.name), image)
        rows.append(dict(name=item.name, **pose, kind=item.kind, units=item.unit, units_found=prepared.units,
                         vertices=len(item.scan.vertices), median_height_error_mm=round(error, 4),
                         coverage=round(coverage, 4), seconds=round(seconds, 2)))
        print(f'{item.name} yaw {pose["yaw"]:+3d} pitch {pose["pitch"]:+3d} roll {pose["roll"]:+3d} {item.kind:7s} '
              f'{item.unit:2s} {len(item.scan.vertices):6d} vertices: median error {error:.3f} mm, '
              f'coverage {100 * coverage:.1f} %, {seconds:.1f} s', flush=True)
    return rows


def neutralisation_rmse(folder, inputs, checkpoint):
    """RMSE (mm, over the target's face) of --mode infer's output on each image of folder/inputs, and of the
    input itself (doing nothing): {image name: {'model': ..., 'identity': ...}}."""
    output = os.path.join(folder, f'infer_{inputs}')
    # --background input --threshold-mm 0: the network's own output on and beside the input's face, as --mode
    # test's RMSE measures it (what infer's background erases of the true face is test mode's 'as written').
    command = [sys.executable, os.path.join(REPOSITORY, 'convworking.py'), '--mode', 'infer', '--background', 'input',
               '--threshold-mm', '0', '--input', os.path.join(folder, inputs), '--output', output]
    command += ['--checkpoint', checkpoint] if checkpoint else []
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    errors = {}
    for name in sorted(os.listdir(os.path.join(folder, 'target'))):
        target, _ = read_depth_png(os.path.join(folder, 'target', name))
        face = target > 0
        errors[name] = {source: round(float(np.sqrt(np.mean((read_depth_png(path)[0] - target)[face] ** 2))), 3)
                        for source, path in (('model', os.path.join(output, name)),
                                             ('identity', os.path.join(folder, inputs, name)))}
    return errors


def averages(errors):
    """Mean and median over images of each RMSE of neutralisation_rmse (the test split reports the mean)."""
    return {f'{source}_rmse_mm_{name}': round(float(statistic([e[source] for e in errors.values()])), 3)
            for source in ('model', 'identity') for name, statistic in (('mean', np.mean), ('median', np.median))}


def write_preview(model, path, seed=42):
    """The README's picture: --mode prepare's preview of a two-view scan (in metres, with hair and shoulders) of
    a surprised new identity turned 20 degrees."""
    rng = np.random.default_rng(seed)
    neutral, face = new_subject(model, rng, prototype(model, 'SU'))
    scan = synthetic_scan(model, neutral, face, rng, 'scanner', 'm', dict(yaw=20))
    with tempfile.TemporaryDirectory() as folder:
        scan_path, prepared = os.path.join(folder, 'surprised.ply'), os.path.join(folder, 'prepared')
        write_ply(scan_path, scan.vertices, scan.triangles)
        prepare_files(scan_path, prepared, 'auto')
        shutil.copyfile(os.path.join(prepared, PREVIEW_FOLDER, 'surprised.png'), path)
