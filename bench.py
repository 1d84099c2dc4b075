"""Speed benchmark: the training program against its own bare graph, Keras 3, PyTorch and the CPU's limit.

    python bench.py                      # default: under 10 minutes on 2 cores, float32 and bfloat16
    python bench.py --quick              # under 2 minutes (4 without AVX-512): fewer windows, default precision only
    python bench.py --windows 9 --steps 10 --out bench.json     # longer: more and longer windows; JSON file

Run it alone on the machine: every number is a rate, and anything else running takes it away (the last line
says how much CPU other processes used meanwhile). On a shared machine hold the CPU lock:
`flock /work/exp/cpu.lock python bench.py ...`.

What is measured, each in its own process, one after the other, with convworking.py's default network and
batch size, in float32 and, where the CPU has AVX-512 BF16 or AMX, in bfloat16:
  program  convworking.py's real training path: its main(['--mode', 'train', ...]) on the data set, with its
           data feeding, fetches, summaries, and its periodic block (batch-norm refresh, validation,
           checkpoint; every 250 steps by default). Step times and the periodic work's times come from the
           training loop's public observer (training.loop.TrainingObserver). The run ends with the periodic
           block (train() runs it at the last step): its time is spread over the default intervals, program
           img/s = batch / (median step time + periodic block / 250). The parts of the block that build an
           inference path on first use run twice there and the second run counts: a long run pays that set-up
           once, not every interval.
           `train_program_steady_img_s` is the steps alone.
  bare     the same graph (convworking.Network, unchanged) with its placeholders mapped to in-memory random
           batches: only the train op runs, nothing is fed or fetched. The ceiling for `program`.
  keras    the same network in Keras 3 (TensorFlow backend, Model.fit on in-memory arrays, default
           jit_compile, which Keras resolves to False on a CPU-only machine): the same layers, kernels,
           strides, batch normalisation, skip links, residual gate, loss over the face and Adam with the same
           decay; the decoder's transposed convolutions use the encoder's kernels (tied) through
           keras.ops.conv_transpose. bfloat16: the 'mixed_bfloat16' policy (weights float32).
  torch    the same in PyTorch on the CPU (if importable; not a requirement), default NCHW layout, tied
           kernels through F.conv_transpose2d. PyTorch pads a stride-2 convolution symmetrically where
           TensorFlow's 'SAME' puts the odd pixel at the bottom/right: the same arithmetic, shifted by one
           pixel. bfloat16: torch.autocast('cpu', dtype=torch.bfloat16).
  infer    inference of the project's graph (Network, fed as predict/infer feed it) and of the frozen graph
           (inference.export.frozen_inference_graph, as --mode export writes it): images/s at batch --infer-batch
           (64) and the latency of one image (ms).
  matmul   a 4096 x 4096 matrix product in TensorFlow: the CPU's practical arithmetic rate.
All three trainings have the same weights and moving statistics (their counts are in the JSON's details).

Timing: a warm-up of --warmup steps, then --windows windows of --steps steps each, the rate of each window;
reported: the median, and the spread as [min, max]. Only numbers of the same run are compared.

JSON (--out): the keys of issue 6 unsuffixed, in the precision convworking.py trains with by default on this
machine (`default_precision`), and the same keys with '_f32' and '_bf16' for each precision (null where not
measured, the reason in `null_because`); `spread` (min, max per key), `ratios`, `details`, machine, versions.

FLOPs (network_flops): counted from the layer list (Layer.multiply_adds), 1 multiply-add = 2 FLOPs,
convolutions only (batch normalisation, activations, pooling, loss: well under 1 %). The decoder mirrors
the encoder and costs the same, so forward = 2 x 2 x encoder multiply-adds. A training image costs 3 x
forward (forward, gradient for the inputs, gradient for the weights), the usual convention.
"""
if __name__ == '__main__':  # before the imports, which take a second: Ctrl-C during them ends it in one line
    from support.command_line import stop_at_once_while_starting
    stop_at_once_while_starting()

import argparse
import os
import sys
import time

from benchmark.harness import (busy_cpu_seconds, cpu_description, measure, own_cpu_seconds, torch_importable,
                               versions, worker_main)
from benchmark.peers import IMAGE_SHAPE, worker_keras, worker_torch
from benchmark.report import PRECISIONS, assemble, print_report, read_targets
from benchmark.workers import worker_graph, worker_program
from support.command_line import (DefaultsHelpFormatter, OneLineErrorParser, UsageError, check_existing,
                                  check_output_file, exit_status, non_negative_float, positive_int, report_error,
                                  whole_number)
from training.architecture import MAX_CHANNELS, MAX_KERNEL_SIZE
from support.paths import REPOSITORY
from support.safe_files import write_strict_json

BENCH = 'bench.py'
SCRIPT = os.path.abspath(__file__)   # the worker processes run it: python bench.py --worker ...
TRAIN_FLOPS_PER_FORWARD = 3
# Warm-up steps (after 3, bfloat16 and PyTorch still ran their first windows slow), timed windows, steps per
# window, inference batches per window, single-image calls; whether the periodic block's first-use parts run
# twice (see benchmark.workers.worker_program); which precisions are measured (None: both).
SETTINGS = {
    'default': dict(warmup=8, windows=5, steps=6, infer_steps=2, latency_calls=30, repeat_periodic=True,
                    precision=None),
    'quick': dict(warmup=5, windows=3, steps=4, infer_steps=1, latency_calls=10, repeat_periodic=True,
                  precision='default'),
    'tiny': dict(warmup=1, windows=2, steps=2, infer_steps=1, latency_calls=3, repeat_periodic=True,
                 precision=None),
}
TINY_ARCHITECTURE = dict(channels=8, kernel_size=3, modules=1)


# ------------------------------------------------------------------------------------------------ counting

def architecture_of(overrides=None):
    """convworking's default architecture with the given keys replaced."""
    import convworking
    architecture = dict(convworking.ARCHITECTURE_DEFAULTS)
    architecture.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return architecture


def network_layers(architecture):
    import convworking
    return convworking.encoder_layers(architecture, is_training=None)


def network_flops(architecture, image_shape=IMAGE_SHAPE):
    """FLOPs per image of the network built from `architecture`: {'forward', 'train', 'encoder_multiply_adds'}.

    Counted from convworking's layer list: each layer's multiply_adds for the shape that reaches it. The
    decoder mirrors the encoder and costs the same; 1 multiply-add = 2 FLOPs; training = 3 x forward.
    """
    shape, multiply_adds = tuple(image_shape), 0
    for layer in network_layers(architecture):
        multiply_adds += layer.multiply_adds(shape)
        shape = layer.output_shape(shape)
    forward = 2 * 2 * multiply_adds
    return {'encoder_multiply_adds': multiply_adds, 'forward': forward, 'train': TRAIN_FLOPS_PER_FORWARD * forward}


def layer_spec(architecture):
    """The layer list as plain data, for the Keras and PyTorch versions (which must not import convworking)."""
    from conv2d import Conv2d
    from max_pool_2d import MaxPool2d
    spec = []
    for layer in network_layers(architecture):
        if isinstance(layer, Conv2d):
            spec.append(dict(kind='conv', name=layer.name, kernel=layer.kernel_size, stride=layer.stride,
                             channels=layer.output_channels, batch_norm=layer.use_batch_norm,
                             skip=layer.skip_connection))
        elif isinstance(layer, MaxPool2d):
            spec.append(dict(kind='pool', name=layer.name, size=layer.kernel_size, skip=layer.skip_connection))
        else:
            raise TypeError(f"{BENCH}: no Keras/PyTorch version of {type(layer).__name__}")
    return spec


# ------------------------------------------------------------------------------------------------ workers

def with_program(worker):
    """`worker` given convworking, imported when the worker starts: only in its own process (the Keras and
    PyTorch workers' processes do not load it)."""
    def run(spec, channel):
        import convworking
        return worker(spec, channel, convworking)
    return run


# Run in worker processes (python bench.py --worker NAME SPEC REPLY_FD): see benchmark.harness.
WORKERS = {'program': with_program(worker_program), 'graph': with_program(worker_graph),
           'keras': worker_keras, 'torch': worker_torch}


# ------------------------------------------------------------------------------------------------ the run

def program_default_precision():
    """The precision `python convworking.py --mode train` uses on this machine when not told."""
    import convworking
    chosen = convworking.parse_args(['--mode', 'train']).bfloat16
    return 'bfloat16' if chosen else 'float32'


def run_benchmark(args):
    """Measure every worker in every precision the options ask for; the report (see benchmark.report)."""
    import convworking
    convworking.import_tensorflow_quietly()   # first: without TensorFlow's start-up messages
    import layer
    started = time.perf_counter()
    overrides = dict(channels=args.channels, kernel_size=args.kernel_size, modules=args.modules)
    architecture = architecture_of(overrides)
    flops = network_flops(architecture)
    machine = cpu_description()
    default_precision = program_default_precision()
    wanted = [default_precision] if args.precision == ['default'] else args.precision
    precisions = [p for p in PRECISIONS if p in wanted]
    skipped = {}
    for precision in PRECISIONS:
        if precision not in precisions:
            skipped[precision] = f'{precision} not measured (--precision {" ".join(args.precision)})'
    if 'bfloat16' in precisions and not (machine['avx512_bf16'] or machine['amx_bf16']):
        precisions.remove('bfloat16')
        skipped['bfloat16'] = 'the CPU has neither AVX-512 BF16 nor AMX: bfloat16 would be emulated'
    common = dict(architecture=architecture, layers=layer_spec(architecture), batch_size=args.batch_size,
                  warmup=args.warmup, windows=args.windows, steps=args.steps, infer_steps=args.infer_steps,
                  infer_batch=args.infer_batch, latency_calls=args.latency_calls, data=args.data,
                  repeat_periodic=args.repeat_periodic, matmul_size=args.matmul_size,
                  lr=1e-3, decay_steps=10000, batch_norm_decay=layer.BATCH_NORM_DECAY,
                  batch_norm_epsilon=layer.BATCH_NORM_EPSILON, leaky_relu_alpha=layer.LEAKY_RELU_ALPHA)
    workers = ['program', 'graph', 'keras', 'torch']
    if 'torch' not in args.skip and not torch_importable():
        workers.remove('torch')
        skipped['torch'] = 'PyTorch is not importable (optional, not in requirements.txt: pip install torch)'
    for name in args.skip:
        if name in workers:
            workers.remove(name)
            skipped[name] = f'skipped (--skip {name})'

    windows, finals, failures, log = {}, {}, {}, []
    load_before, busy_before, own_before = os.getloadavg(), busy_cpu_seconds(), own_cpu_seconds()
    for precision in precisions:
        results, final, failed = measure(workers, dict(common, precision=precision), args.windows, args.settle, log,
                                         SCRIPT)
        windows[precision], finals[precision] = results, final
        failures.update({f'{name}_{precision}': error for name, error in failed.items()})
    wall = time.perf_counter() - started
    busy_after, own_after = busy_cpu_seconds(), own_cpu_seconds()
    report = assemble(windows, finals, common, default_precision, flops, skipped, failures)
    report.update(
        date=time.strftime('%Y-%m-%d %H:%M %Z'), machine=machine, versions=versions(),
        default_precision=default_precision,
        settings=dict(mode='quick' if args.quick else 'tiny' if args.tiny else 'default',
                      architecture=architecture, batch_size=args.batch_size, warmup=args.warmup,
                      windows=args.windows, steps=args.steps, infer_batch=args.infer_batch,
                      infer_steps=args.infer_steps, latency_calls=args.latency_calls,
                      repeat_periodic=args.repeat_periodic, matmul_size=args.matmul_size, settle_s=args.settle,
                      data=args.data or 'convworking default (data128_128)', precisions=precisions),
        flops=flops, load_average_before=load_before, workers=log, wall_seconds=wall, skipped=skipped,
        failures=failures,
        # CPU time others used meanwhile: well above 0, the machine was shared and the rates are low.
        other_cpu_seconds=(None if busy_before is None else
                           max(0.0, busy_after - busy_before - (own_after - own_before))))
    return report


# ------------------------------------------------------------------------------------------------ command line

def parse_args(argv=None):
    parser = OneLineErrorParser(prog=BENCH, description=__doc__.split('\n\n')[0],
                                formatter_class=DefaultsHelpFormatter)
    parser.add_argument('--out', help='also write the results as JSON to this file')
    parser.add_argument('--targets', default=os.path.join(REPOSITORY, 'bench_targets.json'),
                        help='the speed targets to print verdicts against (JSON)')
    parser.add_argument('--quick', action='store_true',
                        help="under 2 minutes (4 without AVX-512): fewer, shorter windows, and only the program's "
                             "default precision")
    parser.add_argument('--tiny', action='store_true',
                        help='a tiny network and settings (for the tests; give --data a small data set)')
    parser.add_argument('--precision', nargs='+', choices=[*PRECISIONS, 'default'], default=None,
                        help="precisions to measure; 'default': the one convworking.py trains with here "
                             '(default: both, bfloat16 only where the CPU has AVX-512 BF16 or AMX)')
    parser.add_argument('--skip', nargs='+', choices=['keras', 'torch'], default=[], help='leave these peers out')
    parser.add_argument('--data', help="data folder for the program's training (default: convworking's)")
    parser.add_argument('--warmup', type=positive_int, help='warm-up steps before the timed windows')
    parser.add_argument('--windows', type=positive_int, help='timed windows per measurement')
    parser.add_argument('--steps', type=positive_int, help='training steps per window')
    parser.add_argument('--infer-steps', type=positive_int, help='inference batches per window')
    parser.add_argument('--latency-calls', type=positive_int, help='single-image calls timed for the latency')
    parser.add_argument('--infer-batch', type=positive_int, help='batch size of the inference throughput')
    parser.add_argument('--batch-size', type=positive_int, help="training batch (default: convworking's)")
    parser.add_argument('--channels', type=whole_number(1, MAX_CHANNELS),
                        help="architecture override (default: convworking's)")
    parser.add_argument('--kernel-size', type=whole_number(1, MAX_KERNEL_SIZE), help='architecture override')
    parser.add_argument('--modules', type=positive_int, help='architecture override')
    parser.add_argument('--matmul-size', type=positive_int, help='n of the n x n matrix product')
    parser.add_argument('--settle', type=non_negative_float, default=0.3,
                        help='seconds of pause before each window (idle threads of the last worker stop spinning)')
    args = parser.parse_args(argv)
    # Resolved into a new namespace: what was not given comes from the preset (and, --tiny, the tiny network).
    preset = dict(SETTINGS['tiny' if args.tiny else 'quick' if args.quick else 'default'])
    preset_precision = preset.pop('precision')
    if args.tiny:
        preset.update(TINY_ARCHITECTURE)
    resolved = {key: value for key, value in preset.items() if getattr(args, key, None) is None}
    return argparse.Namespace(**dict(
        vars(args), **resolved,
        precision=args.precision or ([preset_precision] if preset_precision else list(PRECISIONS)),
        batch_size=args.batch_size or (4 if args.tiny else default_batch_size()),
        infer_batch=args.infer_batch or (8 if args.tiny else 64),
        matmul_size=args.matmul_size or (256 if args.tiny else 4096)))


def default_batch_size():
    import convworking
    return convworking.parse_args(['--mode', 'train']).batch_size


def checked_before_the_work(args):
    """The targets, once --targets, --out and --data have been checked: minutes of measuring are not lost to
    a bad file or an unwritable place found at the end."""
    try:
        targets = read_targets(args.targets)
    except OSError as error:
        raise UsageError(f"--targets {args.targets}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--targets {args.targets}: not a targets file ({type(error).__name__}: {error})") from None
    if args.out:
        check_output_file(args.out, '--out')
    if args.data:
        check_existing(args.data, '--data', 'folder')
    return targets


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--worker']:
        return worker_main(*argv[1:4], WORKERS)
    args = parse_args(argv)
    try:
        targets = checked_before_the_work(args)
    except UsageError as error:
        report_error(BENCH, error)
        return 2
    sys.path.insert(0, REPOSITORY)
    report = run_benchmark(args)
    print_report(report, targets, BENCH)
    if args.out:
        write_strict_json(args.out, report)
        print(f"{BENCH}: wrote {args.out}")
    return 1 if report['failures'] else 0


if __name__ == '__main__':
    sys.exit(exit_status(BENCH, main))
