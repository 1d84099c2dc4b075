"""Generated identities beyond the committed data: extra training subjects and a recognition gallery.

The committed data128_128/ (seed 0) is the benchmark protocol; its valid and test splits never change. Quality
comes from many identities, so training adds subjects that make_dataset.py renders from the face model the
repository carries, drawn from another seed, and test mode measures recognition on a gallery of yet another
seed that no training run sees. Both are deterministic (the same numbers give the same files) and cached in
an ignored folder (`generated/` by default): made on first use, reused after.
"""
import os
import subprocess
import sys

from support.paths import REPOSITORY

DEFAULT_FOLDER = os.path.join(REPOSITORY, 'generated')
# Seed 0 drew the committed data128_128; each kind of generated data has its own seed, so their identities are
# independent draws from the face model's identity distribution (and, with probability 1, all distinct).
TRAINING_SEED = 1
GALLERY_SEED = 2
# Random mixtures are the hardest (and most realistic) inputs: training subjects get twice the protocol's six.
TRAINING_MIXTURES = 12
# Gallery subjects get the protocol's expressions and two mixtures; recognition probes a subset of them.
GALLERY_MIXTURES = 2
# The held-out validation family: faces of a kind no training draws from. Its identities are reshaped by warp
# (faces.variation), which no training run uses, and cut, moved, opened and scanned like the varied training
# faces; scored at every validation beside the committed valid split. The protocol's six mixtures each.
FAMILY_SEED = 3
FAMILY_MIXTURES = 6
FAMILY_VARIATIONS = ('outline', 'whole_face_motion', 'mouth_depth', 'scanner_noise', 'warp')


class GenerationError(RuntimeError):
    """make_dataset.py failed (its own one-line error is passed on)."""


def ensure_training_identities(root, subjects, variations=()):
    """The folder of `subjects` generated training subjects (split `train`) with these faces.variation kinds,
    rendering it if not cached."""
    if 'warp' in variations:
        raise GenerationError("warp is held out from training: the validation family is made with it")
    return _ensure(root, 'train', subjects, TRAINING_MIXTURES, TRAINING_SEED, 'generated training identities',
                   variations)


def ensure_validation_family(root, subjects):
    """The folder of the held-out validation family's `subjects` subjects (split `train`), rendering it if not
    cached."""
    return _ensure(root, 'family', subjects, FAMILY_MIXTURES, FAMILY_SEED, 'held-out validation family',
                   FAMILY_VARIATIONS)


def ensure_gallery(root, subjects, only=None):
    """The folder of the recognition gallery's `subjects` subjects (split `train`), rendering it if not cached:
    only the images named by `only` (codes such as 'NE00', 'MX01'; None: all), each as the whole gallery has it.
    A cached whole gallery serves a request for some of its images."""
    whole = _folder(root, 'gallery', subjects, GALLERY_MIXTURES, GALLERY_SEED)
    if only is not None and os.path.exists(os.path.join(whole, 'dataset.json')):
        return whole
    return _ensure(root, 'gallery', subjects, GALLERY_MIXTURES, GALLERY_SEED, 'recognition gallery', only=only)


def _folder(root, kind, subjects, mixtures, seed, variations=(), only=None):
    # The name holds everything that decides the files, so a cached folder is reused only for the same request.
    varied = ''.join(f'_{variation}' for variation in variations)
    chosen = f"_{'-'.join(only)}" if only is not None else ''
    return os.path.join(root, f'{kind}_seed{seed}_{subjects}subjects_{mixtures}mixtures{varied}{chosen}')


def _ensure(root, kind, subjects, mixtures, seed, what, variations=(), only=None):
    folder = _folder(root, kind, subjects, mixtures, seed, variations, only)
    # make_dataset.py moves a finished dataset into place as its last step, so dataset.json marks a complete one.
    if os.path.exists(os.path.join(folder, 'dataset.json')):
        return folder
    images = f", {len(only)} images each" if only is not None else ''
    print(f"rendering the {what} ({subjects} subjects{images}) into {folder}; made once, reused after", flush=True)
    # A separate process: make_dataset.py renders with a process pool, which must not fork TensorFlow. Its
    # progress line goes to our stdout as it comes.
    command = [sys.executable, os.path.join(REPOSITORY, 'make_dataset.py'), '--output', folder, '--seed', str(seed),
               '--train-subjects', str(subjects), '--valid-subjects', '0', '--test-subjects', '0',
               '--mixtures-per-subject', str(mixtures)] + (['--vary', *variations] if variations else [])
    command += ['--only', *only] if only is not None else []
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f'exit status {result.returncode}']
        raise GenerationError(f"rendering the {what} failed: {lines[-1]}")
    return folder
