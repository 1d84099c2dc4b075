"""What every command line of the repository shares: its argument parser, option types and one-line errors.

A bad option, a missing file, an unusable folder: each is reported as the single line "PROGRAM: error: ..."
on stderr with exit status 2, never as a usage block or a traceback. No TensorFlow here: --help and the
programs that need no network do not wait for it.
"""
import argparse
import math
import signal
import sys

PROGRAM = 'convworking.py'    # the main program, whose name starts every line it and its modules print
# Step counts, epochs and seeds beyond this overflow TensorFlow's 32-bit arithmetic (or numpy's seeds).
LARGEST_COUNT = 2 ** 31 - 1


class UsageError(ValueError):
    """A problem the user can fix (an option, a file, a folder): reported as one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler's stop), raised where Ctrl-C raises KeyboardInterrupt, so that a run it
    stops ends as one Ctrl-C stops: files whole, a note of what is kept, exit status 143 (128 + SIGTERM)."""


def stop_on_sigterm():
    """Let SIGTERM stop the program as Ctrl-C does (see Terminated); Python's default would end it silently."""
    def terminate(signal_number, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, terminate)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad option gets one line (no usage block), in the programs' error format."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default, unless it has none or its help already says it; keeps the examples' lines."""

    def _get_help_string(self, action):
        # `is`, not `in`: a default of 0 equals False, and --seed's 0 is worth showing
        if any(action.default is none for none in (None, False, argparse.SUPPRESS)) or 'default' in action.help:
            return action.help
        return action.help + ' (default: %(default)s)'


def error_line(error):
    """An exception as the one line that follows "PROGRAM: error: " (an OSError as its file and its reason)."""
    if isinstance(error, OSError):
        text = (f"{error.filename}: " if error.filename else '') + str(error.strerror or error)
    else:
        text = str(error) or type(error).__name__
    return ' '.join(text.split('\n'))


def report_error(program, error):
    """Print the one-line error of `program` on stderr; `error` is an exception or a message."""
    print(f"{program}: error: {error_line(error) if isinstance(error, BaseException) else error}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- option types
# argparse names the type in "invalid <name> value: ..." when it raises ValueError, hence the __name__s.

def whole_number(low, high=LARGEST_COUNT):
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text):
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text}")
        return value
    parse.__name__ = f'whole number from {low}'
    return parse


positive_int = whole_number(1)


def finite_number(low=-math.inf, low_allowed=True):
    """An argparse type: a finite number, at least `low` (above it if not low_allowed)."""
    wanted = ('a finite number' if low == -math.inf else f'a finite number >= {low:g}' if low_allowed else
              'a positive number' if low == 0 else f'a finite number > {low:g}')

    def parse(text):
        value = float(text)
        if not (math.isfinite(value) and (value >= low if low_allowed else value > low)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value
    parse.__name__ = wanted.removeprefix('a ')
    return parse


finite_float = finite_number()
positive_float = finite_number(0, low_allowed=False)
non_negative_float = finite_number(0)


def say(text):
    """A line of what the program is doing, shown at once (also when stdout is a file)."""
    print(f"{PROGRAM}: {text}", flush=True)


# ------------------------------------------------------------------------------ places checked before the work

def check_output_file(path, option, overwrite=True):
    """Refuse (UsageError) a file the program could not write at the end of its work: checked before it,
    so that minutes of measuring are not lost to a typo. An existing file is refused unless `overwrite`."""
    import os
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder, not a file")
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"{option} {path} exists; give --overwrite to replace it")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: its folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: its folder {folder} is not writable")


def check_existing(path, option, what):
    """Refuse (UsageError) an input that does not exist; `what` names it ('folder', 'checkpoint')."""
    import os
    if not (os.path.exists(path) or (what == 'checkpoint' and os.path.exists(f'{path}.index'))):
        raise UsageError(f"{option} {path}: no such {what}")


def examples_text(examples, indent='  '):
    """(comment, command) examples as --help shows them: each comment line as '# ...' above its command."""
    lines = []
    for comment, command in examples:
        lines += [f'{indent}# {line}' for line in (comment or '').splitlines()] + [indent + command]
    return 'examples:\n' + '\n'.join(lines) + '\n'
