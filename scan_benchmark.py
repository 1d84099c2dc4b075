"""Measure --mode prepare on synthetic 3D scans with a known answer (scanning.synthetic), and the whole path
scan -> prepare -> infer (scanning.measurement).

    python scan_benchmark.py      # the full pose grid, then prepare -> infer with the shipped model
                                  # (checkpoints/remove); writes runs/scan_benchmark.json
    python scan_benchmark.py --output results/scan_benchmark.json --overwrite   # the committed numbers
    python scan_benchmark.py --checkpoint PATH --output FILE.json
    python scan_benchmark.py --preview results/prepare_preview.png   # also the README's picture of a preview
    python scan_benchmark.py --sample samples/scan_surprise.ply      # only the committed sample scan, again
    python scan_benchmark.py --write-collection DIR --collection bu3dfe --subjects 20   # only a synthetic scan
                                  # collection (neutral + 4 expressions each) for make_dataset --from-scans
"""
if __name__ == '__main__':  # before the imports, which take a second: Ctrl-C during them ends it in one line
    from support.command_line import stop_at_once_while_starting
    stop_at_once_while_starting()

import json
import sys
import os
import tempfile

import numpy as np

from faces.model import DEFAULT_FACE_MODEL, load_face_model
from scanning.measurement import HEIGHT_ERROR_BOUND_MM, averages, measure_prepare, neutralisation_rmse, write_preview
from scanning.synthetic import SAMPLE_FILE, write_sample_scan
from scanning.synthetic_collection import write_collection
from support.command_line import (OneLineErrorParser, UsageError, check_existing, check_output_file, exit_status,
                                  whole_number)
from support.paths import REPOSITORY
from support.safe_files import write_strict_json

COLLECTION_CODES = ('HA', 'SU', 'AN', 'SA')


DEFAULT_OUTPUT = os.path.join(REPOSITORY, 'runs', 'scan_benchmark.json')


def checked_before_the_work(args):
    """--checkpoint, --output and --preview checked before minutes of measuring: the tracked
    results/scan_benchmark.json is replaced only when asked (--output and --overwrite)."""
    if args.output is None:
        os.makedirs(os.path.dirname(DEFAULT_OUTPUT), exist_ok=True)
        args.output = DEFAULT_OUTPUT
    else:
        check_output_file(args.output, '--output', overwrite=args.overwrite)
    if args.checkpoint:
        check_existing(args.checkpoint, '--checkpoint', 'checkpoint')
    if args.preview:
        check_output_file(args.preview, '--preview')


def main(argv=None):
    parser = OneLineErrorParser(description='Measure --mode prepare on synthetic scans over the promised '
                                                 'pose ranges, and the whole path scan -> prepare -> infer.')
    parser.add_argument('--checkpoint', help='the model infer uses (default: the shipped one, checkpoints/remove)')
    parser.add_argument('--seed', type=whole_number(0), default=2026,
                        help='seed of identities, expressions, shifts and defects')
    parser.add_argument('--output', default=None,
                        help=f'write every number here as JSON (default: {DEFAULT_OUTPUT}, which is not tracked)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --output')
    parser.add_argument('--preview', metavar='FILE.png', help="also write the README's picture of a preview here")
    parser.add_argument('--sample', metavar='FILE.ply',
                        help=f'only write the sample scan README tries ({SAMPLE_FILE}) here, and stop')
    parser.add_argument('--write-collection', metavar='DIR',
                        help='only write a synthetic scan collection into the new folder DIR and stop')
    parser.add_argument('--collection', choices=('bu3dfe', 'bosphorus', 'frgc'), default='bu3dfe',
                        help="--write-collection's file format (frgc also writes DIR/scans.csv)")
    parser.add_argument('--subjects', type=whole_number(1, 1000), default=20,
                        help='--write-collection: subjects, each scanned neutral and with HA, SU, AN, SA')
    args = parser.parse_args(argv)
    try:
        checked_before_the_work(args)
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    model = load_face_model(DEFAULT_FACE_MODEL)
    if args.sample:
        write_sample_scan(model, args.sample)
        return
    if args.write_collection:
        if os.path.exists(args.write_collection):
            parser.error(f"{args.write_collection}: exists; --write-collection writes a new folder")
        scans = write_collection(args.write_collection, args.collection, model, args.subjects, COLLECTION_CODES,
                                 seed=args.seed)
        print(f"wrote {len(scans)} {args.collection} scans of {args.subjects} subjects to {args.write_collection}")
        return
    if args.preview:
        write_preview(model, args.preview)
    with tempfile.TemporaryDirectory() as folder:
        rows = measure_prepare(model, folder, args.seed)
        path = {inputs: neutralisation_rmse(folder, inputs, args.checkpoint) for inputs in ('prepared', 'exact')}
    for row in rows:
        if 'refused' not in row:
            row['rmse_after_infer_mm'] = {inputs: path[inputs][row['name']] for inputs in path}
    prepared = [row for row in rows if 'refused' not in row]
    errors = [row['median_height_error_mm'] for row in prepared]
    big = [row['seconds'] for row in prepared if row['vertices'] >= 40000]
    summary = {'scans': len(rows), 'refused': len(rows) - len(prepared),
               'median_height_error_mm': {'median': float(np.median(errors)), 'max': max(errors)},
               'within_bound': sum(error <= HEIGHT_ERROR_BOUND_MM for error in errors),
               'coverage_min': min(row['coverage'] for row in prepared),
               'units_right': sum(row['units'] == row['units_found'] for row in prepared),
               'seconds_per_scan_of_40k_vertices_or_more': round(float(np.median(big)), 2) if big else None,
               'infer_on_prepared': averages(path['prepared']), 'infer_on_exact_renders': averages(path['exact']),
               'checkpoint': args.checkpoint or 'checkpoints/remove'}
    write_strict_json(args.output, {'summary': summary, 'scans': rows})
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    sys.exit(exit_status('scan_benchmark.py', main))
