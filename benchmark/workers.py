"""The speed benchmark's workers that run the project's own code: convworking.py's training path, unchanged and
watched through its public observer; its bare training graph, the project's and the frozen inference graph and
a matrix product. They take convworking (a command, which no package module imports) as `program`: bench.py
passes it in, imported in the worker's own process (as are TensorFlow and the training loop).
"""
import os
import resource
import time

from benchmark.peers import IMAGE_SHAPE
from benchmark.timing import Pacer, calls_of, window_of


def worker_program(spec, channel, program):
    """convworking.py's training path, unchanged, watched through its public TrainingObserver.

    The run ends with the periodic block the default configuration runs every --validate-every steps
    (batch-norm refresh, validation, checkpoint): its duration is the time from the last step's progress
    update to the end of main(). With spec['repeat_periodic'], its parts that build a new inference path on
    first use (calibrate_batch_norm, validate) run twice and the first runs are left out, since a long run pays
    that set-up once, not every interval.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    from training.loop import TrainingObserver

    batch = spec['batch_size']
    pacer = Pacer(channel, 'program', spec['warmup'], spec['steps'], batch)
    stamps, calls = [], {}
    repeat = 2 if spec['repeat_periodic'] else 1

    class PacedObserver(TrainingObserver):
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

    defaults = program.parse_args(['--mode', 'train'])
    total_steps = spec['warmup'] + spec['windows'] * spec['steps']
    argv = ['--mode', 'train', '--restart', '--max-steps', str(total_steps),
            '--checkpoint-dir', os.path.join(spec['tmp'], 'checkpoints'),
            '--results-dir', os.path.join(spec['tmp'], 'results'),
            '--batch-size', str(batch), *architecture_argv(spec['architecture']),
            '--bfloat16' if spec['precision'] == 'bfloat16' else '--no-bfloat16',
            # The speed of a step does not depend on how many pairs it draws from: measure without rendering
            # or loading the generated training identities.
            '--generated-subjects', '0', '--family-subjects', '0']
    if spec['data']:
        argv += ['--data', spec['data']]
    status = program.main(argv, PacedObserver())
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
    """convworking's command-line options that build `architecture`."""
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


def worker_graph(spec, channel, program):
    """The bare training graph, inference of the project's and the frozen graph, and the matmul rate."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import numpy as np

    from inference.export import frozen_inference_graph
    from support.quiet_tensorflow import tf
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
        network = program.Network(architecture, bf16, program.TrainingSetup())
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
        network = program.Network(architecture, bfloat16=bf16)
        # Weights and moving statistics (the step and the best score are bookkeeping): to compare with the peers.
        details['parameters'] = int(sum(np.prod(v.shape.as_list()) for v in network.model_variables
                                        if v not in (network.global_step, network.best_valid_score)))
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        project = session.make_callable(network.output, feed_list=[network.inputs])
    with tf.Graph().as_default() as graph:
        network = program.Network(architecture, bfloat16=bf16, for_export=True)
        session = session_of(graph)
        session.run(tf.compat.v1.global_variables_initializer())
        frozen_graph_def = frozen_inference_graph(session, network)
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

