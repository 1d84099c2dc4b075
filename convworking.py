"""Facial expression remover for 3D face depth images: the network and its command line.

An encoder-decoder after Arahusky's SegNet version: the encoder is a list of layers, the decoder is the same
list walked backwards, each layer building its own mirror image (see layer.py). Graph mode through
tf.compat.v1: placeholders, sessions, savers, checkpoints.

    python convworking.py --mode test       # evaluate the best checkpoint on the test split -> results/
    python convworking.py --mode train      # train on data128_128, checkpoints in checkpoints/remove/
    python convworking.py --mode train --task segment   # the original's face segmentation (LFW Part Labels),
                                                        # checkpoints in checkpoints/segment/, results/segment/
"""
if __name__ == '__main__':  # before the imports, which take seconds: Ctrl-C during them ends it in one line
    from support.command_line import stop_at_once_while_starting
    stop_at_once_while_starting()

import argparse
import collections
import dataclasses
import os
import sys

import numpy as np

from depth.convention import IMAGE_SIZE, mm_to_network
from depth.dataset import DataError
from depth.png import DepthImageError
from evaluation import testing
from faces import generated
from faces.variation import VARIATIONS
from inference.background import DEFAULT_THRESHOLD_MM, Background, background_description
from scanning import prepare
from support.command_line import (PROGRAM, DefaultsHelpFormatter, OneLineErrorParser, UsageError, examples_text,
                                  exit_status, finite_float, positive_float, positive_int, report_error, report_stop,
                                  non_negative_float, say, whole_number)
from support.machine import cpu_supports_bfloat16
from support.output_places import (DEFAULT_RESULTS, DEFAULT_TRAINING_DIR, SHIPPED_DIR, check_output_place,
                                   default_folders)
from support.paths import REPOSITORY, recorded_path
from support.quiet_tensorflow import error_summary, import_tensorflow_quietly, tf
from support.safe_files import FolderError
from training import lfw_parts, loop
from training.architecture import MAX_CHANNELS, MAX_KERNEL_SIZE
from training.checkpoints import CheckpointError, checkpoint_prefix, read_options, restore_checkpoint
from training.loop import TrainingObserver
from training.tasks import TASKS, DataSource, masked_mean

ARCHITECTURE_DEFAULTS = {
    'task': 'remove',
    'kernel_size': 5,
    'channels': 64,
    'modules': 3,
    'skip_links': 'all',
    'batch_norm': True,
    'residual': True,
    'standardize': False,
}


# ----------------------------------------------------------------------------------------------- network

def encoder_layers(architecture, is_training):
    """The encoder, top to bottom. The decoder is this list reversed (see Network)."""
    # The layer modules import TensorFlow: only here, and after the quiet import, so that it stays quiet.
    import_tensorflow_quietly()
    from conv2d import Conv2d
    from max_pool_2d import MaxPool2d
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


TrainingSetup = collections.namedtuple('TrainingSetup', 'learning_rate decay_steps loss loss_region background_weight',
                                       defaults=(1e-3, 10000, None, 'image', 0.0))


class Network:
    """Placeholders `inputs`, `targets`, `is_training`; output tensor `output`; with a TrainingSetup also the
    loss, optimiser and summaries (test, infer and export build no optimiser they would never run).

    for_export fixes is_training to False, so that batch normalisation is built without a tf.cond and the
    graph freezes to plain operations. Test and infer keep the placeholder (default False): grappler optimises
    the two graphs differently, and the placeholder's graph reproduces the published test metrics bit for bit
    (the fixed one differs from them by about 1e-8 mm). mirror_average (test, infer, export) averages the
    output with the mirrored output of the mirrored input; deadband_mm (the same, remove only) then shrinks the
    displacement of the input's surface by that much towards none, and deadband_relief by that share of the
    input's local relief more on faces the network barely changes; training and validation score the network
    alone.
    """

    IMAGE_HEIGHT = IMAGE_WIDTH = IMAGE_SIZE
    IMAGE_CHANNELS = 1

    def __init__(self, architecture, bfloat16=False, training=None, for_export=False, mirror_average=False,
                 deadband_mm=0.0, deadband_relief=0.0):
        self.architecture, self.mirror_average = architecture, mirror_average
        self.deadband_mm, self.deadband_relief = deadband_mm, deadband_relief
        self.task = TASKS[architecture['task']]
        shape = [None, self.IMAGE_HEIGHT, self.IMAGE_WIDTH, self.IMAGE_CHANNELS]
        self.inputs = tf.compat.v1.placeholder(tf.float32, shape, name='inputs')
        self.targets = tf.compat.v1.placeholder(tf.float32, shape, name='targets')
        self.is_training = False if for_export else tf.compat.v1.placeholder_with_default(False, [],
                                                                                          name='is_training')
        self.layers = encoder_layers(architecture, self.is_training)

        net = self.inputs
        if mirror_average:
            # Each face and its mirror image in one batch; the output averages the network's answer with the
            # mirrored answer for the mirrored face. The network cannot mirror its own behaviour exactly (its
            # stride-2 padding is one-sided), so the two answers differ, and their mean is closer to the truth
            # (results/experiments.md).
            net = tf.concat([net, tf.reverse(net, [2])], 0)
        network_inputs = net
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
        self.logits = self.task.logits(tf, tf.cast(net, tf.float32), network_inputs, architecture)
        output = self.task.output(tf, self.logits, network_inputs, architecture)
        if mirror_average:
            direct, mirrored = tf.split(output, 2)
            output = (direct + tf.reverse(mirrored, [2])) / 2
        if deadband_mm or deadband_relief:
            output = self.task.with_deadband(tf, output, self.inputs, deadband_mm, deadband_relief)
        self.output = tf.identity(output, name='output')

        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        # The task's validation score of the best checkpoint (lower is better), kept in the checkpoints.
        self.best_valid_score = tf.compat.v1.get_variable('best_valid_score', [], trainable=False,
                                                          initializer=tf.constant_initializer(np.inf))
        # What test, infer and export need: every variable made so far (not the optimiser's slots).
        self.model_variables = tf.compat.v1.global_variables()
        if training:
            self._add_training_ops(training)

    def _add_training_ops(self, setup):
        self.loss = self._loss(setup.loss or self.task.default_loss, setup.loss_region, setup.background_weight)
        # What the progress line and TensorBoard show of training, in the units of the validation score.
        self.training_score = self.task.training_score(tf, self.output, self.targets)
        self.learning_rate = tf.compat.v1.train.polynomial_decay(
            setup.learning_rate, self.global_step, setup.decay_steps, end_learning_rate=setup.learning_rate / 100)
        self.train_op = tf.compat.v1.train.AdamOptimizer(self.learning_rate).minimize(
            self.loss, global_step=self.global_step)
        self.summaries = tf.compat.v1.summary.merge([
            tf.compat.v1.summary.scalar('train/loss', self.loss),
            tf.compat.v1.summary.scalar(f'train/{self.task.training_score_tag}', self.training_score),
            tf.compat.v1.summary.scalar('train/learning_rate', self.learning_rate)])

    def _loss(self, loss, region, background_weight):
        """mse, rmse (the original's) or binary cross-entropy, over the face (target > 0) or the image; with a
        background_weight, plus that much of the task's hinge on surface painted beside the face."""
        if loss == 'bce':
            per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=self.targets, logits=self.logits)
        else:
            per_pixel = tf.square(self.output - self.targets)
        weight = tf.cast(self.targets > 0, tf.float32) if region == 'face' else tf.ones_like(self.targets)
        mean = masked_mean(tf, per_pixel, weight)
        if background_weight:
            mean += background_weight * self.task.painted_background(tf, self.output, self.targets, self.inputs)
        return tf.sqrt(mean, name='loss') if loss == 'rmse' else tf.identity(mean, name='loss')

    def describe(self):
        return ' '.join(layer.get_description() for layer in self.layers)

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


# ------------------------------------------------------------------------------ the checkpoint's architecture

def task_checkpoint_dir(options):
    return os.path.join(options.checkpoint_dir, options.task)


def resolve_architecture(options, saved_options, source, option):
    """Architecture = what the user gave, else what the checkpoint was trained with (the options saved in
    `source`, a checkpoint or its folder, named by the command-line option `option`), else the defaults.

    An explicitly given option that contradicts the checkpoint's is refused: that checkpoint cannot be used
    with it, and silently ignoring it would be worse.
    """
    saved = saved_options.get('architecture', {})
    architecture = {}
    for key, default in ARCHITECTURE_DEFAULTS.items():
        given = getattr(options, key)
        if key == 'task' and saved.get(key, given) != given:
            raise UsageError(f"{option} {source} holds a --task {saved[key]} checkpoint, not a --task {given} one"
                             if options.task_given else
                             f"{source} holds a --task {saved[key]} checkpoint; give --task {saved[key]} to use it")
        if given is not None and key in saved and given != saved[key]:
            raise UsageError(f"--{key.replace('_', '-')} {given} contradicts the checkpoint in "
                             f"{source}, trained with {saved[key]}")
        architecture[key] = given if given is not None else saved.get(key, default)
    return architecture


# ---------------------------------------------------------------------------------------------- training

def train(options, observer=TrainingObserver()):
    say(f"loading the data of {options.data} and building the network")
    directory = task_checkpoint_dir(options)
    # --restart deletes the previous run only once every check of the command has passed (in the loop)
    architecture = resolve_architecture(options, {} if options.restart else read_options(directory), directory,
                                        '--checkpoint-dir')

    def build_network(max_steps):
        return Network(architecture, options.bfloat16,
                       TrainingSetup(options.lr, max_steps, options.loss, options.loss_region,
                                     options.background_weight))

    loop.train(options, architecture, directory, build_network, observer)


# ------------------------------------------------------------------------------------------ test and use

def restore_for_inference(options, for_export=False):
    """Build the network the checkpoint was trained with and restore it: (session, network, prefix)."""
    tf.compat.v1.reset_default_graph()
    return restore_network(options.checkpoint or task_checkpoint_dir(options), '--checkpoint', options, options,
                           for_export, options.deadband_mm, options.deadband_relief)


def restore_network(source, option, given, options, for_export=False, deadband_mm=0.0, deadband_relief=0.0):
    """The network of the checkpoint in `source` (a prefix, or a folder holding one directly or in given.task's
    subfolder, as a --checkpoint-dir does), built into the default graph as trained with, the architecture
    options of `given` (Options) checked against it, and restored: (session, network, prefix)."""
    prefix = checkpoint_prefix(source) or (os.path.isdir(source)
                                           and checkpoint_prefix(os.path.join(source, given.task)))
    if not prefix:
        raise UsageError(f"{source}: no checkpoint found, nor in {os.path.join(source, given.task)} "
                         f"(train first, or give {option} PATH)")
    architecture = resolve_architecture(given, read_options(os.path.dirname(prefix)), prefix, option)
    network = Network(architecture, bfloat16=options.bfloat16, for_export=for_export,
                      mirror_average=options.mirror_average, deadband_mm=deadband_mm,
                      deadband_relief=deadband_relief)
    variables = network.model_variables
    session = tf.compat.v1.Session()
    restore_checkpoint(tf.compat.v1.train.Saver(variables), session, prefix, variables, architecture)
    return session, network, prefix


def restore_mask_network(options, for_export=False):
    """The mask network of --mask-checkpoint, in a graph of its own, its architecture its checkpoint's:
    (session, network, prefix)."""
    mask_task = dataclasses.replace(options, task='mask', task_given=True,
                                    **{key: None for key in ARCHITECTURE_DEFAULTS if key != 'task'})
    with tf.Graph().as_default():
        return restore_network(options.mask_checkpoint, '--mask-checkpoint', mask_task, options, for_export)


def restore_background(options):
    """How test and infer decide the outputs' background (inference.background.Background): by the mask network
    of --mask-checkpoint, or by the input."""
    if options.background == 'input':
        return Background(options.threshold_mm)
    session, network, prefix = restore_mask_network(options)

    def face_probability(inputs_mm):
        images = mm_to_network(inputs_mm.reshape((-1,) + inputs_mm.shape[-2:]))[..., np.newaxis]
        batches = ((images[start:start + options.batch_size], None)
                   for start in range(0, len(images), options.batch_size))
        return network.predict(session, batches).reshape(inputs_mm.shape)

    return Background(face_probability=face_probability, mask_checkpoint=recorded_path(prefix))


def test(options):
    testing.test_checkpoint(options, lambda: restore_for_inference(options), lambda: restore_background(options))


def infer(options):
    session, network, _ = restore_for_inference(options)
    background = restore_background(options)
    from inference import neutralise  # here, not at the top: --help and the other modes need not wait for it
    with session:
        neutralise.neutralise_files(session, network, options.input, options.output, options.resize,
                                    options.batch_size, background, options.previews)


def export(options):
    session, network, prefix = restore_for_inference(options, for_export=True)
    mask = restore_mask_network(options, for_export=True) if options.background == 'mask' else None
    from inference import export  # here, not at the top: it imports TensorFlow
    test_rmse_mm = export.rmse_on_test_split(prefix, options.results_dir, options.data)
    background = background_description(options.threshold_mm, mask and recorded_path(mask[2]))
    with session:
        export.export_model(session, network, prefix, options.output, background, options.bfloat16, test_rmse_mm,
                            mask and mask[:2])


# ------------------------------------------------------------------------------------------ command line

# The examples --help ends with, (comment, command): README's Quick start and Train blocks show the same lines,
# and tests/test_readme.py holds them to it, so that the two cannot drift apart.
EXAMPLES = (
    ('the shipped model on the test split: 3-10 min the first time (it renders a recognition gallery once);\n'
     '19-25 min on a 2-core CPU without AVX-512 (an AMD EPYC of the first generation)',
     f'python {PROGRAM} --mode test --results-dir runs/test'),
    ('the neutral face of a surprised test subject',
     f'python {PROGRAM} --mode infer --input data128_128/inputs/test/0100_SU04.png --output runs/neutral'),
    ('a sample 3D scan (a new identity, surprised, turned) to a depth image, then its neutral face',
     f'python {PROGRAM} --mode prepare --input samples/scan_surprise.ply --output runs/prepared'),
    (None, f'python {PROGRAM} --mode infer --input runs/prepared --output runs/neutral_scan'),
    ('the model for use without this code: frozen graphs, SavedModel, OpenCV graph (OpenCV reads the network\n'
     'alone, without the mirror average and the deadband of test and infer)',
     f'python {PROGRAM} --mode export --no-mirror-average --deadband-mm 0 --deadband-relief 0 '
     '--output runs/exported'),
    ('a smoke run: 200 steps on the committed training split only (nothing rendered), 2-3 minutes on the\n'
     'project\'s 2-core CPU (bfloat16), 7.5 min on a 2-core CPU without AVX-512 (float32)',
     f'python {PROGRAM} --mode train --max-steps 200 --generated-subjects 0 --family-subjects 0 '
     '--checkpoint-dir runs/smoke --results-dir runs/smoke/results'),
    ('the full run: 640 generated identities, varied and plain (rendered once, ~30 min) + 40,000 steps:\n'
     'about 3.5 h on a 2-core AMD EPYC with AVX-512 BF16 but no AMX (51 img/s; the shipped model), 94 min on a\n'
     '2-core Intel Xeon with AMX (114 img/s); in float32 (no AVX-512 BF16 / AMX) 2.7x as long as on the Xeon,\n'
     'about 21 h on a 2-core first-generation AMD EPYC (AVX2 only, 8.3 img/s; see README, Speed)',
     f'python {PROGRAM} --mode train --checkpoint-dir runs/full --results-dir runs/full/results'),
    (None, f'python {PROGRAM} --mode test --checkpoint runs/full --results-dir runs/full/results'),
    ('the full run in TensorBoard, then open http://localhost:6006 (loss, RMSE, grids); the smoke run\'s:\n'
     '--logdir runs/smoke/results/logs',
     'tensorboard --logdir runs/full/results/logs'),
)


# Each task's data and results by default. LFW Part Labels is research data kept outside the repository.
DEFAULT_DATA = {'remove': os.path.join(REPOSITORY, 'data128_128'), 'mask': os.path.join(REPOSITORY, 'data128_128'),
                'segment': os.path.normpath(os.path.join(REPOSITORY, '..', 'shared', 'lfw_part_labels', 'data128_128'))}
# How long a default run trains. remove: the steps that reach the shipped model's score on this CPU (see
# results/experiments.md); mask: the steps of the shipped mask network (its best of 20,000 came at 19,000; at
# 10,000 both its scores were still falling); segment: the epochs of the reproduction.
DEFAULT_LENGTH = {'remove': {'max_steps': 40000, 'max_epochs': None},
                  'mask': {'max_steps': 20000, 'max_epochs': None},
                  'segment': {'max_steps': None, 'max_epochs': 45}}
DEFAULT_GENERATED_SUBJECTS = 640
# Faces beyond the face model's own (faces.variation): every kind training may use (warp is held out).
TRAINING_VARIATIONS = tuple(kind for kind in VARIATIONS if kind != 'warp')
DEFAULT_GENERATED_VARIATIONS = TRAINING_VARIATIONS
DEFAULT_PLAIN_SUBJECTS = 640
DEFAULT_PLAIN_REPEATS = 2
DEFAULT_FAMILY_SUBJECTS = 20
DEFAULT_BACKGROUND_WEIGHT = 0.0
# test, infer, export: the displacement's soft threshold, chosen on the valid split and the held-out family
# (results/experiments.md)
DEFAULT_DEADBAND_MM = 0.2
# ... and its share of the input's local relief on faces the network barely changes (the same choice)
DEFAULT_DEADBAND_RELIEF = 0.1
DEFAULT_GALLERY_SUBJECTS = 300
DEFAULT_PREVIEWS = 8
DEFAULT_MODEL_FIT_EVERY = 20  # the model fit takes seconds per image: test mode runs it on a sample


def parse_args(argv=None):
    parser = OneLineErrorParser(
        prog=PROGRAM, description='Remove facial expressions from 3D face depth images (or, with --task segment, '
                                  'segment faces in photographs as the network this one descends from did).',
        formatter_class=DefaultsHelpFormatter, epilog=examples_text(EXAMPLES))
    parser.add_argument('--mode', choices=['train', 'test', 'infer', 'export', 'prepare'], required=True,
                        help='train a network; test a trained one on the test split; infer neutral faces '
                             'for your own depth images; export the trained model for use without this code; '
                             'prepare depth images for infer from your own 3D scans (OBJ, PLY; BU-3DFE .wrl, '
                             'Bosphorus .bnt, FRGC .abs)')
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
    parser.add_argument('--max-epochs', type=positive_int,
                        help="train for at most this many epochs (default: no limit for remove and mask, which run "
                             f"by --max-steps; {DEFAULT_LENGTH['segment']['max_epochs']} for segment)")
    parser.add_argument('--max-steps', type=positive_int,
                        help=f"train for at most this many steps (default: {DEFAULT_LENGTH['remove']['max_steps']} "
                             f"for remove, {DEFAULT_LENGTH['mask']['max_steps']} for mask, "
                             f"{DEFAULT_LENGTH['segment']['max_steps']} for segment: as many as --max-epochs allows)")
    parser.add_argument('--generated-subjects', type=whole_number(0),
                        help='remove: train on this many generated identities besides the committed training '
                             'split; made by make_dataset.py from the repository\'s face model (seed '
                             f'{generated.TRAINING_SEED}, {generated.TRAINING_MIXTURES} mixtures each) on '
                             'first use and cached in --generated-dir; 0 = the committed training split only, the '
                             f'original protocol (default: {DEFAULT_GENERATED_SUBJECTS})')
    parser.add_argument('--generated-variations', nargs='*', choices=TRAINING_VARIATIONS, default=None,
                        metavar='KIND',
                        help='remove: vary the generated identities beyond the face model (faces/variation.py): '
                             f'any of {", ".join(TRAINING_VARIATIONS)}; none given = the face model\'s own faces '
                             f'(default: {" ".join(DEFAULT_GENERATED_VARIATIONS)})')
    parser.add_argument('--plain-subjects', type=whole_number(0), default=None,
                        help='remove, with --generated-variations: also train on the first N generated identities '
                             'as the face model made them, unvaried, as the committed valid and test faces are '
                             f'(default: {DEFAULT_PLAIN_SUBJECTS}; at most --generated-subjects)')
    parser.add_argument('--family-subjects', type=whole_number(0), default=None,
                        help='remove, train: also validate on a held-out family of this many generated subjects, '
                             'faces of a kind no training draws from (warped identities, cut outlines, moving '
                             'faces, scanner noise), and choose the best checkpoint by the mean of its score and '
                             f'the valid split\'s; 0 = the valid split alone (default: {DEFAULT_FAMILY_SUBJECTS})')
    parser.add_argument('--neutral-repeats', type=whole_number(0, 100), default=0,
                        help='remove, train: add each training subject\'s neutral pair (its neutral face as input '
                             'and target) this many times more; a neutral input should come out as itself, and '
                             'it is one pair of a subject\'s 31-37')
    parser.add_argument('--plain-repeats', type=whole_number(0, 100), default=None,
                        help='remove, train, with --generated-variations: add the face model\'s own faces (the '
                             'committed training split and the --plain-subjects identities) this many times more, '
                             f'so that they weigh more against the varied ones (default: {DEFAULT_PLAIN_REPEATS} for '
                             'remove, 0 for mask)')
    parser.add_argument('--gallery-subjects', type=whole_number(0), default=DEFAULT_GALLERY_SUBJECTS,
                        help='remove, test: also measure recognition on a gallery of this many generated '
                             f'identities no training sees (seed {generated.GALLERY_SEED}), cached in '
                             '--generated-dir; 0 = skip')
    parser.add_argument('--model-fit-every', type=whole_number(0), default=DEFAULT_MODEL_FIT_EVERY,
                        help='remove, test: also score the field\'s usual neutraliser, the face model fitted to the '
                             'input and re-rendered without its expression, on every Nth test image from the '
                             'first (several seconds each); 0 = skip')
    parser.add_argument('--offset-px', type=whole_number(-(IMAGE_SIZE // 4), IMAGE_SIZE // 4), nargs=2, default=None,
                        metavar=('ROWS', 'COLS'),
                        help='test: move every test pair (input and target together) ROWS pixels down and COLS '
                             'right before testing (negative: up, left), to measure how much the model relies on '
                             'the face sitting exactly where the convention puts it: a scan registered that far off '
                             '(1 px = 1.5 mm; default: 0 0)')
    parser.add_argument('--generated-dir', default=generated.DEFAULT_FOLDER,
                        help='folder caching the generated identities (not part of the repository)')
    parser.add_argument('--batch-size', type=positive_int, default=16, help='images per training step')
    parser.add_argument('--lr', type=positive_float, default=1e-3,
                        help='initial learning rate of Adam, decaying linearly to 1/100 of it at the last step')
    parser.add_argument('--seed', type=whole_number(0), default=0, help='seed of weight initialisation and batch order')
    parser.add_argument('--checkpoint-dir', default=None,
                        help='folder of checkpoints; each task keeps its own subfolder (e.g. checkpoints/remove) '
                             f'(default: {DEFAULT_TRAINING_DIR} for train, which never writes into the shipped '
                             f'models\' {SHIPPED_DIR}; {SHIPPED_DIR} for the other modes)')
    parser.add_argument('--results-dir', default=None,
                        help='folder for result grids, test metrics and TensorBoard logs (logs/) '
                             f'(default {DEFAULT_RESULTS["remove"]} for remove, {DEFAULT_RESULTS["segment"]} '
                             'for segment, under the repository; train: the same under --checkpoint-dir)')
    parser.add_argument('--checkpoint', default=None,
                        help="checkpoint prefix or folder to test (default: the task's best checkpoint)")
    parser.add_argument('--input', help='infer: a depth PNG or a folder of them; prepare: a 3D scan (.obj, .ply, '
                                        '.wrl, .bnt, .abs) or a folder of them')
    parser.add_argument('--units', choices=prepare.UNIT_CHOICES, default='auto',
                        help="prepare: the scans' units; auto tells m, cm and mm apart by the face's size")
    parser.add_argument('--output', help='infer: new folder for the neutralised images (and previews/); '
                                         'export: new folder for the frozen graphs, SavedModel and model.json; '
                                         'prepare: folder for the depth images (and previews/)')
    parser.add_argument('--previews', type=whole_number(0), default=DEFAULT_PREVIEWS,
                        help='infer: draw a preview (input | output | difference) of the first N images only: '
                             'drawing one takes far longer than neutralising it')
    parser.add_argument('--resize', action='store_true',
                        help='infer: resample images that are not 128 x 128 (depth values kept; results are '
                             'meaningful only for images that follow the convention in README)')
    parser.add_argument('--restart', action='store_true',
                        help="train from scratch, deleting the task's previous checkpoints")
    parser.add_argument('--validate-every', type=positive_int, default=1000, help='validate every N steps')
    parser.add_argument('--plot-every', type=positive_int, default=5000,
                        help='save a results grid every N steps (at a validation step)')
    parser.add_argument('--save-every', type=positive_int, default=1000,
                        help='save the latest checkpoint every N steps')
    parser.add_argument('--summary-every', type=positive_int, default=50,
                        help='write training scalars for TensorBoard every N steps')
    parser.add_argument('--loss', choices=['mse', 'rmse', 'bce'],
                        help='training loss: mean squared error, its root (the original\'s), or binary '
                             'cross-entropy (segment only); default mse for remove, rmse for segment')
    parser.add_argument('--loss-region', choices=['face', 'image'],
                        help='compute the loss over the face only (target > 0; the default for remove) or over the '
                             'whole image (the original\'s; the only one for segment)')
    parser.add_argument('--background-weight', type=non_negative_float, default=None,
                        help='remove, loss over the face: also penalise, with this weight, output above '
                             f'{TASKS["remove"].BACKGROUND_MARGIN_MM:g} mm where neither input nor target has a '
                             'face (the surface the network paints beside the face; training/tasks.py); 0 = the '
                             f'face alone (default: {DEFAULT_BACKGROUND_WEIGHT})')
    parser.add_argument('--bfloat16', action=argparse.BooleanOptionalAction,
                        help='compute the convolutions in bfloat16, about 2.7x faster to train on CPUs with '
                             'AVX-512 BF16 / AMX (default when training: on where the CPU has them; test, infer '
                             'and export compute in float32 unless this is given)')
    parser.add_argument('--flip', action=argparse.BooleanOptionalAction, default=True,
                        help='mirror a random half of each training batch left-right')
    parser.add_argument('--mirror-average', action=argparse.BooleanOptionalAction,
                        help='test, infer, export: average the output with the mirrored output of the mirrored '
                             'input (twice the computation; default: on for remove, off for segment)')
    parser.add_argument('--deadband-mm', type=non_negative_float,
                        help='test, infer, export (remove): shrink the network\'s change of each height of the '
                             'input\'s face by this much (mm), so that changes smaller than it are not made: '
                             'mostly the network\'s ripple on faces it should leave alone '
                             f'(default: {DEFAULT_DEADBAND_MM:g}, chosen on the valid split and the held-out '
                             'family; 0 = off)')
    parser.add_argument('--deadband-relief', type=non_negative_float,
                        help='test, infer, export (remove): on faces the network barely changes (its change '
                             f'inside the face below {TASKS["remove"].NEAR_NEUTRAL_MM:g} mm RMS), widen the deadband '
                             'by up to this share of the input\'s local relief (its 3 x 3 range), so that the '
                             'network does not redraw steep edges the input already has: the jaw above the neck, '
                             f'nostrils, lips (default: {DEFAULT_DEADBAND_RELIEF:g}, chosen on the valid split and '
                             'the held-out family; 0 = off)')
    parser.add_argument('--background', choices=['mask', 'input'], default=None,
                        help='test, infer, export (remove): how the background of an output is decided, in the '
                             'images infer writes, the grids, recognition and test mode\'s whole-image scores '
                             '(inference/background.py): mask = where the mask network (--mask-checkpoint) puts '
                             'the neutral face; input = on and beside the input\'s face, by --threshold-mm '
                             '(default: mask)')
    parser.add_argument('--mask-checkpoint', default=None,
                        help='with --background mask: the mask network, a checkpoint prefix or folder trained with '
                             '--task mask (default: the shipped checkpoints/mask)')
    parser.add_argument('--threshold-mm', type=finite_float, default=None,
                        help='--background input, and the grids of training: beside the input\'s face, outputs '
                             'below this height (mm) count as background (on the input\'s face, below 1 mm) '
                             f'(default: {DEFAULT_THRESHOLD_MM:g})')
    architecture = parser.add_argument_group(
        'architecture', 'default: the checkpoint\'s own when testing or resuming, else '
        + ', '.join(f'{key}={value}' for key, value in ARCHITECTURE_DEFAULTS.items()))
    architecture.add_argument('--kernel-size', type=whole_number(1, MAX_KERNEL_SIZE), help='convolution kernel size')
    architecture.add_argument('--channels', type=whole_number(1, MAX_CHANNELS), help='channels of every convolution')
    architecture.add_argument('--modules', type=positive_int,
                              help='encoder modules (conv stride 2, conv stride 1, max pool); at most 3 for 128 px')
    architecture.add_argument('--skip-links', choices=['none', 'pools', 'all'],
                              help='skip links from encoder to decoder: none, at the max pools (the original), '
                                   'or after every layer')
    architecture.add_argument('--batch-norm', action=argparse.BooleanOptionalAction,
                              help='batch normalisation after every convolution but the last')
    architecture.add_argument('--residual', action=argparse.BooleanOptionalAction,
                              help='predict the correction to the input instead of the whole face (mask: to the '
                                   'input\'s own face mask)')
    architecture.add_argument('--standardize', action=argparse.BooleanOptionalAction,
                              help='per-image standardisation of the input (tf.image.per_image_standardization)')
    args = parser.parse_args(argv)
    return resolve_options(args, parser.error)


@dataclasses.dataclass(frozen=True)
class Options:
    """The command line, resolved once: every default filled in (from the task, the machine); never changed.

    The functions of this file take it; the modules below get the plain values they need as arguments.
    """
    mode: str
    task: str
    task_given: bool          # --task was given: a checkpoint of the other task is then refused without advice
    data: str
    targets: str              # segment only, else None
    max_epochs: int           # either limit may be None: the run stops at the first
    max_steps: int
    generated_subjects: int
    generated_variations: tuple   # faces.variation kinds of the generated identities, in VARIATIONS' order
    plain_subjects: int           # the first generated identities again, unvaried (0 = none)
    family_subjects: int          # the held-out validation family's subjects (0 = none)
    neutral_repeats: int          # each training subject's neutral pair this many times more (0 = once)
    plain_repeats: int            # the face model's own training faces this many times more (0 = once)
    gallery_subjects: int
    model_fit_every: int          # test: the model-fit baseline on every Nth test image (0 = none)
    generated_dir: str
    batch_size: int
    lr: float
    seed: int
    checkpoint_dir: str
    results_dir: str
    checkpoint: str
    input: str
    units: str
    output: str
    resize: bool
    previews: int             # infer: previews of the first N images
    restart: bool
    validate_every: int
    plot_every: int
    save_every: int
    summary_every: int
    loss: str
    loss_region: str
    background_weight: float  # remove, loss over the face: the weight of the hinge on painted background
    bfloat16: bool
    flip: bool
    offset_px: tuple          # test: every test pair moved (rows down, cols right)
    mirror_average: bool      # test, infer, export
    deadband_mm: float        # test, infer, export (remove): the displacement's soft threshold (0 = off)
    deadband_relief: float    # test, infer, export (remove): its share of the local relief when near neutral
    background: str           # test, infer, export (remove): 'mask' or 'input' (inference.background)
    mask_checkpoint: str      # with background 'mask': the mask network's checkpoint
    threshold_mm: float       # background 'input' and training's grids
    # the architecture as given (None: the checkpoint's, else ARCHITECTURE_DEFAULTS; see resolve_architecture)
    kernel_size: int
    channels: int
    modules: int
    skip_links: str
    batch_norm: bool
    residual: bool
    standardize: bool

    def data_source(self):
        return DataSource(self.data, self.targets, self.generated_dir, self.generated_subjects,
                          self.gallery_subjects, self.generated_variations, self.plain_subjects,
                          self.family_subjects, self.neutral_repeats, self.plain_repeats)


def resolve_options(args, error):
    """The parsed arguments checked against each other and completed with the task's defaults, as Options;
    error(message) refuses a combination (it does not return)."""
    if args.modules is not None and IMAGE_SIZE % 4 ** args.modules:
        # every module halves the size twice (stride-2 convolution, max pool)
        error(f"--modules {args.modules} shrinks a {IMAGE_SIZE}-pixel image below one pixel; use at most 3")
    for option, modes in (('input', ('infer', 'prepare')), ('output', ('infer', 'export', 'prepare'))):
        if args.mode in modes and not getattr(args, option):
            error(f"--mode {args.mode} needs --{option}")
    name = args.task or ARCHITECTURE_DEFAULTS['task']
    task = TASKS[name]
    if name != 'remove' and args.mode in ('infer', 'export'):
        error(f"--mode {args.mode} does not fit --task {name} (it trains and tests only)")
    if name == 'segment':
        if args.residual:
            error("--residual does not fit --task segment (its output is a probability, not a correction)")
        if args.generated_subjects:
            error("--generated-subjects does not fit --task segment (its data are photographs)")
        for option in ('generated_variations', 'plain_subjects', 'family_subjects', 'neutral_repeats',
                       'plain_repeats'):
            if getattr(args, option):
                error(f"--{option.replace('_', '-')} does not fit --task segment (its data are photographs)")
    elif args.targets is not None:
        error(f"--targets does not fit --task {name} (it chooses the masks of --task segment)")
    if args.offset_px is not None and args.mode != 'test':
        error(f"--offset-px fits --mode test (here --mode {args.mode})")
    if args.mode == 'train' and args.mirror_average is not None:
        error("--mirror-average does not fit --mode train (training and its validation score the network alone)")
    # where the removal network's output is used (test, infer, export): the deadband changes it there, and the
    # background of what is written is decided there (training's grids decide it by the input)
    removal_output = name == 'remove' and args.mode in ('test', 'infer', 'export')
    for option in ('deadband_mm', 'deadband_relief'):
        if getattr(args, option) is not None and not removal_output:
            error(f"--{option.replace('_', '-')} fits --task remove in test, infer and export (here --task {name}, "
                  f"--mode {args.mode})")
    if args.background is not None and not removal_output:
        error(f"--background fits --task remove in test, infer and export (here --task {name}, --mode {args.mode})")
    background = (args.background or 'mask') if removal_output else 'input'
    if args.mask_checkpoint is not None and background != 'mask':
        error(f"--mask-checkpoint fits --background mask in test, infer and export (here --background {background},"
              f" --task {name}, --mode {args.mode})")
    if args.threshold_mm is not None and background != 'input':
        error("--threshold-mm fits --background input (the mask network decides the background here)")
    for option, value, allowed in (('--loss', args.loss, task.losses),
                                   ('--loss-region', args.loss_region, task.loss_regions)):
        if value is not None and value not in allowed:
            error(f"{option} {value} does not fit --task {name} (choose from {', '.join(allowed)})")
    loss_region = args.loss_region or task.loss_regions[0]
    if args.background_weight is not None and (name != 'remove' or loss_region != 'face'):
        error(f"--background-weight fits --task remove with its loss over the face only (here --task {name}, "
              f"--loss-region {loss_region}: the loss already covers the background)")
    # both lengths are limits: the run stops at the first
    length = {key: default if getattr(args, key) is None else getattr(args, key)
              for key, default in DEFAULT_LENGTH[name].items()}
    depth = name in ('remove', 'mask')  # the tasks of depth faces, which share remove's data
    generated_subjects = args.generated_subjects
    if generated_subjects is None:
        generated_subjects = DEFAULT_GENERATED_SUBJECTS if depth else 0
    variations = DEFAULT_GENERATED_VARIATIONS if args.generated_variations is None else args.generated_variations
    plain_subjects = DEFAULT_PLAIN_SUBJECTS if args.plain_subjects is None else args.plain_subjects
    varied = depth and bool(variations) and generated_subjects > 0
    if args.plain_repeats and not varied:
        error("--plain-repeats weighs the face model's own faces against varied ones, but here every training face "
              "is the face model's own (--generated-variations or --generated-subjects gave none varied)")
    plain_repeats = args.plain_repeats
    if plain_repeats is None:  # the shipped mask network was trained without them, and its recipe stays
        plain_repeats = DEFAULT_PLAIN_REPEATS if name == 'remove' else 0
    family_subjects = args.family_subjects
    if family_subjects is None:
        family_subjects = DEFAULT_FAMILY_SUBJECTS if depth and args.mode == 'train' else 0
    bfloat16 = args.bfloat16
    if bfloat16 is None:   # see --help: training uses it where the CPU computes it fast
        bfloat16 = args.mode == 'train' and cpu_supports_bfloat16()
    checkpoint_dir, results_dir = default_folders(args, name, error)
    check_output_place(args, checkpoint_dir, results_dir, args.data or DEFAULT_DATA[name], error)
    return Options(**dict(
        vars(args), **length, task=name, task_given=args.task is not None,
        # segment: so that options.json says what the network does
        residual=False if name == 'segment' else args.residual,
        targets=(args.targets or lfw_parts.TARGET_FOLDERS[0]) if name == 'segment' else None,
        generated_subjects=generated_subjects, data=args.data or DEFAULT_DATA[name],
        generated_variations=tuple(kind for kind in VARIATIONS if depth and kind in variations),
        plain_subjects=min(plain_subjects, generated_subjects) if depth and variations else 0,
        plain_repeats=plain_repeats if varied else 0,
        family_subjects=family_subjects,
        checkpoint_dir=checkpoint_dir, results_dir=results_dir, loss=args.loss or task.default_loss,
        loss_region=loss_region, bfloat16=bfloat16,
        # the hinge belongs to the face loss alone (a weight given with any other loss was refused above)
        background_weight=(args.background_weight if args.background_weight is not None
                           else DEFAULT_BACKGROUND_WEIGHT if loss_region == 'face' else 0.0),
        mirror_average=depth if args.mirror_average is None else args.mirror_average,
        deadband_mm=(args.deadband_mm if args.deadband_mm is not None
                     else DEFAULT_DEADBAND_MM if removal_output else 0.0),
        deadband_relief=(args.deadband_relief if args.deadband_relief is not None
                         else DEFAULT_DEADBAND_RELIEF if removal_output else 0.0),
        background=background, offset_px=tuple(args.offset_px or (0, 0)),
        mask_checkpoint=(args.mask_checkpoint or os.path.join(SHIPPED_DIR, 'mask')
                         if background == 'mask' else None),
        threshold_mm=DEFAULT_THRESHOLD_MM if args.threshold_mm is None else args.threshold_mm))


def main(argv=None, observer=TrainingObserver()):
    """The command line; `observer` watches a training (see TrainingObserver)."""
    argv = sys.argv[1:] if argv is None else [str(word) for word in argv]
    options = parse_args(argv)
    try:
        if options.mode != 'prepare':  # prepare needs no network: it does not wait for TensorFlow to load
            tf.compat.v1.disable_eager_execution()
        if options.mode == 'train':
            train(options, observer)
        elif options.mode == 'prepare':
            prepare.prepare_files(options.input, options.output, options.units)
        else:
            {'test': test, 'infer': infer, 'export': export}[options.mode](options)
    except (UsageError, CheckpointError, DataError, DepthImageError, FolderError, generated.GenerationError,
            OSError) as error:  # OSError: an unwritable folder, a path under a file, a full disk
        report_error(PROGRAM, error)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Terminated (support.command_line.stop_by_exception)
        note = loop.interrupted_training_note(task_checkpoint_dir(options), argv) if options.mode == 'train' else ''
        return report_stop(PROGRAM, stop, note)
    # After KeyboardInterrupt: naming tf.errors imports TensorFlow, and an import that Ctrl-C broke fails again
    # when retried (with a traceback of its own).
    except tf.errors.OpError as error:  # the same, met by TensorFlow's own file writing (checkpoints, logs)
        report_error(PROGRAM, error_summary(error))
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(exit_status(PROGRAM, main))
