"""The speed benchmark's report: the measured windows assembled into the JSON's flat keys (medians, spreads,
paired ratios, every null with its reason), and the table and verdicts printed from it (bench.py's output).
"""
import json
import statistics

PRECISIONS = ('float32', 'bfloat16')
SUFFIX = {'float32': '_f32', 'bfloat16': '_bf16'}
# The JSON's measured quantities. Unsuffixed: in the precision convworking.py trains with by default on this
# machine (`default_precision`); with '_f32' / '_bf16': in that precision (null where not measured).
MEASURED_KEYS = ('train_program_img_s', 'train_program_steady_img_s', 'train_bare_img_s', 'train_keras_img_s',
                 'train_torch_img_s', 'infer_img_s', 'infer_frozen_img_s', 'latency_ms', 'latency_frozen_ms',
                 'gflops_program', 'gflops_bare', 'gflops_keras', 'gflops_torch', 'matmul_gflops', 'peak_rss_mb')


def window_rates(windows, scale=1.0):
    """{round: rate} of a measurement's windows (images, or GFLOP for matmul, per second)."""
    return {window['round']: scale * window['images'] / window['seconds'] for window in windows}


def assemble(windows, finals, common, default_precision, flops, skipped, failures):
    """The JSON's flat keys (null where not measured), their spreads, the ratios and the details."""
    train_gflop, forward_gflop = flops['train'] / 1e9, flops['forward'] / 1e9
    report = {'gflop_per_train_image': train_gflop, 'gflop_per_forward_image': forward_gflop}
    spread, details, per_round = {}, {}, {}

    def put(key, by_round):
        """Median and [min, max] of per-window values; keeps them by round for the paired ratios."""
        values = list(by_round.values()) if by_round else []
        report[key] = statistics.median(values) if values else None
        if values:
            spread[key], per_round[key] = [min(values), max(values)], by_round

    for precision in PRECISIONS:
        suffix = SUFFIX[precision]
        measured, final = windows.get(precision, {}), finals.get(precision, {})
        program = final.get('program')
        steady = window_rates(measured['program']) if program and 'program' in measured else None
        amortised = None
        if steady:   # every window's time plus its steps' share of the periodic block
            periodic = program['periodic_per_step_s'] * common['steps']
            amortised = {w['round']: w['images'] / (w['seconds'] + periodic) for w in measured['program']}
        put('train_program_img_s' + suffix, amortised)
        put('train_program_steady_img_s' + suffix, steady)
        for name in ('bare', 'keras', 'torch'):
            rates_ = window_rates(measured[name]) if name in measured else None
            put(f'train_{name}_img_s{suffix}', rates_)
        for name in ('program', 'bare', 'keras', 'torch'):
            key = 'train_program_img_s' if name == 'program' else f'train_{name}_img_s'
            by_round = per_round.get(key + suffix)
            put(f'gflops_{name}{suffix}', by_round and {r: v * train_gflop for r, v in by_round.items()})
        for name in ('infer', 'infer_frozen'):
            put(f'{name}_img_s{suffix}', window_rates(measured[name]) if name in measured else None)
        for name in ('latency', 'latency_frozen'):
            calls = [1000 * call for window in measured.get(name, []) for call in window['calls']]
            report[f'{name}_ms{suffix}'] = statistics.median(calls) if calls else None
            if calls:
                spread[f'{name}_ms{suffix}'] = [min(calls), max(calls)]
        put('matmul_gflops' + suffix, window_rates(measured['matmul']) if 'matmul' in measured else None)
        report['peak_rss_mb' + suffix] = program['peak_rss_mb'] if program else None
        for worker, result in final.items():
            details[worker + suffix] = result

    for key in MEASURED_KEYS:                    # the default precision's, under the names
        report[key] = report[key + SUFFIX[default_precision]]
        if key + SUFFIX[default_precision] in spread:
            spread[key] = spread[key + SUFFIX[default_precision]]
    # Ratios of windows of the same round (run back to back), their median and [min, max].
    ratios, ratio_spread = {}, {}
    for suffix in ('_f32', '_bf16'):
        for name, numerator, denominator in (
                ('program_over_bare', 'train_program_img_s', 'train_bare_img_s'),
                ('program_steady_over_bare', 'train_program_steady_img_s', 'train_bare_img_s'),
                ('program_over_keras', 'train_program_img_s', 'train_keras_img_s'),
                ('program_over_torch', 'train_program_img_s', 'train_torch_img_s'),
                ('bare_over_keras', 'train_bare_img_s', 'train_keras_img_s'),
                ('bare_over_torch', 'train_bare_img_s', 'train_torch_img_s'),
                ('bare_over_matmul', 'gflops_bare', 'matmul_gflops'),
                ('frozen_over_project', 'infer_frozen_img_s', 'infer_img_s')):
            a, b = per_round.get(numerator + suffix), per_round.get(denominator + suffix)
            paired = [a[r] / b[r] for r in sorted(set(a) & set(b))] if a and b else []
            ratios[name + suffix] = statistics.median(paired) if paired else None
            if paired:
                ratio_spread[name + suffix] = [min(paired), max(paired)]
    for key in ('train_program_img_s', 'train_bare_img_s', 'train_keras_img_s', 'train_torch_img_s',
                'infer_img_s', 'infer_frozen_img_s', 'matmul_gflops'):
        a, b = report[key + '_bf16'], report[key + '_f32']   # different rounds: medians, not pairs
        ratios['bf16_speedup_' + key.replace('_img_s', '').replace('train_', '')] = a / b if a and b else None
    for key in list(ratios):
        if key.endswith(SUFFIX[default_precision]):
            ratios[key[:-len(SUFFIX[default_precision])]] = ratios[key]
            if key in ratio_spread:
                ratio_spread[key[:-len(SUFFIX[default_precision])]] = ratio_spread[key]
    report.update(ratios=ratios, ratio_spread=ratio_spread, spread=spread, details=details,
                  windows={precision: measured for precision, measured in windows.items()})
    report['null_because'] = null_reasons(report, skipped, failures, default_precision)
    return report


def null_reasons(report, skipped, failures, default_precision):
    """Every null measurement with its reason (skipped or failed): nothing is null without one."""
    reasons = {}
    for key, value in report.items():
        if value is not None:
            continue
        precision = ('bfloat16' if key.endswith('_bf16') else 'float32' if key.endswith('_f32')
                     else default_precision)
        worker = ('torch' if 'torch' in key else 'keras' if 'keras' in key else
                  'program' if 'program' in key or 'peak_rss' in key else 'graph')
        reasons[key] = (skipped.get(precision) or skipped.get(worker) or failures.get(f'{worker}_{precision}')
                        or 'not measured')
    return reasons


# ------------------------------------------------------------------------------------------------ printing

def format_rate(report, key, digits=1, unit=''):
    value = report.get(key)
    if value is None:
        return '-'
    low, high = report['spread'].get(key, (value, value))
    return f"{value:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]{unit}"


def format_value(value, digits=1, unit=''):
    return '-' if value is None else f'{value:.{digits}f}{unit}'


def table(report):
    """The benchmark's table (Markdown), as printed and as it goes into the README."""
    columns = [(p, SUFFIX[p]) for p in report['settings']['precisions']]
    names = {p: p + (' (default)' if p == report['default_precision'] else '') for p, _ in columns}
    lines = ['| measurement | ' + ' | '.join(f'{names[p]}: median [min-max] | GFLOP/s' for p, _ in columns) + ' |',
             '|---|' + '---:|' * (2 * len(columns))]
    train_gflop, forward_gflop = report['gflop_per_train_image'], report['gflop_per_forward_image']
    batch, infer_batch = report['settings']['batch_size'], report['settings']['infer_batch']
    rows = [(f'training, batch {batch}: program (convworking.py; validation and checkpoint spread over their '
             'intervals)', 'train_program_img_s', ' img/s', 1, train_gflop),
            ('training: program, steps only (between validations)', 'train_program_steady_img_s', ' img/s', 1,
             train_gflop),
            ('training: bare graph (same graph, in-memory batches, train op only)', 'train_bare_img_s', ' img/s', 1,
             train_gflop),
            ('training: Keras 3 Model.fit (same network, tied kernels)', 'train_keras_img_s', ' img/s', 1,
             train_gflop),
            ('training: PyTorch (same network, tied kernels)', 'train_torch_img_s', ' img/s', 1, train_gflop),
            (f'inference, batch {infer_batch}: project graph', 'infer_img_s', ' img/s', 1, forward_gflop),
            (f'inference, batch {infer_batch}: frozen graph', 'infer_frozen_img_s', ' img/s', 1, forward_gflop),
            ('latency, 1 image: project graph', 'latency_ms', ' ms', 2, None),
            ('latency, 1 image: frozen graph', 'latency_frozen_ms', ' ms', 2, None)]
    for label, key, unit, digits, gflop in rows:
        cells = []
        for _, suffix in columns:
            value = report.get(key + suffix)
            cells.append(format_rate(report, key + suffix, digits, unit))
            if value is None:
                cells.append('-')
            else:
                cells.append(format_value(value * gflop if gflop else forward_gflop / (value / 1000), 0))
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    n = report['settings']['matmul_size']
    lines.append(f'| matrix product {n} x {n} x {n} (TensorFlow) | ' + ' | '.join(
        f"- | {format_rate(report, 'matmul_gflops' + suffix, 0)}" for _, suffix in columns) + ' |')
    lines.append('| peak resident memory of the training process | ' + ' | '.join(
        f"{format_value(report.get('peak_rss_mb' + suffix), 0, ' MiB')} | " for _, suffix in columns) + ' |')
    return '\n'.join(lines)


def read_targets(path):
    """The targets of a targets file (bench_targets.json): [(ratio key, lowest acceptable value, name)]."""
    with open(path) as file:
        return [(target['ratio'], target['at_least'], target['name']) for target in json.load(file)['targets']]


def verdicts(report, targets):
    """The targets, each with its measured ratio and whether it is met (same run, same rounds)."""
    ratios, spread, lines = report['ratios'], report['ratio_spread'], []
    for precision in report['settings']['precisions']:
        suffix = SUFFIX[precision]
        for key, target, text in targets:
            value = ratios.get(key + suffix)
            if value is not None:
                low, high = spread[key + suffix]
                lines.append(f"{precision:8s}  {text:21s} {value:5.2f} [{low:.2f}-{high:.2f}]   target >= "
                             f"{target:.1f}: {'met' if value >= target else 'NOT met'}")
        for key, text in (('program_steady_over_bare', 'program steps only / bare graph'),
                          ('bare_over_matmul', 'bare graph GFLOP/s / matrix product GFLOP/s'),
                          ('frozen_over_project', 'frozen / project graph inference')):
            if ratios.get(key + suffix) is not None:
                low, high = spread[key + suffix]
                lines.append(f"{precision:8s}  {text} {ratios[key + suffix]:.2f} [{low:.2f}-{high:.2f}]")
    speedups = [f"{key} x{ratios['bf16_speedup_' + key]:.2f}" for key in (
        'program', 'bare', 'keras', 'torch', 'infer', 'infer_frozen', 'matmul_gflops')
        if ratios.get('bf16_speedup_' + key) is not None]
    if speedups:
        lines.append('bfloat16 / float32 (medians): ' + ', '.join(speedups))
    return '\n'.join(lines)


def print_report(report, targets, command, stream=None):
    """The report as bench.py prints it (on `stream`, else standard output as it is when printing); its first and
    last lines start with `command` (the command's name)."""
    settings, machine, found = report['settings'], report['machine'], report['versions']
    print(f"{command}: {report['date']}; {machine['cpu']}, {machine['cores']} cores"
          f"{', AVX-512 BF16' if machine['avx512_bf16'] else ''}{', AMX' if machine['amx_bf16'] else ''}, "
          f"{machine['memory_gb']} GB; TensorFlow {found.get('tensorflow-cpu', found.get('tensorflow', '?'))}, "
          f"Keras {found.get('keras', '-')}, PyTorch {found.get('torch', 'absent')}", file=stream)
    arch = settings['architecture']
    program = report['details'].get('program' + SUFFIX[report['default_precision']], {})
    print(f"network: {arch['modules']} modules of C{arch['kernel_size']},{arch['channels']}, skip links "
          f"{arch['skip_links']}; {report['gflop_per_forward_image']:.3f} GFLOP per image forward, "
          f"{report['gflop_per_train_image']:.3f} per training image (3 x forward); {settings['mode']} settings: "
          f"warm-up {settings['warmup']} steps, {settings['windows']} windows of {settings['steps']} steps",
          file=stream)
    if program:
        print(f"program: validation work and checkpoint every {program['validate_every']} / "
              f"{program['save_every']} steps take {program['periodic_block_s']:.1f} s "
              f"({program['periodic_estimate']})", file=stream)
    print(table(report), file=stream)
    print(verdicts(report, targets), file=stream)
    by_reason = {}
    for key, reason in sorted(report['null_because'].items()):
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        print(f"not measured ({reason}): {', '.join(keys) if len(keys) <= 6 else f'{len(keys)} keys'}", file=stream)
    other = report['other_cpu_seconds']
    shared = other and other > 0.05 * report['wall_seconds']
    print(f"{command}: {report['wall_seconds']:.0f} s; CPU used by other processes meanwhile: "
          f"{'unknown' if other is None else f'{other:.0f} s'}"
          f"{' (the machine was shared: rates are too low)' if shared else ''}", file=stream)
