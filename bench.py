"""Speed benchmark: the training program against its own bare graph, Keras 3, PyTorch and the CPU's limit.

    python bench.py                      # default: under 10 minutes on 2 cores, float32 and bfloat16
    python bench.py --quick              # under 2 minutes: fewer windows, the program's default precision only
    python bench.py --windows 9 --steps 10 --out bench.json     # longer: more and longer windows; JSON file

Run it alone on the machine: every number is a rate, and anything else running takes it away (the last line
says how much CPU other processes used meanwhile). On a shared machine hold the CPU lock:
`flock /work/exp/cpu.lock python bench.py ...`.

What is measured, each in its own process, one after the other, with convworking.py's default network and
batch size, in float32 and, where the CPU has AVX-512 BF16 or AMX, in bfloat16:
  program  convworking.py's real training path: its main(['--mode', 'train', ...]) on the data set, with its
           data feeding, fetches, summaries, and its periodic block (batch-norm refresh, validation,
           checkpoint; every 250 steps by default). Step times and the periodic work's times come from the
           training loop's public observer (convworking.TrainingObserver). The run ends with the periodic
           block (train() runs it at the last step): its time is spread over the default intervals, program
           img/s = batch / (median step time + periodic block / 250). The parts of the block that build an inference path on first use
           run twice there and the second run counts: a long run pays that set-up once, not every interval.
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
           (neutralise.frozen_inference_graph, as --mode export writes it): images/s at batch --infer-batch
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
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmark.peers import IMAGE_SHAPE, worker_keras, worker_torch
from benchmark.timing import Channel, Pacer, calls_of, window_of
from support.command_line import DefaultsHelpFormatter, OneLineErrorParser, non_negative_float, positive_int
from support.machine import cpu_model_and_flags
from support.safe_files import write_strict_json

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = 'bench.py'
TRAIN_FLOPS_PER_FORWARD = 3
PRECISIONS = ('float32', 'bfloat16')
SUFFIX = {'float32': '_f32', 'bfloat16': '_bf16'}
# The JSON's measured quantities. Unsuffixed: in the precision convworking.py trains with by default on this
# machine (`default_precision`); with '_f32' / '_bf16': in that precision (null where not measured).
MEASURED_KEYS = ('train_program_img_s', 'train_program_steady_img_s', 'train_bare_img_s', 'train_keras_img_s',
                 'train_torch_img_s', 'infer_img_s', 'infer_frozen_img_s', 'latency_ms', 'latency_frozen_ms',
                 'gflops_program', 'gflops_bare', 'gflops_keras', 'gflops_torch', 'matmul_gflops', 'peak_rss_mb')
# Warm-up steps (after 3, bfloat16 and PyTorch still ran their first windows slow), timed windows, steps per
# window, inference batches per window, single-image calls; whether the periodic block's first-use parts run
# twice (see worker_program); which precisions are measured (None: both).
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
# Each runs in its own process (python bench.py --worker NAME SPEC REPLY_FD), so that one's threads, eager or
# graph mode and memory do not touch the others, and the training process's peak memory is its own. All the
# workers of a precision are alive together and take turns, one window each (see measure): the machine's
# speed drifts (on this 2-core VM, identical steps vary by 20-40 % within seconds), and measuring each
# worker after the other would compare those drifts, not the programs.

def worker_program(spec, channel):
    """convworking.py's training path, unchanged, watched through its public TrainingObserver.

    The run ends with the periodic block the default configuration runs every --validate-every steps
    (batch-norm refresh, validation, checkpoint): its duration is the time from the last step's progress
    update to the end of main(). With spec['repeat_periodic'], its parts that build a new inference path on
    first use (calibrate_batch_norm, validate) run twice and the first runs are left out, since a long run pays
    that set-up once, not every interval.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    sys.path.insert(0, HERE)
    import convworking

    batch = spec['batch_size']
    pacer = Pacer(channel, 'program', spec['warmup'], spec['steps'], batch)
    stamps, calls = [], {}
    repeat = 2 if spec['repeat_periodic'] else 1

    class PacedObserver(convworking.TrainingObserver):
        """Paces the steps with the parent's rounds and times the periodic work, repeating the parts that build
        an inference path on first use (see above)."""

        def step_done(self, step):
            pacer.step_done()                    # may wait for the parent: the stamp comes after
            stamps.append(time.perf_counter())

        def periodic(self, name, work):
            for _ in range(repeat if name in ('calibrate_batch_norm', 'validate') else 1):
                started = time.perf_counter()
                result = work()
                calls.setdefault(name, []).append(time.perf_counter() - started)
            return result

    defaults = convworking.parse_args(['--mode', 'train'])
    total_steps = spec['warmup'] + spec['windows'] * spec['steps']
    argv = ['--mode', 'train', '--restart', '--max-steps', str(total_steps),
            '--checkpoint-dir', os.path.join(spec['tmp'], 'checkpoints'),
            '--results-dir', os.path.join(spec['tmp'], 'results'),
            '--batch-size', str(batch), *architecture_argv(spec['architecture']),
            '--bfloat16' if spec['precision'] == 'bfloat16' else '--no-bfloat16',
            # The speed of a step does not depend on how many pairs it draws from: measure without rendering
            # or loading the generated training identities.
            '--generated-subjects', '0']
    if spec['data']:
        argv += ['--data', spec['data']]
    status = convworking.main(argv, PacedObserver())
    ended = time.perf_counter()
    if status:
        raise RuntimeError(f"convworking.py {' '.join(argv)} exited with {status}")
    if len(stamps) != total_steps or not pacer.finished:
        raise RuntimeError(f"trained {len(stamps)} steps, not {total_steps} (is the data set too small?)")
    # The periodic block at the last step: validation work (every validate_every steps) and the checkpoint
    # (every save_every steps), without the first runs of the repeated parts (see above) and without the
    # grid that training draws at its last step (grids come only every plot_every steps).
    # (validate's first run holds a grid of its own, already left out with it.)
    repeated_first_runs = sum(times[0] for name, times in calls.items() if len(times) > 1 and name != 'save_grid')
    block = ended - stamps[-1] - repeated_first_runs - calls.get('save_grid', [0])[-1]
    save = sum(calls.get('save_latest', []))
    return {
        'periodic_block_s': block,
        'periodic_per_step_s': (block - save) / defaults.validate_every + save / defaults.save_every,
        'calls_s': calls, 'periodic_estimate': ('second run of the repeated parts' if repeat > 1 else
                                                'first run (includes the one-off set-up of the inference path)'),
        'validate_every': defaults.validate_every, 'save_every': defaults.save_every,
        'summary_every': defaults.summary_every, 'first_steps_s': pacer.first_steps,
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def architecture_argv(architecture):
    argv = []
    for key, value in architecture.items():
        option = '--' + key.replace('_', '-')
        if isinstance(value, bool):
            argv.append(option if value else '--no-' + key.replace('_', '-'))
        elif key != 'task':
            argv += [option, str(value)]
        else:
            argv += ['--task', value]
    return argv


def worker_graph(spec, channel):
    """The bare training graph, inference of the project's and the frozen graph, and the matmul rate."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    sys.path.insert(0, HERE)
    import numpy as np
    import convworking
    from inference.neutralise import neutralise
    tf = convworking.tf
    tf.compat.v1.disable_eager_execution()
    bf16 = spec['precision'] == 'bfloat16'
    architecture, batch = spec['architecture'], spec['batch_size']
    rng = np.random.default_rng(0)
    windows, sessions, details = {}, [], {}

    def session_of(graph):
        session = tf.compat.v1.Session(graph=graph)
        sessions.append(session)
        return session

    # bare: the Network's graph, its placeholders mapped to in-memory batches; only the train op runs.
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        network = convworking.Network(architecture, bf16, convworking.TrainingSetup())
        meta_graph = tf.compat.v1.train.export_meta_graph()
        train_op_name = network.train_op.name
    with tf.Graph().as_default() as graph:
        batches = {name: tf.Variable(rng.random((batch, *IMAGE_SHAPE), np.float32), trainable=False,
                                     name=f'bench_{name}') for name in ('inputs', 'targets')}
        tf.compat.v1.train.import_meta_graph(meta_graph, input_map={
            'inputs:0': tf.identity(batches['inputs']), 'targets:0': tf.identity(batches['targets']),
            # Not a constant: grappler would then fold the batch normalisations' tf.cond, which the program
            # cannot (it feeds is_training), and the bare graph would no longer be the program's graph.
            'is_training:0': tf.compat.v1.placeholder_with_default(True, [])})
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        step = session.make_callable(graph.get_operation_by_name(train_op_name))
        windows['bare'] = window_of(step, spec['steps'], batch)
        for _ in range(spec['warmup']):
            step()

    # inference: the project's graph (fed, as predict and infer feed it) and the frozen graph of export.
    infer_batch = rng.random((spec['infer_batch'], *IMAGE_SHAPE), np.float32)
    single = infer_batch[:1]
    with tf.Graph().as_default() as graph:
        network = convworking.Network(architecture, bfloat16=bf16)
        # Weights and moving statistics (the step and the best score are bookkeeping): to compare with the peers.
        details['parameters'] = int(sum(np.prod(v.shape.as_list()) for v in network.model_variables
                                        if v not in (network.global_step, network.best_valid_score)))
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        project = session.make_callable(network.output, feed_list=[network.inputs])
    with tf.Graph().as_default() as graph:
        network = convworking.Network(architecture, bfloat16=bf16, for_export=True)
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        frozen_graph_def = neutralise.frozen_inference_graph(session, network)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(frozen_graph_def, name='')
        frozen = session_of(graph).make_callable(graph.get_tensor_by_name('output:0'),
                                                 feed_list=[graph.get_tensor_by_name('inputs:0')])
    for name, run in (('infer', project), ('infer_frozen', frozen)):
        windows[name] = window_of(lambda run=run: run(infer_batch), spec['infer_steps'], len(infer_batch))
        windows[name.replace('infer', 'latency')] = calls_of(lambda run=run: run(single), spec['latency_calls'])
        for _ in range(2):
            run(infer_batch)
        for _ in range(5):
            run(single)

    # matmul: n x n times n x n, 2 n^3 FLOPs, written to a variable so nothing is copied out.
    n = spec['matmul_size']
    dtype = tf.bfloat16 if bf16 else tf.float32
    with tf.Graph().as_default() as graph:
        a, b = (tf.Variable(tf.cast(tf.random.uniform([n, n]), dtype)) for _ in range(2))
        c = tf.Variable(tf.zeros([n, n], dtype))
        product = tf.compat.v1.assign(c, tf.matmul(a, b)).op
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        multiply = session.make_callable(product)
        multiply()
        windows['matmul'] = window_of(multiply, 1, 2 * n ** 3 / 1e9)     # 'images' are GFLOP here

    channel.serve(windows)
    for session in sessions:
        session.close()
    return dict(details, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


WORKERS = {'program': worker_program, 'graph': worker_graph, 'keras': worker_keras, 'torch': worker_torch}


class WorkerProcess:
    """A worker in a fresh Python process (python bench.py --worker NAME SPEC REPLY_FD), driven by commands."""

    TIMEOUT = 1800   # seconds without a reply: the worker is stuck

    def __init__(self, name, spec):
        self.name, self.precision = name, spec['precision']
        self.tmp = tempfile.mkdtemp(prefix=f'bench_{name}_')
        spec_path = os.path.join(self.tmp, 'spec.json')
        with open(spec_path, 'w') as file:
            json.dump(dict(spec, tmp=self.tmp), file)
        self.log_path = os.path.join(self.tmp, 'output.log')
        read_fd, write_fd = os.pipe()
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--worker', name, spec_path, str(write_fd)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=[write_fd], text=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1'))
        os.close(write_fd)
        self.replies = os.fdopen(read_fd)
        self.measurements = self.read()['ready']

    def read(self):
        import select
        if not select.select([self.replies], [], [], self.TIMEOUT)[0]:
            self.process.kill()
            raise RuntimeError(self.failure(f'no reply in {self.TIMEOUT} s'))
        line = self.replies.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(self.failure(f'exited with {self.process.returncode}'))
        message = json.loads(line)
        if 'error' in message:
            raise RuntimeError(self.failure(message['error']))
        return message

    def request(self, command):
        try:
            self.process.stdin.write(json.dumps(command) + '\n')
            self.process.stdin.flush()
        except BrokenPipeError:
            pass                                   # read() reports how it ended
        return self.read()

    def finish(self):
        final = self.request({'do': 'finish'})['final']
        self.process.wait()
        self.close()
        return final

    def failure(self, what):
        with open(self.log_path) as file:
            tail = [line.rstrip() for line in file if line.strip()][-6:]
        return f"worker {self.name} ({self.precision}) {what}: " + ' | '.join(tail)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.replies.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def worker_main(name, spec_path, reply_fd):
    with open(spec_path) as file:
        spec = json.load(file)
    channel = Channel(int(reply_fd))
    try:
        final = WORKERS[name](spec, channel)
    except BaseException as error:  # the parent shows it with the end of the log
        import traceback
        traceback.print_exc()
        channel.reply({'error': f'{type(error).__name__}: {error}'})
        return 1
    channel.reply({'final': final})
    return 0


def measure(names, spec, windows, settle, log):
    """Start the workers of one precision, run `windows` rounds of one window of every measurement, each
    round starting with the next worker (interleaved: a slower or faster spell of the machine touches all of
    them alike), then finish them. Returns ({measurement: [window results]}, {worker: final}, failures)."""
    workers, failures, results, finals = [], {}, {}, {}
    for name in names:
        started = time.perf_counter()
        print(f"{BENCH}: starting {name} in {spec['precision']} ...", file=sys.stderr, flush=True)
        try:
            workers.append(WorkerProcess(name, spec))
        except RuntimeError as error:
            failures[name] = str(error)
            print(f"{BENCH}: {error}", file=sys.stderr, flush=True)
        log.append({'worker': name, 'precision': spec['precision'], 'start_s': time.perf_counter() - started})
    for round_ in range(windows):
        order = workers[round_ % len(workers):] + workers[:round_ % len(workers)] if workers else []
        for worker in order:
            for measurement in worker.measurements:
                time.sleep(settle)        # let the previous worker's idle threads stop spinning
                try:
                    results.setdefault(measurement, []).append(dict(
                        worker.request({'do': 'window', 'name': measurement}), round=round_))
                except RuntimeError as error:
                    failures[worker.name] = str(error)
                    workers.remove(worker)
                    print(f"{BENCH}: {error}", file=sys.stderr, flush=True)
                    break
        print(f"{BENCH}: {spec['precision']}: round {round_ + 1}/{windows} done", file=sys.stderr, flush=True)
    for worker in workers:
        started = time.perf_counter()
        try:
            finals[worker.name] = worker.finish()
        except RuntimeError as error:
            failures[worker.name] = str(error)
            worker.close()
        log.append({'worker': worker.name, 'precision': spec['precision'], 'finish_s': time.perf_counter() - started})
    return results, finals, failures


# ------------------------------------------------------------------------------------------------ machine

def cpu_description():
    model, flags = cpu_model_and_flags()
    return {'cpu': model, 'cores': os.cpu_count(), 'avx512f': 'avx512f' in flags,
            'avx512_bf16': 'avx512_bf16' in flags, 'amx_bf16': 'amx_bf16' in flags,
            'memory_gb': round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1),
            'platform': platform.platform(), 'python': platform.python_version()}


def versions():
    import importlib.metadata as metadata
    found = {}
    for package in ('tensorflow-cpu', 'tensorflow', 'keras', 'numpy', 'torch'):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def torch_importable():
    import importlib.util
    return importlib.util.find_spec('torch') is not None


# ------------------------------------------------------------------------------------------------ the run

def program_default_precision():
    """The precision `python convworking.py --mode train` uses on this machine when not told."""
    import convworking
    chosen = convworking.parse_args(['--mode', 'train']).bfloat16
    return 'bfloat16' if chosen else 'float32'


def busy_cpu_seconds():
    """CPU time spent by everything on the machine so far (from /proc/stat), or None."""
    try:
        with open('/proc/stat') as file:
            fields = [int(value) for value in file.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def run_benchmark(args):
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
        results, final, failed = measure(workers, dict(common, precision=precision), args.windows, args.settle, log)
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


def own_cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


def print_report(report, targets, stream=sys.stdout):
    settings, machine, found = report['settings'], report['machine'], report['versions']
    print(f"{BENCH}: {report['date']}; {machine['cpu']}, {machine['cores']} cores"
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
    print(f"{BENCH}: {report['wall_seconds']:.0f} s; CPU used by other processes meanwhile: "
          f"{'unknown' if other is None else f'{other:.0f} s'}"
          f"{' (the machine was shared: rates are too low)' if other and other > 0.05 * report['wall_seconds'] else ''}",
          file=stream)


# ------------------------------------------------------------------------------------------------ command line

def parse_args(argv=None):
    parser = OneLineErrorParser(prog=BENCH, description=__doc__.split('\n\n')[0],
                                formatter_class=DefaultsHelpFormatter)
    parser.add_argument('--out', help='also write the results as JSON to this file')
    parser.add_argument('--targets', default=os.path.join(HERE, 'bench_targets.json'),
                        help='the speed targets to print verdicts against (JSON)')
    parser.add_argument('--quick', action='store_true',
                        help="under 2 minutes: fewer, shorter windows, and only the program's default precision")
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
    parser.add_argument('--channels', type=positive_int, help="architecture override (default: convworking's)")
    parser.add_argument('--kernel-size', type=positive_int, help='architecture override')
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--worker']:
        return worker_main(*argv[1:4])
    args = parse_args(argv)
    targets = read_targets(args.targets)   # before the minutes of measuring: a bad file fails at once
    sys.path.insert(0, HERE)
    report = run_benchmark(args)
    print_report(report, targets)
    if args.out:
        write_strict_json(args.out, report)
        print(f"{BENCH}: wrote {args.out}")
    return 1 if report['failures'] else 0


if __name__ == '__main__':
    sys.exit(main())
