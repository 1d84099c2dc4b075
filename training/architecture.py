"""The architecture options' bounds and the checks of a saved architecture (options.json, the checkpoint).

options.json is a file anyone can edit: a value of the wrong type or out of range must end in one line naming
the field, not in a traceback while the graph is built, and a value that contradicts the weights must not
give outputs that are silently wrong. The checkpoint's variables (names, shapes) catch what adds a variable
(kernel size, channels, modules, batch norm, residual); what adds none (skip links, standardisation) is caught
by the architecture recorded in the checkpoint itself (ARCHITECTURE_VARIABLE), which training writes with
the weights, or, for the shipped checkpoint made before it existed, by KNOWN_CHECKPOINTS.
"""
import hashlib
import json

from depth.convention import IMAGE_SIZE

# Beyond these the graph needs gigabytes (a k x k x c x c kernel per convolution, three copies for Adam) or
# the kernel is larger than the 64-pixel map of the first convolution: a usage error, not a failed build.
MAX_KERNEL_SIZE = 15
MAX_CHANNELS = 512
MAX_MODULES = 3          # every module halves the size twice; 4 ** 3 = 64 divides 128, 4 ** 4 does not
SKIP_LINKS = ('none', 'pools', 'all')
TASK_NAMES = ('remove', 'segment', 'mask')
FLAGS = ('batch_norm', 'residual', 'standardize')
# The architecture as training saw it, a JSON string variable saved with the weights.
ARCHITECTURE_VARIABLE = 'architecture'

# The shipped segmentation checkpoint predates ARCHITECTURE_VARIABLE (the shipped expression remover records it).
# An .index file holds every tensor's checksum, so its hash names the weights; this is the architecture they were
# trained with (their TRAINING.md).
KNOWN_CHECKPOINTS = {
    '1f96dc9faa8ce8e986a48d4b9fec41e3356570372ed730d34dae1a72e23b6907': {   # checkpoints/segment/best-4000
        'task': 'segment', 'kernel_size': 5, 'channels': 64, 'modules': 3, 'skip_links': 'pools',
        'batch_norm': True, 'residual': False, 'standardize': True},
}


def _whole(low, high):
    # bool is an int in Python: `true` is not a kernel size
    return lambda value: type(value) is int and low <= value <= high, f"a whole number from {low} to {high}"


RULES = {
    'task': (lambda value: value in TASK_NAMES, f"one of {', '.join(TASK_NAMES)}"),
    'kernel_size': _whole(1, MAX_KERNEL_SIZE),
    'channels': _whole(1, MAX_CHANNELS),
    'modules': _whole(1, MAX_MODULES),
    'skip_links': (lambda value: value in SKIP_LINKS, f"one of {', '.join(SKIP_LINKS)}"),
    **{flag: (lambda value: type(value) is bool, "true or false") for flag in FLAGS},
}
assert IMAGE_SIZE % 4 ** MAX_MODULES == 0


def invalid_field(saved):
    """The first problem of an options.json's content as 'FIELD is VALUE, not ...', or None if it is sound."""
    if not isinstance(saved, dict):
        return f"holds {json.dumps(saved)}, not an object"
    for section in ('architecture', 'training'):
        if not isinstance(saved.get(section, {}), dict):
            return f"{section} is {json.dumps(saved[section])}, not an object"
    for key, value in saved.get('architecture', {}).items():
        valid, wanted = RULES.get(key, (lambda _: True, ''))
        if not valid(value):
            return f"architecture.{key} is {json.dumps(value)}, not {wanted}"
    data = saved.get('training', {}).get('data')
    if data is not None and not isinstance(data, str):
        return f"training.data is {json.dumps(data)}, not a folder name"
    return None


def encoded(architecture):
    return json.dumps(architecture, sort_keys=True)


def recorded_architecture(stored_value, index_bytes):
    """The architecture a checkpoint records: its ARCHITECTURE_VARIABLE (bytes, or None when it has none),
    else the shipped checkpoints' known one; None when it records none (then only its variables are checked)."""
    if stored_value is not None:
        return json.loads(stored_value.decode() if isinstance(stored_value, bytes) else stored_value)
    return KNOWN_CHECKPOINTS.get(hashlib.sha256(index_bytes).hexdigest())


def contradiction(architecture, recorded):
    """The first field where `architecture` (options.json's) contradicts the checkpoint's record, or None."""
    for key, value in (recorded or {}).items():
        if key in architecture and architecture[key] != value:
            return key, architecture[key], value
    return None
