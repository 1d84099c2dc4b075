"""Checkpoint bookkeeping: the best and latest savers, fitting checks, restoring, resuming, options.json.

A training's folder holds latest-* checkpoints (everything, for resuming), best-* (the weights that scored best
on validation: what test, infer and export need), their Saver state files and options.json (the architecture
and training options the checkpoints were made with).
"""
import contextlib
import hashlib
import json
import os
import re

from support.quiet_tensorflow import error_summary, tf
from support.safe_files import remove_leftovers, remove_path, write_strict_json
from training.architecture import (ARCHITECTURE_VARIABLE, contradiction, encoded, invalid_field,
                                   recorded_architecture)
from training.curve import HISTORY_FILE

OPTIONS_FILE = 'options.json'
BEST_STATE_FILE = 'best_checkpoint'    # Saver's state file for the best-on-validation checkpoints
LATEST_STATE_FILE = 'checkpoint'       # Saver's default state file, for the latest (resumable) ones


class CheckpointError(ValueError):
    """A checkpoint or options file that cannot be used: reported as one line, exit status 2."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint whose files are missing, truncated or corrupted."""


def read_options(checkpoint_dir):
    path = os.path.join(checkpoint_dir, OPTIONS_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as file:
            saved = json.load(file)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable ({error})")
    problem = invalid_field(saved)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return saved


def write_options(checkpoint_dir, options):
    write_strict_json(os.path.join(checkpoint_dir, OPTIONS_FILE), options)


def checkpoint_prefix(path, state_files=(BEST_STATE_FILE, LATEST_STATE_FILE)):
    """A checkpoint prefix from a prefix or a folder (the folder's best, else its latest); None if none."""
    if os.path.isdir(path):
        for state_file in state_files:
            prefix = tf.train.latest_checkpoint(path, latest_filename=state_file)
            if prefix:
                return prefix
        return None
    return path if os.path.exists(path + '.index') else None


@contextlib.contextmanager
def reading_checkpoint(prefix):
    """TensorFlow's errors on a missing, truncated or corrupted checkpoint file become a DamagedCheckpoint."""
    try:
        yield
    except tf.errors.OpError as error:
        raise DamagedCheckpoint(f"{prefix}: damaged checkpoint, cannot be read "
                                f"({type(error).__name__}: {error_summary(error)})") from None


def restore_checkpoint(saver, session, prefix, variables, architecture):
    """Restore `variables` after checking that the checkpoint fits them and was trained as `architecture`."""
    with reading_checkpoint(prefix):
        stored = check_checkpoint_fits(prefix, variables, architecture)
        if ARCHITECTURE_VARIABLE not in stored:
            # made before checkpoints recorded their architecture: restore the rest, keep this run's record
            saver = tf.compat.v1.train.Saver([variable for variable in variables
                                              if variable.op.name != ARCHITECTURE_VARIABLE])
        saver.restore(session, prefix)


def load_checkpoint_value(prefix, variable):
    """The value of one variable in a checkpoint (e.g. its best validation score)."""
    with reading_checkpoint(prefix):
        return tf.train.load_variable(prefix, variable.op.name)


def check_checkpoint_fits(prefix, variables, architecture):
    """Refuse, in one line, a checkpoint whose variables differ from the graph's (names and shapes, both
    ways) or whose recorded architecture differs from `architecture`; returns {name: shape} of the checkpoint."""
    stored = dict(tf.train.list_variables(prefix))
    _check_recorded_architecture(prefix, architecture, stored)  # first: it names the field, variables cannot
    graph = {variable.op.name: variable.shape.as_list() for variable in variables}
    for name, shape in graph.items():
        if name == ARCHITECTURE_VARIABLE:
            continue
        if name not in stored:
            raise CheckpointError(f"{prefix}: made with a different architecture (it has no variable {name})")
        if list(stored[name]) != shape:
            raise CheckpointError(f"{prefix}: made with a different architecture ({name} is {stored[name]} "
                                  f"there, {shape} here)")
    extra = sorted(name for name in stored if name not in graph and not _training_only(name))
    if extra:
        # e.g. residual_gate: options.json says --no-residual, the weights were trained with it
        raise CheckpointError(f"{prefix}: made with a different architecture (its variable {extra[0]} is not "
                              "in this network)")
    return stored


def _training_only(name):
    """Variables a training checkpoint holds beyond the network: the optimiser's, the clock, the record."""
    return 'Adam' in name or name in ('beta1_power', 'beta2_power', 'training_seconds', ARCHITECTURE_VARIABLE)


def _check_recorded_architecture(prefix, architecture, stored):
    """Options that add no variable (skip links, standardisation) checked against the checkpoint's record."""
    value = tf.train.load_variable(prefix, ARCHITECTURE_VARIABLE) if ARCHITECTURE_VARIABLE in stored else None
    with open(prefix + '.index', 'rb') as file:
        recorded = recorded_architecture(value, file.read())
    mismatch = contradiction(architecture, recorded)
    if mismatch:
        key, given, trained = mismatch
        raise CheckpointError(f"{prefix}: trained with {key} {json.dumps(trained)}, not {json.dumps(given)} "
                              f"(see {os.path.join(os.path.dirname(prefix), OPTIONS_FILE)} and the options given)")


class Checkpoints:
    """The latest checkpoint (everything, for resuming) and the best on validation (weights only).

    tf.compat.v1.train.Saver writes the new files first and only then switches its state file to them
    (atomically) and deletes the old ones, so a process killed mid-save leaves the previous checkpoint usable.
    """

    def __init__(self, directory, network):
        self.directory = directory
        self.architecture = network.architecture
        # The architecture saved with the weights: options.json may be edited, this cannot be without TF.
        record = tf.compat.v1.Variable(encoded(network.architecture), trainable=False, name=ARCHITECTURE_VARIABLE)
        # Relative paths in the state files keep a checkpoint folder usable after it is moved or cloned.
        self.latest = tf.compat.v1.train.Saver(max_to_keep=2, save_relative_paths=True)
        self.best = tf.compat.v1.train.Saver(network.model_variables + [record], max_to_keep=1,
                                             save_relative_paths=True)

    def latest_prefix(self):
        return tf.train.latest_checkpoint(self.directory, latest_filename=LATEST_STATE_FILE)

    def best_prefix(self):
        return tf.train.latest_checkpoint(self.directory, latest_filename=BEST_STATE_FILE)

    def save_latest(self, session, step):
        prefix = self._save(self.latest, session, 'latest', step, LATEST_STATE_FILE)
        self._remove_unkept_latest()
        return prefix

    def save_best(self, session, step):
        return self._save(self.best, session, 'best', step, BEST_STATE_FILE)

    def adopt(self, saver, prefix):
        """Let `saver` count a checkpoint of an earlier run as its own, so that it too is rotated out."""
        saver.recover_last_checkpoints([prefix])

    def _save(self, saver, session, name, step, state_file):
        try:
            prefix = saver.save(session, os.path.join(self.directory, name), step, latest_filename=state_file,
                                write_meta_graph=False)
        except BaseException:
            remove_leftovers(self.directory, held=True)  # a full disk leaves a large half-written .tempstate
            raise
        return prefix

    def _remove_unkept_latest(self):
        """Remove the latest-* checkpoints the saver does not keep: those of earlier, interrupted runs (the
        saver rotates only its own), so that resuming many times does not fill the disk. The best-* are
        left alone: a best this run did not adopt (the shipped model) is not this run's to remove."""
        kept = {os.path.basename(prefix) for prefix in self.latest.last_checkpoints}
        for file_name in os.listdir(self.directory):
            match = CHECKPOINT_FILE.fullmatch(file_name)
            if match and match['name'] == 'latest' and f"latest-{match['step']}" not in kept:
                remove_path(os.path.join(self.directory, file_name))


CHECKPOINT_FILE = re.compile(r'(?P<name>latest|best)-(?P<step>\d+)\.(index|data-\d+-of-\d+|meta)')


def saved_steps(directory, name):
    """The steps of the folder's `name`-* checkpoints by their files, newest first (a damaged one included)."""
    steps = {int(match['step']) for match in map(CHECKPOINT_FILE.fullmatch, os.listdir(directory))
             if match and match['name'] == name}
    return sorted(steps, reverse=True)


def validation_digest(valid_set, family_set):
    """What a run's scores are measured on: a hash of the valid split's images (and the held-out family's)."""
    digest = hashlib.sha256()
    for dataset in (valid_set, family_set):
        if dataset is not None:
            digest.update(dataset.inputs.tobytes())
            digest.update(dataset.targets.tobytes())
    return digest.hexdigest()[:16]


def prepare_folder(directory, restart, training):
    """Before a run writes into `directory`: --restart forgets the previous run; otherwise a run there whose
    scores were measured on other data is refused, as its best score could not be compared with this run's."""
    if restart:
        remove_checkpoints(directory)
        return
    saved = read_options(directory).get('training')
    if not saved or not (saved_steps(directory, 'best') or saved_steps(directory, 'latest')):
        return
    # Runs recorded before the digest existed are compared by what their options name.
    keys = ('validation', 'family_subjects') if 'validation' in saved else ('data', 'targets', 'family_subjects')
    for key in keys:
        theirs, ours = saved.get(key), training.get(key)
        if key == 'family_subjects':
            theirs, ours = theirs or 0, ours or 0  # recorded before the family existed: none
        if theirs != ours:
            raise CheckpointError(f"{directory} holds a run validated on other data ({key} {json.dumps(theirs)} "
                                  f"there, {json.dumps(ours)} here), whose scores cannot be compared with this "
                                  "run's: give another --checkpoint-dir, or --restart to delete that run")


def remove_checkpoints(directory):
    """--restart: forget the task's previous run (checkpoints and options), as the user asked."""
    for name in os.listdir(directory):
        if name.startswith(('latest-', 'best-')) or name in (BEST_STATE_FILE, LATEST_STATE_FILE, OPTIONS_FILE,
                                                               HISTORY_FILE):
            os.remove(os.path.join(directory, name))


def resume_or_start(session, network, checkpoints, say):
    """Restore the newest readable latest-* checkpoint; without one, keep the score of a best-* found there."""
    best = checkpoints.best_prefix()
    if restore_newest_readable_latest(session, checkpoints, say):
        if best:
            # This run continues the one that saved it: rotate it out when a better one is saved. A best
            # without a latest (the shipped model) is never removed by training.
            checkpoints.adopt(checkpoints.best, best)
    elif best:
        # A best model without a latest one (e.g. the shipped model): start afresh, but keep the best
        # score it set, so this run replaces it only by doing better on validation.
        with reading_checkpoint(best):
            check_checkpoint_fits(best, network.model_variables, network.architecture)
        score = load_checkpoint_value(best, network.best_valid_score)
        session.run(network.best_valid_score.assign(score))
        say(f"{best} ({network.task.format_score(score)}) is kept unless this run does better")


def restore_newest_readable_latest(session, checkpoints, say):
    """Resume from the newest latest-* checkpoint that can be read, saying which ones could not; False if none.

    The files are searched, not only the state file: a state file naming a checkpoint whose .index is
    missing would otherwise silently start the run again at step 0.
    """
    directory = checkpoints.directory
    steps = saved_steps(directory, 'latest')
    for step in steps:
        prefix = os.path.join(directory, f'latest-{step}')
        try:
            restore_checkpoint(checkpoints.latest, session, prefix, tf.compat.v1.global_variables(),
                               checkpoints.architecture)
        except DamagedCheckpoint as error:
            say(f"{error}; trying the one before")
            continue
        checkpoints.adopt(checkpoints.latest, prefix)
        say(f"resuming from {prefix} (use --restart to start over)")
        return True
    if steps:
        raise CheckpointError(f"{directory}: none of its {len(steps)} latest-* checkpoints can be read (see "
                              "above); --restart starts over")
    return False
