"""make_dataset --from-scans on synthetic collections in each database's format (scanning/synthetic_collection.py):
the pairs built are the exact pairs in the neutral's frame, bad files are named and skipped, what was built
trains and tests, and the collections' naming, lists and splits."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, TINY_NETWORK, assert_one_line_error, run_program
from depth.png import read_depth_png
from faces.model import DEFAULT_FACE_MODEL, load_face_model
from scanning import collection as found
from scanning.measurement import HEIGHT_ERROR_BOUND_MM, height_error_and_coverage
from scanning.synthetic_collection import SCAN_LIST, write_collection
from support.command_line import UsageError

# Few scans (prepare_scan takes seconds each): BU-3DFE 3 subjects (one per split, for training and testing).
SUBJECTS = {'bu3dfe': (3, ('HA',)), 'bosphorus': (2, ('SU',)), 'frgc': (2, ('SA',))}
MIN_COVERAGE = 0.9


def make_dataset(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'make_dataset.py'), *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def add_bad_files(folder, kind, scans):
    """Files the build must name on one line each and skip: {path: reason}."""
    good = scans[1].path  # an expressive scan's file
    if kind == 'bu3dfe':
        no_index = os.path.join(folder, 'F0010_NE00WH_F3D.wrl')
        with open(good) as source, open(no_index, 'w') as broken:
            broken.write(source.read().replace('coordIndex', 'colorIndex', 1))
        orphan = os.path.join(folder, 'F0010_AN02WH_F3D.wrl')
        shutil.copy(good, orphan)
        return {no_index: found.UNREADABLE, orphan: found.NO_NEUTRAL}
    if kind == 'bosphorus':
        truncated = os.path.join(folder, 'subject0', 'bs000_E_FEAR_0.bnt')
        with open(good, 'rb') as source, open(truncated, 'wb') as cut:
            cut.write(source.read()[:5000])
        action_unit = os.path.join(folder, 'subject0', 'bs000_LFAU_12_0.bnt')
        shutil.copy(good, action_unit)
        return {truncated: found.UNREADABLE, action_unit: found.OTHER_SCAN}
    short = os.path.join(folder, '04200d90.abs')
    with open(good) as source:
        lines = source.read().splitlines()
    lines[6] = ' '.join(lines[6].split()[:-10])  # the Z grid 10 values short
    with open(short, 'w') as file:
        file.write('\n'.join(lines) + '\n')
    huge = os.path.join(folder, '04201d91.abs')
    with open(huge, 'w') as file:
        file.write('1000000000 rows\n1 columns\npixels (flag X Y Z):\n1\n0\n0\n0\n')
    with open(os.path.join(folder, SCAN_LIST), 'a') as listed:
        listed.write('04200d90.abs,04200,FE04\n04201d91.abs,04201,DI\n')
    return {short: found.UNREADABLE, huge: found.UNREADABLE}


@pytest.fixture(scope='module')
def model():
    return load_face_model(DEFAULT_FACE_MODEL)


@pytest.fixture(scope='module')
def built(model, tmp_path_factory):
    """{format: (scans, bad files, output folder, finished make_dataset)}, each collection built on 2 workers."""
    results = {}
    for seed, (kind, (subjects, codes)) in enumerate(SUBJECTS.items()):
        folder = tmp_path_factory.mktemp(kind)
        scans = write_collection(str(folder / 'scans'), kind, model, subjects, codes, seed=seed)
        bad = add_bad_files(str(folder / 'scans'), kind, scans)
        listing = ['--scan-list', folder / 'scans' / SCAN_LIST] if kind == 'frgc' else []
        output = folder / 'data'
        finished = make_dataset('--from-scans', folder / 'scans', '--output', output, '--workers', 2, *listing)
        results[kind] = scans, bad, output, finished
    return results


def built_pairs(output):
    description = json.loads((output / 'dataset.json').read_text())
    for name, entry in description['files'].items():
        read = lambda side: read_depth_png(output / side / entry['split'] / name)[0]
        yield name, entry, read('inputs'), read('targets')


@pytest.mark.parametrize('kind', SUBJECTS)
def test_each_built_pair_is_the_exact_pair_in_the_neutrals_frame(built, model, kind):
    scans, _, output, finished = built[kind]
    assert finished.returncode == 0, finished.stderr
    by_file = {os.path.relpath(scan.path, output.parent / 'scans'): scan for scan in scans}
    pairs = list(built_pairs(output))
    assert len(pairs) == len(scans)
    for name, entry, input_mm, target_mm in pairs:
        scan, neutral = by_file[entry['input_scan']], by_file[entry['target_scan']]
        assert name[5:9] == scan.label and neutral.label == 'NE00' and neutral.subject == scan.subject
        for image, exact in ((input_mm, scan.exact_depth_mm(model)), (target_mm, neutral.exact_depth_mm(model))):
            error, coverage = height_error_and_coverage(image, exact)
            assert error <= HEIGHT_ERROR_BOUND_MM and coverage >= MIN_COVERAGE, (kind, name, error, coverage)


@pytest.mark.parametrize('kind', SUBJECTS)
def test_bad_files_are_named_on_one_line_each_and_counted(built, kind):
    _, bad, output, finished = built[kind]
    assert 'Traceback' not in finished.stderr
    lines = finished.stderr.strip().splitlines()
    refused = {path: reason for path, reason in bad.items() if reason == found.UNREADABLE}
    assert len(lines) == len(refused), finished.stderr
    for path in refused:
        assert sum(line.startswith(f'make_dataset.py: skipped {path}: ') for line in lines) == 1, (path, lines)
    description = json.loads((output / 'dataset.json').read_text())
    not_used = {entry['scan']: entry['reason'] for entry in description['not_used']}
    assert not_used == {os.path.relpath(path, output.parent / 'scans'): reason for path, reason in bad.items()}
    summary = description['summary']
    assert sum(summary['refused'].values()) == len(refused) and summary['used'] == len(description['files'])
    assert f"{summary['used']} scans used" in finished.stdout and f"unreadable: {len(refused)}" in finished.stdout
    assert 'scans/s' in finished.stdout  # the progress line


def test_splits_are_subject_disjoint_and_the_layout_is_data128_128(built):
    _, _, output, _ = built['bu3dfe']
    description = json.loads((output / 'dataset.json').read_text())
    members = {split: [subject['id'] for subject in subjects] for split, subjects in description['splits'].items()}
    assert sorted(map(len, members.values())) == [1, 1, 1] and members['train'] == ['0000']
    for split, ids in members.items():
        names = sorted(os.listdir(output / 'inputs' / split))
        assert names == sorted(os.listdir(output / 'targets' / split)) == [f'{ids[0]}_HA04.png', f'{ids[0]}_NE00.png']


def test_a_built_set_trains_and_tests(built, tmp_path):
    _, _, output, _ = built['bu3dfe']
    common = ['--data', output, '--checkpoint-dir', tmp_path / 'checkpoints', '--results-dir', tmp_path / 'results',
              *TINY_NETWORK]
    trained = run_program('--mode', 'train', '--max-steps', 4, *common)
    assert trained.returncode == 0, trained.stderr
    tested = run_program('--mode', 'test', *common)
    assert tested.returncode == 0, tested.stderr
    assert 'test' in tested.stdout and 'Traceback' not in tested.stderr


def test_prepare_reads_each_format_in_a_folder(built, model, tmp_path):
    """--mode prepare takes the three formats in one folder; each comes out as its exact render (the built
    pairs' inputs checked the frame aligned to the neutral; this checks the scans' own frame)."""
    folder = tmp_path / 'scans'
    folder.mkdir()
    chosen = {}
    for kind, (scans, _, _, _) in built.items():
        scan = scans[1]
        shutil.copy(scan.path, folder)
        chosen[os.path.splitext(os.path.basename(scan.path))[0] + '.png'] = scan
    finished = run_program('--mode', 'prepare', '--input', folder, '--output', tmp_path / 'prepared')
    assert finished.returncode == 0, finished.stderr
    for name, scan in chosen.items():
        error, coverage = height_error_and_coverage(read_depth_png(tmp_path / 'prepared' / name)[0],
                                                    scan.exact_depth_mm(model))
        assert error <= HEIGHT_ERROR_BOUND_MM and coverage >= MIN_COVERAGE, (name, error, coverage)


def test_an_existing_output_is_never_overwritten_without_overwrite(built):
    scans, _, output, _ = built['bosphorus']
    before = {path: path.read_bytes() for path in output.rglob('*') if path.is_file()}
    again = make_dataset('--from-scans', output.parent / 'scans', '--output', output)
    assert_one_line_error(again, 'make_dataset.py: error: ', '--overwrite')
    assert {path: path.read_bytes() for path in output.rglob('*') if path.is_file()} == before


# ---------------------------------------------------------------------------------------------------------
# The command line, names, lists and splits (no scan prepared).
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('arguments, fragment', [
    (['--collection', 'bu3dfe'], '--collection needs --from-scans'),
    (['--from-scans', '.'], '--from-scans needs --output'),
    (['--from-scans', '.', '--output', 'x', '--train-subjects', '3'], '--train-subjects is for the face model'),
])
def test_bad_command_lines_get_one_line(arguments, fragment):
    assert_one_line_error(make_dataset(*arguments), fragment)


def test_a_collection_that_cannot_be_told_or_listed_gets_one_line(tmp_path):
    (tmp_path / 'scans').mkdir()
    (tmp_path / 'scans' / '04200d01.abs').write_text('not read')
    no_list = make_dataset('--from-scans', tmp_path / 'scans', '--output', tmp_path / 'out')
    assert_one_line_error(no_list, '--scan-list')
    (tmp_path / 'list.csv').write_text('file,subject,code\n04200d01.abs,04200,XX\n')
    bad_code = make_dataset('--from-scans', tmp_path / 'scans', '--output', tmp_path / 'out', '--scan-list',
                            tmp_path / 'list.csv')
    assert_one_line_error(bad_code, 'list.csv, line 2')
    (tmp_path / 'scans' / 'bs000_N_N_0.bnt').write_text('not read')
    wrong_naming = make_dataset('--from-scans', tmp_path / 'scans', '--output', tmp_path / 'out', '--collection',
                                'bu3dfe')
    assert_one_line_error(wrong_naming, 'no scan is a bu3dfe neutral', 'name not understood')
    assert not (tmp_path / 'out').exists()


def test_bu3dfe_and_bosphorus_names(tmp_path):
    names = ['F0001_NE00WH_F3D.wrl', 'F0001_AN03WH_F3D.wrl', 'M0002_SU04AE_F3D.wrl', 'F0001_HA01WH_RAW.wrl',
             'F0001_HA05WH_F3D.wrl']
    for name in names:
        (tmp_path / name).write_text('')
    collection = found.find_collection(str(tmp_path))
    assert collection.kind == 'bu3dfe'
    assert [(scan.subject, scan.label) for scan in collection.scans] == [('F0001', 'AN03'), ('F0001', 'NE00'),
                                                                         ('M0002', 'SU04')]
    assert sorted(reason for _, reason in collection.skipped) == [found.NOT_NAMED] * 2
    bosphorus = tmp_path / 'bosphorus'
    bosphorus.mkdir()
    for name in ['bs000_N_N_0.bnt', 'bs000_N_N_1.bnt', 'bs000_E_HAPPY_0.bnt', 'bs000_YR_R10_0.bnt',
                 'bs000_O_EYE_0.bnt']:
        (bosphorus / name).write_text('')
    left_out = found.find_collection(str(bosphorus))
    assert [scan.label for scan in left_out.scans] == ['HA04', 'NE00']
    assert sorted(reason for _, reason in left_out.skipped) == sorted([found.OTHER_SCAN] * 2 + [found.REPEAT])
    kept = found.find_collection(str(bosphorus), keep_other_scans=True)
    assert [scan.label for scan in kept.scans] == ['HA04', 'NE00', 'MX01', 'MX02']


def test_splits_are_seeded_subject_disjoint_and_never_empty_from_three_subjects():
    subjects = [f's{number}' for number in range(20)]
    splits = found.split_subjects(subjects, seed=3)
    assert [list(splits.values()).count(split) for split in ('train', 'valid', 'test')] == [14, 3, 3]
    assert splits == found.split_subjects(reversed(subjects), seed=3) != found.split_subjects(subjects, seed=4)
    assert sorted(found.split_subjects(['a', 'b', 'c'], 0).values()) == ['test', 'train', 'valid']
    assert set(found.split_subjects(['a', 'b'], 0).values()) == {'train'}
    numbers = found.numbered_subjects(splits)
    assert sorted(numbers.values()) == [f'{number:04d}' for number in range(20)]
    with pytest.raises(UsageError, match='10001 subjects'):
        found.numbered_subjects({f's{number}': 'train' for number in range(10001)})


def test_expressions_that_leave_much_of_the_face_still_are_aligned_to_their_neutral(built):
    """Sadness leaves forehead and nose still (over 2,000 points): those pairs go through the rigid alignment that
    test_each_built_pair_is_the_exact_pair_in_the_neutrals_frame measured; a full surprise leaves too little."""
    for kind, code, aligned in (('frgc', 'SA', True), ('bosphorus', 'SU', False)):
        description = json.loads((built[kind][2] / 'dataset.json').read_text())
        entries = [entry for entry in description['files'].values() if entry['code'] == code]
        assert entries and all(entry['aligned_to_neutral'] == aligned for entry in entries), (kind, entries)
        assert all(entry['alignment_mm'] < 0.5 for entry in entries)
