"""Facial expression remover for 3D face depth images: the network and its command line.

An encoder-decoder after Arahusky's SegNet version: the encoder is a list of layers, the decoder is the same
list walked backwards, each layer building its own mirror image (see layer.py). Graph mode through
tf.compat.v1: placeholders, sessions, savers, checkpoints.

    python convworking.py --mode train      # train on data128_128, checkpoints in checkpoints/remove/
    python convworking.py --mode test       # evaluate the best checkpoint on the test split -> results/
    python convworking.py --mode train --task segment   # the original's face segmentation (LFW Part Labels),
                                                        # checkpoints in checkpoints/segment/, results/segment/
"""
import argparse
import json
import os
import sys
import time


def import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up messages hidden.

    TensorFlow 2.21 prints them (oneDNN notes, CPU features) straight to file descriptor 2 during the
    import, ignoring TF_CPP_MIN_LOG_LEVEL; they would bury the one-line errors this program promises.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    saved = os.dup(2)
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    tensorflow.get_logger().setLevel('ERROR')  # deprecation notes of the tf.compat.v1 API we use on purpose
    return tensorflow


tf = import_tensorflow_quietly()
import numpy as np

import evaluation
import inference
import lfw_parts
import prepare_scans
from conv2d import Conv2d
from depth_dataset import DataError, IMAGE_SIZE
from depth_png import DepthImageError
from max_pool_2d import MaxPool2d
from plotting import save_results_grid
from progress import ProgressLine
from tasks import TASKS

PROGRAM = 'convworking.py'
HERE = os.path.dirname(os.path.abspath(__file__))
ARCHITECTURE_DEFAULTS = {
    'task': 'remove',
    'kernel_size': 7,
    'channels': 64,
    'modules': 3,
    'skip_links': 'all',
    'batch_norm': True,
    'residual': True,
    'standardize': False,
}
OPTIONS_FILE = 'options.json'
# Batches whose statistics refresh the batch-norm averages before each validation (0.9 ** 30 = 4 % of the
# old averages remain).
CALIBRATION_BATCHES = 30
BEST_STATE_FILE = 'best_checkpoint'    # Saver's state file for the best-on-validation checkpoints
LATEST_STATE_FILE = 'checkpoint'       # Saver's default state file, for the latest (resumable) ones


class UsageError(ValueError):
    """A problem the user can fix (an option, a file, a folder): reported as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------- network

def encoder_layers(architecture, is_training):
    """The encoder, top to bottom. The decoder is this list reversed (see Network)."""
    kernel, channels = architecture['kernel_size'], architecture['channels']
    skip_pools = architecture['skip_links'] in ('pools', 'all')
    skip_convs = architecture['skip_links'] == 'all'
    batch_norm = architecture['batch_norm']
    layers = []
    for module in range(1, architecture['modules'] + 1):
        layers += [
            Conv2d(kernel, 2, channels, f'conv_{module}_1', is_training, batch_norm, skip_convs),
            Conv2d(kernel, 1, channels, f'conv_{module}_2', is_training, batch_norm, skip_convs),
            MaxPool2d(2, f'max_{module}', skip_pools),
        ]
    # The deepest layer's output *is* the decoder's input: a skip link there would only double it.
    layers[-1].skip_connection = False
    return layers


def describe(layers):
    return ' '.join(layer.get_description() for layer in layers)


class Network:
    """Placeholders `inputs`, `targets`, `is_training`; output tensor `output`; loss; optimiser; summaries."""

    IMAGE_HEIGHT = IMAGE_WIDTH = IMAGE_SIZE
    IMAGE_CHANNELS = 1

    def __init__(self, architecture, learning_rate=1e-3, decay_steps=10000, loss=None, loss_region='image',
                 bfloat16=False):
        self.architecture = architecture
        self.task = TASKS[architecture['task']]
        shape = [None, self.IMAGE_HEIGHT, self.IMAGE_WIDTH, self.IMAGE_CHANNELS]
        self.inputs = tf.compat.v1.placeholder(tf.float32, shape, name='inputs')
        self.targets = tf.compat.v1.placeholder(tf.float32, shape, name='targets')
        self.is_training = tf.compat.v1.placeholder_with_default(False, [], name='is_training')
        self.layers = encoder_layers(architecture, self.is_training)

        net = self.inputs
        if architecture['standardize']:
            net = tf.map_fn(tf.image.per_image_standardization, net)
        if bfloat16:
            # Convolutions in bfloat16 run on the CPU's AVX-512 BF16 / AMX units via oneDNN; the weights,
            # the residual sum and the loss stay float32, so precision is lost only inside the network.
            net = tf.cast(net, tf.bfloat16)
        encoder_outputs = {}
        for layer in self.layers:
            net = encoder_outputs[layer.name] = layer.create_layer(net)
        for layer in reversed(self.layers):
            net = layer.create_layer_reversed(net, prev_layer=encoder_outputs[layer.name],
                                              is_output=layer is self.layers[0])
        self.logits = tf.cast(net, tf.float32)
        self.output = tf.identity(self.task.output(tf, self.logits, self.inputs, architecture), name='output')

        self.loss = self._loss(loss or self.task.default_loss, loss_region)
        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        # The task's validation score of the best checkpoint (lower is better), kept in the checkpoints.
        self.best_valid_score = tf.compat.v1.get_variable('best_valid_score', [], trainable=False,
                                                          initializer=tf.constant_initializer(np.inf))
        # What test, infer and export need: every variable made so far (not the optimiser's slots).
        self.model_variables = tf.compat.v1.global_variables()
        self.learning_rate = tf.compat.v1.train.polynomial_decay(
            learning_rate, self.global_step, decay_steps, end_learning_rate=learning_rate / 100)
        self.train_op = tf.compat.v1.train.AdamOptimizer(self.learning_rate).minimize(
            self.loss, global_step=self.global_step)
        self.summaries = tf.compat.v1.summary.merge([
            tf.compat.v1.summary.scalar('train/loss', self.loss),
            tf.compat.v1.summary.scalar('train/learning_rate', self.learning_rate)])

    def _loss(self, loss, region):
        """mse, rmse (the original's) or binary cross-entropy, over the face (target > 0) or the image."""
        if loss == 'bce':
            per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=self.targets, logits=self.logits)
        else:
            per_pixel = tf.square(self.output - self.targets)
        weight = tf.cast(self.targets > 0, tf.float32) if region == 'face' else tf.ones_like(self.targets)
        mean = tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weight), tf.reduce_sum(weight))
        return tf.sqrt(mean, name='loss') if loss == 'rmse' else tf.identity(mean, name='loss')

    def calibrate_batch_norm(self, session, input_batches):
        """Refresh the batch-norm moving averages for the current weights (training-mode forward passes,
        no weight update). Without it they trail weights that have moved since, and test-mode outputs suffer:
        measured mid-run, 2.46 mm valid RMSE with the trailing averages, 1.71 mm after refreshing them."""
        if self.architecture['batch_norm']:
            for inputs in input_batches:
                session.run(self.output, {self.inputs: inputs, self.is_training: True})

    def predict(self, session, dataset_batches):
        outputs = [session.run(self.output, {self.inputs: inputs}) for inputs, _ in dataset_batches]
        return np.concatenate(outputs)


# -------------------------------------------------------------------------------------------- checkpoints

def task_checkpoint_dir(args):
    return os.path.join(args.checkpoint_dir, args.task)


def read_options(checkpoint_dir):
    path = os.path.join(checkpoint_dir, OPTIONS_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: unreadable ({error})")


def write_json_atomically(path, data):
    temporary = path + '.tmp'
    with open(temporary, 'w') as file:
        json.dump(data, file, indent=2)
    os.replace(temporary, path)


def resolve_architecture(args, saved_options):
    """Architecture = what the user gave, else what the checkpoint was trained with, else the defaults.

    An explicitly given option that contradicts the checkpoint's is refused: that checkpoint cannot be used
    with it, and silently ignoring it would be worse.
    """
    saved = saved_options.get('architecture', {})
    architecture = {}
    for key, default in ARCHITECTURE_DEFAULTS.items():
        given = getattr(args, key)
        if given is not None and key in saved and given != saved[key]:
            raise UsageError(f"--{key.replace('_', '-')} {given} contradicts the checkpoint in "
                             f"{args.checkpoint_source}, trained with {saved[key]}")
        architecture[key] = given if given is not None else saved.get(key, default)
    return architecture


def checkpoint_prefix(path, state_files=(BEST_STATE_FILE, LATEST_STATE_FILE)):
    """A checkpoint prefix from a prefix or a folder (the folder's best, else its latest); None if none."""
    if os.path.isdir(path):
        for state_file in state_files:
            prefix = tf.train.latest_checkpoint(path, latest_filename=state_file)
            if prefix:
                return prefix
        return None
    return path if os.path.exists(path + '.index') else None


def check_checkpoint_fits(prefix, variables):
    """Refuse, in one line, a checkpoint whose variables do not match the graph's (other architecture)."""
    stored = dict(tf.train.list_variables(prefix))
    for variable in variables:
        name, shape = variable.op.name, variable.shape.as_list()
        if name not in stored:
            raise UsageError(f"{prefix}: made with a different architecture (it has no variable {name})")
        if list(stored[name]) != shape:
            raise UsageError(f"{prefix}: made with a different architecture ({name} is {stored[name]} "
                             f"there, {shape} here)")


class Checkpoints:
    """The latest checkpoint (everything, for resuming) and the best on validation (weights only).

    tf.compat.v1.train.Saver writes the new files first and only then switches its state file to them
    (atomically) and deletes the old ones, so a process killed mid-save leaves the previous checkpoint usable.
    """

    def __init__(self, directory, network):
        self.directory = directory
        # Relative paths in the state files keep a checkpoint folder usable after it is moved or cloned.
        self.latest = tf.compat.v1.train.Saver(max_to_keep=2, save_relative_paths=True)
        self.best = tf.compat.v1.train.Saver(network.model_variables, max_to_keep=1, save_relative_paths=True)

    def latest_prefix(self):
        return tf.train.latest_checkpoint(self.directory, latest_filename=LATEST_STATE_FILE)

    def best_prefix(self):
        return tf.train.latest_checkpoint(self.directory, latest_filename=BEST_STATE_FILE)

    def save_latest(self, session, step):
        return self.latest.save(session, os.path.join(self.directory, 'latest'), step,
                                latest_filename=LATEST_STATE_FILE, write_meta_graph=False)

    def save_best(self, session, step):
        return self.best.save(session, os.path.join(self.directory, 'best'), step,
                              latest_filename=BEST_STATE_FILE, write_meta_graph=False)


def remove_checkpoints(directory):
    """--restart: forget the task's previous run (checkpoints and options), as the user asked."""
    for name in os.listdir(directory):
        if name.startswith(('latest-', 'best-')) or name in (BEST_STATE_FILE, LATEST_STATE_FILE, OPTIONS_FILE):
            os.remove(os.path.join(directory, name))


# ---------------------------------------------------------------------------------------------- training

def grid_examples(dataset, count=12):
    """Fixed, evenly spread examples, so that the grids of different steps compare."""
    return np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int)


def scalar_summary(tag, value):
    return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)])


def image_summary(tag, png_path):
    with open(png_path, 'rb') as file:
        image = tf.compat.v1.Summary.Image(encoded_image_string=file.read())
    return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, image=image)])


def prepare_checkpoint_dir(args):
    """Create the task's checkpoint folder and return (folder, the options of a run to resume or {})."""
    directory = task_checkpoint_dir(args)
    os.makedirs(directory, exist_ok=True)
    if args.restart:
        remove_checkpoints(directory)
    args.checkpoint_source = directory
    return directory, read_options(directory)


def cpu_supports_bfloat16():
    """True where the CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX); elsewhere bfloat16 is emulated, slowly."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return ' avx512_bf16' in flags or ' amx_bf16' in flags


def train(args):
    directory, saved_options = prepare_checkpoint_dir(args)
    architecture = resolve_architecture(args, saved_options)
    task = TASKS[architecture['task']]
    train_set, valid_set = task.load(args, 'train'), task.load(args, 'valid')
    steps_per_epoch = train_set.steps_per_epoch(args.batch_size)
    max_steps = min(args.max_steps or np.inf, args.max_epochs * steps_per_epoch)

    tf.compat.v1.reset_default_graph()
    tf.compat.v1.set_random_seed(args.seed)
    if args.bfloat16 is None:
        args.bfloat16 = cpu_supports_bfloat16()
    network = Network(architecture, args.lr, max_steps, args.loss, args.loss_region, args.bfloat16)
    checkpoints = Checkpoints(directory, network)
    os.makedirs(args.results_dir, exist_ok=True)
    writer = tf.compat.v1.summary.FileWriter(os.path.join(args.results_dir, 'logs'))

    with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        resume_or_start(args, session, network, checkpoints, directory, architecture)
        step = session.run(network.global_step)
        print(f"{PROGRAM}: {describe(network.layers)}; {len(train_set)} training and {len(valid_set)} "
              f"validation pairs; steps {step} -> {max_steps} ({steps_per_epoch} per epoch)")
        examples = grid_examples(valid_set)
        progress = ProgressLine(step, max_steps, args.batch_size)
        started, step_start, last_good = time.time(), step, checkpoints.latest_prefix()
        while step < max_steps:
            inputs, targets, epoch = train_set.training_batch(step, args.batch_size, args.seed, args.flip)
            _, loss, summary = session.run(
                [network.train_op, network.loss, network.summaries],
                {network.inputs: inputs, network.targets: targets, network.is_training: True})
            step += 1  # train_op advanced the global step by one (fetching it in the same run is unordered)
            if not np.isfinite(loss):
                raise UsageError(f"the loss became {loss} at step {step}; stopped without saving. The last good "
                                 f"checkpoint is {last_good or 'none (none was saved yet)'}; try a lower --lr")
            progress.update(step, epoch + 1, loss)
            if step % args.summary_every == 0:
                writer.add_summary(summary, step)
            if step % args.validate_every == 0 or step == max_steps:
                network.calibrate_batch_norm(session, (
                    train_set.training_batch(step + i, args.batch_size, args.seed, args.flip)[0]
                    for i in range(CALIBRATION_BATCHES)))
                validate(args, session, network, checkpoints, valid_set, examples, writer, step)
            if step % args.save_every == 0 or step == max_steps:
                last_good = checkpoints.save_latest(session, step)
        writer.close()
        elapsed = time.time() - started
        best = session.run(network.best_valid_score)
        print(f"{PROGRAM}: trained steps {step_start}..{step} in {elapsed / 60:.1f} min "
              f"({(step - step_start) * args.batch_size / max(elapsed, 1e-9):.1f} img/s); "
              f"best {task.format_score(best)}, saved as {checkpoints.best_prefix()}")


def resume_or_start(args, session, network, checkpoints, directory, architecture):
    latest = checkpoints.latest_prefix()
    if latest:
        check_checkpoint_fits(latest, tf.compat.v1.global_variables())
        checkpoints.latest.restore(session, latest)
        print(f"{PROGRAM}: resuming from {latest} (use --restart to start over)")
    elif checkpoints.best_prefix():
        # A best model without a latest one (e.g. the shipped model): start afresh, but keep the best
        # score it set, so this run replaces it only by doing better on validation.
        best = checkpoints.best_prefix()
        check_checkpoint_fits(best, network.model_variables)
        score = tf.train.load_variable(best, network.best_valid_score.op.name)
        session.run(network.best_valid_score.assign(score))
        print(f"{PROGRAM}: {best} ({network.task.format_score(score)}) is kept unless this run does better")
    write_json_atomically(os.path.join(directory, OPTIONS_FILE),
                          {'architecture': architecture, 'training': training_options(args)})


def training_options(args):
    keys = ('data', 'targets', 'max_epochs', 'max_steps', 'batch_size', 'lr', 'seed', 'loss', 'loss_region',
            'flip', 'bfloat16')
    options = {key: getattr(args, key) for key in keys}
    options['data'] = evaluation.recorded_path(args.data)
    return options


def validate(args, session, network, checkpoints, valid_set, examples, writer, step):
    task = network.task
    outputs = network.predict(session, valid_set.batches(args.batch_size))
    score = task.valid_score(outputs, valid_set.targets)
    writer.add_summary(scalar_summary(f'valid/{task.score_name}', score), step)
    improved = score < session.run(network.best_valid_score)
    if improved:
        session.run(network.best_valid_score.assign(score))
        checkpoints.save_best(session, step)
    print(f"step {step}: {task.format_score(score)}{' (best so far, saved)' if improved else ''}", flush=True)
    if step % args.plot_every == 0:
        path = os.path.join(args.results_dir, f'step_{step:06d}.png')
        save_results_grid(path, valid_set.inputs[examples], valid_set.targets[examples], outputs[examples],
                          task.thresholded(outputs[examples], args), f'step {step}, {task.format_score(score)}')
        writer.add_summary(image_summary('valid/grid', path), step)


# ------------------------------------------------------------------------------------------ test and use

def restore_for_inference(args):
    """Build the network the checkpoint was trained with and restore it: (session, network, prefix)."""
    source = args.checkpoint or task_checkpoint_dir(args)
    prefix = checkpoint_prefix(source)
    if prefix is None:
        raise UsageError(f"{source}: no checkpoint found (train first, or give --checkpoint PATH)")
    args.checkpoint_source = prefix
    architecture = resolve_architecture(args, read_options(os.path.dirname(prefix)))
    tf.compat.v1.reset_default_graph()
    network = Network(architecture, bfloat16=bool(args.bfloat16))
    variables = network.model_variables
    check_checkpoint_fits(prefix, variables)
    session = tf.compat.v1.Session()
    tf.compat.v1.train.Saver(variables).restore(session, prefix)
    return session, network, prefix


def test(args):
    task = TASKS[args.task]
    test_set = task.load(args, 'test')
    session, network, prefix = restore_for_inference(args)
    with session:
        outputs = network.predict(session, test_set.batches(args.batch_size))
    os.makedirs(args.results_dir, exist_ok=True)
    metrics = task.evaluate(args, test_set, outputs, prefix)
    examples = grid_examples(test_set, 4 * 12)
    for number, start in enumerate(range(0, len(examples), 12), 1):
        chosen = examples[start:start + 12]
        save_results_grid(os.path.join(args.results_dir, f'test_grid_{number}.png'),
                          test_set.inputs[chosen], test_set.targets[chosen], outputs[chosen],
                          task.thresholded(outputs[chosen], args), f'test split, {os.path.basename(prefix)}')
    write_json_atomically(os.path.join(args.results_dir, 'test_metrics.json'), metrics)
    task.print_metrics(metrics)
    print(f"{PROGRAM}: wrote test_metrics.json and test_grid_*.png in {args.results_dir}")


def infer(args):
    session, network, _ = restore_for_inference(args)
    with session:
        inference.neutralise_files(session, network, args)


def export(args):
    session, network, prefix = restore_for_inference(args)
    with session:
        inference.export_model(session, network, prefix, args)


# ------------------------------------------------------------------------------------------ command line

def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows an option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or 'default' in action.help:
            return action.help
        return action.help + ' (default: %(default)s)'


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad option gets one line (no usage block), in the program's error format."""

    def error(self, message):
        self.exit(2, f"{PROGRAM}: error: {message} (see --help)\n")


# Each task's data and results by default. LFW Part Labels is research data kept outside the repository.
DEFAULT_DATA = {'remove': os.path.join(HERE, 'data128_128'),
                'segment': os.path.normpath(os.path.join(HERE, '..', 'shared', 'lfw_part_labels', 'data128_128'))}
DEFAULT_RESULTS = {'remove': os.path.join(HERE, 'results'), 'segment': os.path.join(HERE, 'results', 'segment')}


def parse_args(argv=None):
    parser = OneLineErrorParser(
        prog=PROGRAM, description='Remove facial expressions from 3D face depth images (or, with --task segment, '
                                  'segment faces in photographs as the network this one descends from did).',
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument('--mode', choices=['train', 'test', 'infer', 'export', 'prepare'], required=True,
                        help='train a network; test a trained one on the test split; infer neutral faces '
                             'for your own depth images; export the trained model for use without this code; '
                             'prepare depth images for infer from your own 3D scans (OBJ, PLY)')
    parser.add_argument('--task', choices=list(TASKS), default=None,
                        help='remove expressions from depth faces, or segment faces in the LFW Part Labels '
                             'photographs as the original network did (default: remove)')
    parser.add_argument('--data', default=None,
                        help='remove: folder holding inputs/{train,valid,test} and targets/{train,valid,test} '
                             f'(default {DEFAULT_DATA["remove"]}); segment: folder holding inputs/ and the '
                             f'targets folders, split 70/15/15 by sorted name (default {DEFAULT_DATA["segment"]})')
    parser.add_argument('--targets', choices=lfw_parts.TARGET_FOLDERS, default=None,
                        help='segment: the masks, face only (the original\'s default) or face and hair '
                             f'(default {lfw_parts.TARGET_FOLDERS[0]})')
    parser.add_argument('--max-epochs', type=positive_int, default=45, help='train for at most this many epochs')
    parser.add_argument('--max-steps', type=positive_int,
                        help='train for at most this many steps (default: as many as --max-epochs allows)')
    parser.add_argument('--batch-size', type=positive_int, default=16, help='images per training step')
    parser.add_argument('--lr', type=positive_float, default=1e-3,
                        help='initial learning rate of Adam, decaying linearly to 1/100 of it at the last step')
    parser.add_argument('--seed', type=int, default=0, help='seed of weight initialisation and batch order')
    parser.add_argument('--checkpoint-dir', default=os.path.join(HERE, 'checkpoints'),
                        help='folder of checkpoints; each task keeps its own subfolder (e.g. checkpoints/remove)')
    parser.add_argument('--results-dir', default=None,
                        help='folder for result grids, test metrics and TensorBoard logs (logs/) '
                             f'(default {DEFAULT_RESULTS["remove"]} for remove, {DEFAULT_RESULTS["segment"]} '
                             'for segment)')
    parser.add_argument('--checkpoint', default=None,
                        help="checkpoint prefix or folder to test (default: the task's best checkpoint)")
    parser.add_argument('--input', help='infer: a depth PNG or a folder of them; prepare: an .obj or .ply scan '
                                        'or a folder of them')
    parser.add_argument('--units', choices=prepare_scans.UNIT_CHOICES, default='auto',
                        help="prepare: the scans' units; auto tells m, cm and mm apart by the face's size")
    parser.add_argument('--output', help='infer: new folder for the neutralised images (and previews/); '
                                         'export: new folder for the frozen graphs, SavedModel and model.json; '
                                         'prepare: folder for the depth images (and previews/)')
    parser.add_argument('--resize', action='store_true',
                        help='infer: resample images that are not 128 x 128 (depth values kept; results are '
                             'meaningful only for images that follow the convention in README)')
    parser.add_argument('--restart', action='store_true',
                        help="train from scratch, deleting the task's previous checkpoints")
    parser.add_argument('--validate-every', type=positive_int, default=250, help='validate every N steps')
    parser.add_argument('--plot-every', type=positive_int, default=1000,
                        help='save a results grid every N steps (at a validation step)')
    parser.add_argument('--save-every', type=positive_int, default=250, help='save the latest checkpoint every N steps')
    parser.add_argument('--summary-every', type=positive_int, default=50,
                        help='write training scalars for TensorBoard every N steps')
    parser.add_argument('--loss', choices=['mse', 'rmse', 'bce'],
                        help='training loss: mean squared error, its root (the original\'s), or binary '
                             'cross-entropy (segment only); default mse for remove, rmse for segment')
    parser.add_argument('--loss-region', choices=['face', 'image'],
                        help='compute the loss over the face only (target > 0) or over the whole image '
                             '(default face for remove; segment always uses the whole image)')
    parser.add_argument('--bfloat16', action=argparse.BooleanOptionalAction,
                        help='compute the convolutions in bfloat16, about 3.5x faster on CPUs with AVX-512 BF16 / '
                             'AMX (default when training: on where the CPU has them; test, infer and export '
                             'compute in float32 unless this is given)')
    parser.add_argument('--flip', action=argparse.BooleanOptionalAction, default=True,
                        help='mirror a random half of each training batch left-right')
    parser.add_argument('--threshold-mm', type=float, default=10.0,
                        help='outputs below this height (mm) count as background: in the thresholded row of '
                             'the grids, in recognition and in the images infer writes')
    architecture = parser.add_argument_group(
        'architecture', 'default: the checkpoint\'s own when testing or resuming, else '
        + ', '.join(f'{key}={value}' for key, value in ARCHITECTURE_DEFAULTS.items()))
    architecture.add_argument('--kernel-size', type=positive_int, help='convolution kernel size')
    architecture.add_argument('--channels', type=positive_int, help='channels of every convolution')
    architecture.add_argument('--modules', type=positive_int,
                              help='encoder modules (conv stride 2, conv stride 1, max pool); at most 3 for 128 px')
    architecture.add_argument('--skip-links', choices=['none', 'pools', 'all'],
                              help='skip links from encoder to decoder: none, at the max pools (the original), '
                                   'or after every layer')
    architecture.add_argument('--batch-norm', action=argparse.BooleanOptionalAction,
                              help='batch normalisation after every convolution but the last')
    architecture.add_argument('--residual', action=argparse.BooleanOptionalAction,
                              help='predict the correction to the input instead of the whole face')
    architecture.add_argument('--standardize', action=argparse.BooleanOptionalAction,
                              help='per-image standardisation of the input (tf.image.per_image_standardization)')
    args = parser.parse_args(argv)
    if args.modules is not None and IMAGE_SIZE % 4 ** args.modules:
        # every module halves the size twice (stride-2 convolution, max pool)
        parser.error(f"--modules {args.modules} shrinks a {IMAGE_SIZE}-pixel image below one pixel; use at most 3")
    for option, modes in (('input', ('infer', 'prepare')), ('output', ('infer', 'export', 'prepare'))):
        if args.mode in modes and not getattr(args, option):
            parser.error(f"--mode {args.mode} needs --{option}")
    args.task = args.task or ARCHITECTURE_DEFAULTS['task']
    task = TASKS[args.task]
    if args.task == 'segment':
        if args.mode in ('infer', 'export'):
            parser.error(f"--mode {args.mode} does not fit --task segment (it trains and tests only)")
        if args.residual:
            parser.error("--residual does not fit --task segment (its output is a probability, not a correction)")
        args.residual = False     # so that options.json says what the network does
        args.targets = args.targets or lfw_parts.TARGET_FOLDERS[0]
    elif args.targets is not None:
        parser.error(f"--targets does not fit --task {args.task} (it chooses the masks of --task segment)")
    args.data = args.data or DEFAULT_DATA[args.task]
    args.results_dir = args.results_dir or DEFAULT_RESULTS[args.task]
    for option, value, allowed in (('--loss', args.loss, task.losses),
                                   ('--loss-region', args.loss_region, task.loss_regions)):
        if value is not None and value not in allowed:
            parser.error(f"{option} {value} does not fit --task {args.task} (choose from {', '.join(allowed)})")
    args.loss = args.loss or task.default_loss
    args.loss_region = args.loss_region or task.loss_regions[0]
    return args


def main(argv=None):
    args = parse_args(argv)
    tf.compat.v1.disable_eager_execution()
    try:
        {'train': train, 'test': test, 'infer': infer, 'export': export,
         'prepare': prepare_scans.prepare_files}[args.mode](args)
    except (UsageError, DataError, DepthImageError) as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROGRAM}: interrupted; the latest saved checkpoint is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
