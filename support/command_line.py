"""What every command line of the repository shares: its argument parser, option types and one-line errors.

A bad option, a missing file, an unusable folder: each is reported as the single line "PROGRAM: error: ..."
on stderr with exit status 2, never as a usage block or a traceback. No TensorFlow here: --help and the
programs that need no network do not wait for it.
"""
import argparse
import math
import os
import shutil
import signal
import sys
import threading

PROGRAM = 'convworking.py'    # the main program, whose name starts every line it and its modules print
# Step counts, epochs and seeds beyond this overflow TensorFlow's 32-bit arithmetic (or numpy's seeds).
LARGEST_COUNT = 2 ** 31 - 1


class UsageError(ValueError):
    """A problem the user can fix (an option, a file, a folder): reported as one line, exit status 2."""


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


def display_name(path):
    """A file name or path as the program's lines and pictures show it: printable text on one line whatever its
    bytes, so that no name splits a line, stops a print or breaks a figure: a byte that is not UTF-8 as \\xff,
    a newline or another control character as a Python string writes it (\\n, \\x1b)."""
    text = os.fsdecode(path)
    return text if text.isprintable() else ''.join(map(_printable, text))


def _printable(character):
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode, kept as a surrogate (PEP 383)
        return f'\\x{code - 0xDC00:02x}'
    return character if character.isprintable() else repr(character)[1:-1]


def error_line(error):
    """An exception as the one line that follows "PROGRAM: error: " (an OSError as its file and its reason)."""
    if isinstance(error, OSError):
        text = (f"{display_name(error.filename)}: " if error.filename else '') + str(error.strerror or error)
    else:
        text = str(error) or type(error).__name__
    return ' '.join(text.split('\n'))


def report_error(program, error):
    """Print the one-line error of `program` on stderr; `error` is an exception or a message."""
    print(f"{program}: error: {error_line(error) if isinstance(error, BaseException) else error}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- option types

def whole_number(low, high=LARGEST_COUNT):
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text):
        value = _parsed(int, text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text}")
        return value
    return parse


positive_int = whole_number(1)


def finite_number(low=-math.inf, low_allowed=True):
    """An argparse type: a finite number, at least `low` (above it if not low_allowed)."""
    wanted = ('a finite number' if low == -math.inf else f'a finite number >= {low:g}' if low_allowed else
              'a positive number' if low == 0 else f'a finite number > {low:g}')

    def parse(text):
        value = _parsed(float, text)
        if value is None or not (math.isfinite(value) and (value >= low if low_allowed else value > low)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value
    return parse


def _parsed(number_type, text):
    """`text` as an int or float, or None if it is not one: a word and a number out of range get the same line."""
    try:
        return number_type(text)
    except ValueError:
        return None


finite_float = finite_number()
positive_float = finite_number(0, low_allowed=False)
non_negative_float = finite_number(0)


def say(text):
    """A line of what the program is doing, shown at once (also when stdout is a file)."""
    print(f"{PROGRAM}: {text}", flush=True)


# ------------------------------------------------------------------------------------------ Ctrl-C and SIGTERM

class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler's stop), raised where Ctrl-C raises KeyboardInterrupt, so that a run it
    stops ends as one Ctrl-C stops: files whole, a note of what is kept, exit status 143 (128 + SIGTERM)."""


def stop_on_sigterm():
    """Let SIGTERM stop the program as Ctrl-C does (see Terminated); Python's default would end it silently.
    Worker processes forked from it (multiprocessing pools, which end their workers with SIGTERM) keep the
    default: they have nothing to say."""
    program = os.getpid()

    def terminate(signal_number, frame):
        if os.getpid() != program:  # forked from another thread than the main one (see below)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise Terminated()
    signal.signal(signal.SIGTERM, terminate)
    # A Python handler runs only between bytecodes: a worker blocked in C (a lock a fork left held) would never
    # end, and the pool's terminate() would wait for it forever. So the child gets the default back at once.
    os.register_at_fork(after_in_child=_default_sigterm)


def _default_sigterm():
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# 128 + the signal's number, as shells report a program it ended
STOP_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
_error_output = None   # file descriptor 2 as the program started (see stop_at_once_while_starting)


def stop_at_once_while_starting():
    """Until the program's work begins (stop_by_exception), Ctrl-C or SIGTERM end it at once, in one line, with
    exit status 130 or 143. Call it before the program's imports: they take seconds (TensorFlow's), there is
    nothing to keep yet, and Python would print a traceback of whichever import was running."""
    global _error_output
    _error_output = os.dup(2)  # quiet_stderr sends descriptor 2 to /dev/null while TensorFlow is imported
    for number in STOP_STATUS:
        # an ignored Ctrl-C (a background job of a shell without job control) stays ignored
        if signal.getsignal(number) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(number, _stop_at_once)


def _stop_at_once(number, frame):
    os.write(_error_output, f"\n{stop_line(os.path.basename(sys.argv[0]), number)}\n".encode())
    os._exit(STOP_STATUS[number])


def stop_by_exception():
    """From here on Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated, so that the program ends as its
    work allows (files whole, what is kept said). Only after stop_at_once_while_starting: the handlers of other
    callers of a main() (a test runner's) stay as they are."""
    if signal.getsignal(signal.SIGINT) is _stop_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is _stop_at_once:
        stop_on_sigterm()


def leave_ctrl_c_to_the_parent():
    """For a worker process (a pool's initializer): a terminal's Ctrl-C reaches every process of its group, and
    the parent stops the pool and says so in one line, which the workers' tracebacks would bury."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_line(program, number):
    return f"{program}: {'terminated' if number == signal.SIGTERM else 'interrupted'}"


def report_stop(program, stop, note=''):
    """Say on stderr that Ctrl-C (KeyboardInterrupt) or SIGTERM (Terminated) stopped `program`, with `note`
    (what is kept); returns the exit status."""
    number = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    print(f"\n{stop_line(program, number)}{note}", file=sys.stderr)
    return STOP_STATUS[number]


def exit_status(program, main):
    """main()'s exit status; Ctrl-C and SIGTERM end it as report_stop says (main may catch them itself first,
    to say what it keeps). For the `if __name__ == '__main__'` of a command."""
    stop_by_exception()
    try:
        return main()
    except KeyboardInterrupt as stop:
        return report_stop(program, stop)


# ------------------------------------------------------------------------------ places checked before the work

def check_output_file(path, option, overwrite=True):
    """Refuse (UsageError) a file the program could not write at the end of its work: checked before it,
    so that minutes of measuring are not lost to a typo. An existing file is refused unless `overwrite`."""
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
    if not (os.path.exists(path) or (what == 'checkpoint' and os.path.exists(f'{path}.index'))):
        raise UsageError(f"{option} {path}: no such {what}")


# A folder's disk with less free space than this is full: a results grid or a report picture (0.2-1 MB) would
# not fit.
MIN_FREE_BYTES = 2 ** 20


def check_room(folder, option):
    """Refuse (UsageError) a folder on a full disk before the work, rather than lose the work to the first file
    written there (a path under a file is left to the writing, which names it)."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free if os.path.isdir(existing) else MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise UsageError(f"{option} {display_name(folder)}: its disk is full ({free // 1024} KB free)")


def examples_text(examples, indent='  '):
    """(comment, command) examples as --help shows them: each comment line as '# ...' above its command."""
    lines = []
    for comment, command in examples:
        lines += [f'{indent}# {line}' for line in (comment or '').splitlines()] + [indent + command]
    return 'examples:\n' + '\n'.join(lines) + '\n'
