"""bench.py: the FLOP count against a hand count, and a tiny end-to-end run producing every JSON field.

No test asserts a speed: machines are noisy, and speed lives in the benchmark.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO

import bench
from benchmark.report import MEASURED_KEYS, PRECISIONS, SUFFIX, assemble
from convworking import ARCHITECTURE_DEFAULTS


def hand_count(height, width, channels_in, convolutions):
    """Multiply-adds of 'SAME' convolutions (kernel, stride, channels out) then a 2x2 pool, module by module."""
    total = 0
    for kernel, stride, channels in convolutions:
        if kernel is None:                                  # a 2x2 max pool: no multiply-adds, halves the size
            height, width = height // 2, width // 2
            continue
        height, width = height // stride, width // stride
        total += height * width * channels * kernel * kernel * channels_in
        channels_in = channels
    return total


def test_flop_count_of_a_tiny_network_matches_a_hand_count():
    architecture = dict(ARCHITECTURE_DEFAULTS, channels=8, kernel_size=3, modules=2)
    # 128x128x1 -> C3,8,s2: 64x64x8, 9 taps of 1 channel; C3,8,s1: 64x64x8, 9 taps of 8; pool -> 32x32
    #           -> C3,8,s2: 16x16x8, 9 taps of 8;     C3,8,s1: 16x16x8, 9 taps of 8; pool -> 8x8
    by_hand = 64 * 64 * 8 * 9 * 1 + 64 * 64 * 8 * 9 * 8 + 16 * 16 * 8 * 9 * 8 + 16 * 16 * 8 * 9 * 8
    assert hand_count(128, 128, 1, [(3, 2, 8), (3, 1, 8), (None, 0, 0)] * 2) == by_hand
    flops = bench.network_flops(architecture)
    assert flops['encoder_multiply_adds'] == by_hand
    assert flops['forward'] == 2 * 2 * by_hand          # decoder mirrors the encoder; 1 multiply-add = 2 FLOPs
    assert flops['train'] == 3 * flops['forward']


def test_flop_count_of_the_7x7_network_is_the_issues_3_8_gflop():
    flops = bench.network_flops(dict(ARCHITECTURE_DEFAULTS, kernel_size=7))
    by_hand = hand_count(128, 128, 1, [(7, 2, 64), (7, 1, 64), (None, 0, 0)] * 3)
    assert flops['encoder_multiply_adds'] == by_hand == 944_111_616
    assert flops['forward'] == pytest.approx(3.78e9, rel=1e-3)


def test_flop_count_of_the_default_5x5_network_matches_a_hand_count():
    flops = bench.network_flops(ARCHITECTURE_DEFAULTS)
    kernel, channels = ARCHITECTURE_DEFAULTS['kernel_size'], ARCHITECTURE_DEFAULTS['channels']
    assert flops['encoder_multiply_adds'] == hand_count(128, 128, 1, [(kernel, 2, channels), (kernel, 1, channels),
                                                                     (None, 0, 0)] * 3) == 481_689_600


def test_ratios_pair_windows_of_the_same_round_and_the_program_pays_its_periodic_block():
    def window(round_, seconds):
        return {'round': round_, 'seconds': seconds, 'images': 16}
    windows = {'float32': {'program': [window(0, 1.0), window(1, 2.0)], 'bare': [window(0, 0.5), window(1, 4.0)]}}
    finals = {'float32': {'program': {'periodic_per_step_s': 0.25, 'peak_rss_mb': 100.0}}}
    flops = {'forward': 2e9, 'train': 6e9}
    report = assemble(windows, finals, {'steps': 2}, 'float32', flops, {'bfloat16': 'not asked'}, {})
    assert report['train_program_steady_img_s'] == pytest.approx((16 + 8) / 2)
    # each window pays its 2 steps' share of the periodic block: 2 x 0.25 s
    assert report['spread']['train_program_img_s'] == pytest.approx([16 / 2.5, 16 / 1.5])
    # round 0: 16 / 32, round 1: 8 / 4; the ratio of the medians (12 / 18) would hide the machine's drift
    assert report['ratios']['program_steady_over_bare'] == pytest.approx((0.5 + 2.0) / 2)
    assert report['gflops_bare'] == pytest.approx(report['train_bare_img_s'] * 6)
    assert report['train_bare_img_s_bf16'] is None and report['null_because']['train_bare_img_s_bf16'] == 'not asked'


def test_tiny_benchmark_writes_every_field(tiny_data, tmp_path):
    out = tmp_path / 'bench.json'
    finished = subprocess.run([sys.executable, f'{REPO}/bench.py', '--tiny', '--data', tiny_data, '--out', str(out)],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['default_precision'] in PRECISIONS
    measured = report['settings']['precisions']
    assert report['default_precision'] in measured
    keys = ['gflop_per_train_image', *MEASURED_KEYS,
            *(key + SUFFIX[precision] for key in MEASURED_KEYS for precision in PRECISIONS)]
    for key in keys:
        assert key in report, key
    for key, value in report.items():
        if value is None:     # null only where a measurement was not made, with the reason
            assert report['null_because'].get(key, 'not measured') != 'not measured', key
    torch_present = 'torch' not in report['skipped']
    for key in keys:
        precision = next((p for p in PRECISIONS if key.endswith(SUFFIX[p])), report['default_precision'])
        if precision in measured and (torch_present or 'torch' not in key):
            assert report[key] is not None and report[key] > 0, key
    assert report['gflop_per_train_image'] == pytest.approx(3 * bench.network_flops(report['settings'][
        'architecture'])['forward'] / 1e9)
    assert report['failures'] == {}
    assert {'date', 'machine', 'versions', 'spread', 'ratios', 'settings'} <= set(report)
    # The peers are the same network: the same number of weights and moving statistics, kernels tied.
    details = report['details']
    suffix = SUFFIX[report['default_precision']]
    assert details['keras' + suffix]['parameters'] == details['graph' + suffix]['parameters']
    assert details['keras' + suffix]['kernel_variables'] == 2 * report['settings']['architecture']['modules']
    if torch_present:
        assert details['torch' + suffix]['parameters'] == details['graph' + suffix]['parameters']
    assert '| training, batch 4: program' in finished.stdout and 'program / bare graph' in finished.stdout


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize('args, fragment', [
    (['--targets', 'MISSING'], 'No such file'), (['--targets', 'MALFORMED'], 'not a targets file'),
    (['--out', 'NOWHERE/x.json'], 'does not exist'), (['--out', 'FOLDER'], 'is a folder'),
    (['--data', 'NOWHERE'], 'no such folder'), (['--kernel-size', '2147483647'], '--kernel-size'),
    (['--channels', '2147483647'], '--channels')])
def test_bench_refuses_bad_inputs_and_outputs_before_the_work(tmp_path, args, fragment):
    (tmp_path / 'malformed.json').write_text('{"targets": [{"ratio": "x"}]}')
    places = {'MISSING': 'missing.json', 'MALFORMED': 'malformed.json', 'NOWHERE': 'nowhere', 'FOLDER': ''}
    for mark, name in places.items():
        args = [word.replace(mark, str(tmp_path / name)) for word in args]
    started = time.time()
    done = run_script('bench.py', '--tiny', *args)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith('bench.py: error: ') and fragment in done.stderr and 'Traceback' not in done.stderr
    assert time.time() - started < 60 and os.listdir(tmp_path) == ['malformed.json']


@pytest.mark.parametrize('args, fragment', [
    (['--output', os.path.join(REPO, 'results', 'scan_benchmark.json')], 'give --overwrite'),
    (['--checkpoint', 'NOWHERE'], 'no such checkpoint'), (['--preview', 'NOWHERE/p.png'], 'does not exist'),
    (['--output', 'NOWHERE/s.json'], 'does not exist')])
def test_scan_benchmark_refuses_before_the_work_and_keeps_the_tracked_results(tmp_path, args, fragment):
    tracked = open(os.path.join(REPO, 'results', 'scan_benchmark.json'), 'rb').read()
    args = [word.replace('NOWHERE', str(tmp_path / 'nowhere')) for word in args]
    done = run_script('scan_benchmark.py', *args)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert fragment in done.stderr and 'Traceback' not in done.stderr
    assert open(os.path.join(REPO, 'results', 'scan_benchmark.json'), 'rb').read() == tracked
