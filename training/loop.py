"""The training loop: batches, steps, periodic validation with the best and latest checkpoints, the grids,
TensorBoard summaries, the validation history and what Ctrl-C keeps.

The network comes from the caller (convworking.py builds it): this module knows how to train one, not what it is.
"""
import os
import shlex
import time

import numpy as np

from evaluation.plotting import grid_examples, save_grid
from inference.background import Background
from support.command_line import PROGRAM, UsageError, check_room, say
from support.paths import recorded_path
from support.progress import ProgressLine
from support.quiet_tensorflow import tensorflow_loaded, tf
from support.safe_files import locked_folder, remove_leftovers
from training.checkpoints import (LATEST_STATE_FILE, Checkpoints, checkpoint_prefix, prepare_folder,
                                  resume_or_start, validation_digest, write_options)
from training.curve import plot_training_curve, read_history, write_history
from training.tasks import TASKS

# Batches whose statistics refresh the batch-norm averages before each validation (0.9 ** 30 = 4 % of the
# old averages remain).
CALIBRATION_BATCHES = 30


def scalar_summary(tag, value):
    return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)])


def image_summary(tag, png_path):
    with open(png_path, 'rb') as file:
        image = tf.compat.v1.Summary.Image(encoded_image_string=file.read())
    return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, image=image)])


class TrainingObserver:
    """A public view of the training loop, for callers that measure it (bench.py); this one watches nothing.

    `step_done` follows every training step's progress update. The periodic work (batch-norm calibration,
    validation, its grid, the latest checkpoint) runs through `periodic(name, work)`, which must call `work()`
    and return its result; an observer may time it, or run it more than once.
    """

    def step_done(self, step):
        pass

    def periodic(self, name, work):
        return work()


def train(options, architecture, directory, build_network, observer=TrainingObserver()):
    """Train the network of `architecture` into the checkpoint folder `directory`, as `options` (the command
    line's Options) say; build_network(max_steps) builds it with its training operations."""
    task = TASKS[architecture['task']]
    for folder, option in ((directory, '--checkpoint-dir'), (options.results_dir, '--results-dir')):
        check_room(folder, option)
    train_set, valid_set, family_set = task.load_for_training(options.data_source())
    steps_per_epoch = train_set.steps_per_epoch(options.batch_size)
    max_steps = min(options.max_steps or np.inf, (options.max_epochs or np.inf) * steps_per_epoch)

    tf.compat.v1.reset_default_graph()
    tf.compat.v1.set_random_seed(options.seed)
    network = build_network(max_steps)
    clock = TrainingClock()
    checkpoints = Checkpoints(directory, network)
    os.makedirs(options.results_dir, exist_ok=True)
    writer = tf.compat.v1.summary.FileWriter(os.path.join(options.results_dir, 'logs'))

    with locked_folder(directory, '--checkpoint-dir'), tf.compat.v1.Session() as session:
        remove_leftovers(directory, say, held=True)
        remove_leftovers(options.results_dir, say)
        recorded = dict(training_options(options), validation=validation_digest(valid_set, family_set))
        prepare_folder(directory, options.restart, recorded)
        session.run(tf.compat.v1.global_variables_initializer())
        resume_or_start(session, network, checkpoints, say)
        write_options(directory, {'architecture': architecture, 'training': recorded})
        step = session.run(network.global_step)
        clock.start(session)
        history = read_history(directory, up_to_step=step)
        family = f" (+ {len(family_set)} of the held-out family)" if family_set is not None else ""
        print(f"{PROGRAM}: {network.describe()}; {len(train_set)} training and {len(valid_set)} "
              f"validation pairs{family}; steps {step} -> {max_steps} ({steps_per_epoch} per epoch)")
        examples = grid_examples(valid_set)
        images_per_step = train_set.images_per_step(options.batch_size)  # the speed shown counts real images
        progress = ProgressLine(max_steps, first=step, label='step ', per_count=images_per_step)
        smoothed_score = None
        started, step_start, last_good = time.time(), step, checkpoints.latest_prefix()
        while step < max_steps:
            inputs, targets, epoch = train_set.training_batch(step, options.batch_size, options.seed, options.flip)
            _, loss, score, summary = session.run(
                [network.train_op, network.loss, network.training_score, network.summaries],
                {network.inputs: inputs, network.targets: targets, network.is_training: True})
            step += 1  # train_op advanced the global step by one (fetching it in the same run is unordered)
            if not np.isfinite(loss):
                raise UsageError(f"the loss became {loss} at step {step}; stopped without saving. The last good "
                                 f"checkpoint is {last_good or 'none (none was saved yet)'}; try a lower --lr")
            # An exponential average shows the trend; single batches are noisy.
            smoothed_score = score if smoothed_score is None else 0.95 * smoothed_score + 0.05 * score
            progress.update(step, f'epoch {epoch + 1}  {task.format_training_score(smoothed_score)}')
            observer.step_done(step)
            if step % options.summary_every == 0:
                writer.add_summary(summary, step)
            if step % options.validate_every == 0 or step == max_steps:
                observer.periodic('calibrate_batch_norm', lambda: network.calibrate_batch_norm(session, (
                    train_set.training_batch(step + i, options.batch_size, options.seed, options.flip)[0]
                    for i in range(CALIBRATION_BATCHES))))
                scores = observer.periodic('validate', lambda: validate(
                    options, session, network, checkpoints, valid_set, family_set, examples, writer, step,
                    progress, observer, plot=step % options.plot_every == 0 or step == max_steps))
                history.append({'step': int(step), 'minutes': round(clock.seconds() / 60, 3), **scores})
                record_training_curve(options, directory, history, task)
            if step % options.save_every == 0 or step == max_steps:
                clock.store(session)
                last_good = observer.periodic('save_latest', lambda: checkpoints.save_latest(session, step))
        writer.close()
        elapsed = time.time() - started
        best = session.run(network.best_valid_score)
        done = (f"trained steps {step_start}..{step} in {elapsed / 60:.1f} min "
                f"({(step - step_start) * images_per_step / max(elapsed, 1e-9):.1f} img/s)" if step > step_start
                else f"already at its last step ({step}): nothing to train (a larger --max-steps trains on, "
                     "--restart starts over)")
        best = (f"selection score {best:.3f} (the mean of the valid split's and the held-out family's scores, "
                f"{task.score_name})" if family_set is not None else task.format_score(best))
        print(f"{PROGRAM}: {done}; best {best}, saved as {checkpoints.best_prefix()}")


def training_options(options):
    keys = ('data', 'targets', 'generated_subjects', 'generated_variations', 'plain_subjects', 'family_subjects',
            'neutral_repeats', 'plain_repeats', 'max_epochs', 'max_steps', 'batch_size', 'lr', 'seed', 'loss',
            'loss_region', 'background_weight', 'flip', 'bfloat16')
    recorded = {key: getattr(options, key) for key in keys}
    recorded['data'] = recorded_path(options.data)
    return recorded


def validate(options, session, network, checkpoints, valid_set, family_set, examples, writer, step, progress,
             observer, plot):
    """Score the valid split (and the held-out family, when there is one) and keep the best checkpoint by the
    selection score: the valid score alone, or with a family the mean of the two, so that the model chosen is
    the one that generalises best, not the one that fits the face model's own faces best. Returns the history
    entry's scores."""
    task = network.task
    outputs = network.predict(session, valid_set.batches(options.batch_size))
    scores = {'score': task.valid_score(outputs, valid_set.targets)}
    writer.add_summary(scalar_summary(f'valid/{task.score_name}', scores['score']), step)
    said = task.format_score(scores['score'])
    if family_set is not None:
        family_outputs = network.predict(session, family_set.batches(options.batch_size))
        scores['family_score'] = task.valid_score(family_outputs, family_set.targets)
        scores['selection_score'] = (scores['score'] + scores['family_score']) / 2
        writer.add_summary(scalar_summary(f'valid/family {task.score_name}', scores['family_score']), step)
        said += f", held-out family {scores['family_score']:.3f}, selection {scores['selection_score']:.3f}"
    selection = scores.get('selection_score', scores['score'])
    improved = selection < session.run(network.best_valid_score)
    if improved:
        session.run(network.best_valid_score.assign(selection))
        checkpoints.save_best(session, step)
    progress.message(f"step {step}: {said}{' (best so far, saved)' if improved else ''}")
    if plot:
        path = os.path.join(options.results_dir, f'step_{step:06d}.png')
        title = f'valid split, step {step}, {task.format_score(scores["score"])}'
        # Training does not load the mask network: its grids decide the background by the input
        observer.periodic('save_grid', lambda: save_grid(path, task, valid_set, outputs, examples,
                                                         Background(options.threshold_mm), title))
        writer.add_summary(image_summary('valid/grid', path), step)
    return {key: float(value) for key, value in scores.items()}


def record_training_curve(options, directory, history, task):
    """Keep the validation history beside the checkpoints and redraw results/training_curve.png."""
    write_history(directory, history, task.score_name)
    plot_training_curve(history, os.path.join(options.results_dir, 'training_curve.png'), task.score_name,
                        f"{task.name}: {task.score_name} during training ({recorded_path(directory)})")


class TrainingClock:
    """Training wall time, kept in the checkpoints so that a resumed run's curve continues where it stopped."""

    def __init__(self):
        self.variable = tf.compat.v1.get_variable('training_seconds', [], tf.float64, trainable=False,
                                                  initializer=tf.zeros_initializer())
        self.value = tf.compat.v1.placeholder(tf.float64, [])
        self.assign = self.variable.assign(self.value)

    def start(self, session):
        self.before, self.started = session.run(self.variable), time.time()

    def seconds(self):
        return self.before + time.time() - self.started

    def store(self, session):
        session.run(self.assign, {self.value: self.seconds()})


def interrupted_training_note(directory, argv):
    """What Ctrl-C kept and lost, and the command that carries on (the same one, without --restart).
    The latest checkpoint is read from its folder: the Saver switches its state file only once a save is whole."""
    rerun = shlex.join(['python', PROGRAM] + [word for word in argv if word != '--restart'])
    if not tensorflow_loaded():   # stopped while TensorFlow loaded: nothing was trained or written yet
        return f" before training started; {directory} is as it was. Start again with: {rerun}"
    kept = checkpoint_prefix(directory, (LATEST_STATE_FILE,))
    if not kept:
        return f" before the first checkpoint; nothing is kept. Start again with: {rerun}"
    return (f"; kept the checkpoint of step {kept.rsplit('-', 1)[1]} ({kept}), the steps after it are lost. "
            f"Resume with: {rerun}")
