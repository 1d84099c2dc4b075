"""Writing files so that nothing is lost or left half-written, and holding a folder against a second run.

* atomic_write: every file is written under a temporary name in its own folder and renamed over its final
  name only when complete, so a full disk or a killed run never leaves a truncated file under a real name
  (a truncated frozen_graph.pb, for instance, would then block a rerun as "already exists").
* strict_json: JSON as the standard defines it (no NaN or Infinity, which most readers reject).
* locked_folder: a run holds the folder it writes with fcntl.flock. The kernel releases the lock when the
  process dies, however it dies, so a killed run never leaves a folder locked.
* remove_leftovers: what a run killed mid-write left (temporaries whose process has ended) is removed by the
  next run on that folder, which says so.
* open_regular_file: reading only regular files (a FIFO named like an image would block a read forever).
* quiet_stderr: hides what C libraries (libpng, TensorFlow's C++ core) print straight to file descriptor 2,
  which would otherwise surround the one-line errors this program promises.
"""
import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import stat

from support.command_line import display_name

LOCK_FILE = '.lock'
TEMPORARY_MARK = '.partial-'
# TensorFlow's savers write checkpoint files under names holding this, then rename them.
TENSORFLOW_TEMPORARY_MARK = '.tempstate'
NULL_NOTE = 'null: not computable (no face pixels where it would be measured)'


class FolderError(ValueError):
    """A folder another run holds, or an output path that is not a folder (the message names it)."""


def temporary_name(path):
    """`.NAME.partial-PID` beside `path` (a folder given with a trailing slash included)."""
    folder, name = os.path.split(os.path.normpath(os.fspath(path)))
    return os.path.join(folder, f'.{name}{TEMPORARY_MARK}{os.getpid()}')


# temporary_name's names, and only those (a process id has at most 7 digits on Linux): nothing else is ever
# taken for a leftover
TEMPORARY_NAME = re.compile(r'\.(?P<name>.+)' + re.escape(TEMPORARY_MARK) + r'(?P<pid>\d{1,7})', re.DOTALL)


def remove_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.remove(path)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write `path` (a file or a folder) at; it becomes `path` only on success."""
    temporary = temporary_name(path)
    remove_path(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        remove_path(temporary)
        raise OSError(error.errno, error.strerror or str(error), name_meant(error.filename, temporary, path)) from None
    except BaseException:
        remove_path(temporary)
        raise


def name_meant(filename, temporary, path):
    """The file an error of atomic_path names, as the user knows it: `path` for the temporary (or no name at
    all: writers given a file object, matplotlib and json, raise without one), `path`/... for a file inside a
    temporary folder."""
    filename = temporary if filename is None else os.fsdecode(filename)
    if filename == temporary:
        return os.fspath(path)
    if filename.startswith(temporary + os.sep):
        return os.path.join(path, filename[len(temporary + os.sep):])
    return filename


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """open(path, mode) for writing, but the file appears under `path` only once complete."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())


def finite_or_none(data):
    """`data` with every NaN or infinite float replaced by None; returns (data, whether any was replaced)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None, True
    if isinstance(data, dict):
        pairs = [(key, finite_or_none(value)) for key, value in data.items()]
        return {key: value for key, (value, _) in pairs}, any(replaced for _, (_, replaced) in pairs)
    if isinstance(data, (list, tuple)):
        items = [finite_or_none(value) for value in data]
        return [value for value, _ in items], any(replaced for _, replaced in items)
    return data, False


def write_strict_json(path, data):
    """Write `data` as standard JSON, atomically; a dict with values not computable gets a note saying why."""
    data, replaced = finite_or_none(data)
    if replaced and isinstance(data, dict):
        data = dict(data, null_values=NULL_NOTE)
    with atomic_write(path, 'w') as file:
        json.dump(data, file, indent=2, allow_nan=False)
        file.write('\n')


def process_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def leftovers(folder, of=None, held=False):
    """The names in `folder` that interrupted writes left: our temporaries (temporary_name's; with `of`, only
    those of that name) whose process has ended; in a folder this run holds (`held`, no other run writes
    there), every one of them and TensorFlow's savers' (*.tempstate*) too. A temporary of a running process
    is being written: it is left alone."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = TEMPORARY_NAME.fullmatch(name)
        if match and (of is None or match['name'] == of) and (held or not process_running(int(match['pid']))):
            found.append(name)
        elif held and TENSORFLOW_TEMPORARY_MARK in name:
            found.append(name)
    return found


def remove_leftovers(folder, say=None, of=None, held=False):
    """Remove leftovers(folder, of, held) and, with say(text), say in one line what was removed."""
    names = leftovers(folder, of, held)
    for name in names:
        remove_path(os.path.join(folder, name))
    if names and say:
        more = f' and {len(names) - 3} more' if len(names) > 3 else ''
        say(f"removed what an interrupted run left in {display_name(folder)}: "
            f"{', '.join(display_name(name) for name in names[:3])}{more}")
    return names


def open_regular_file(path):
    """open(path, 'rb'), for a regular file only: a FIFO, a device or a folder named like an image is refused
    (OSError naming it) instead of blocking the read forever. Opened without blocking to look first, so
    that opening a FIFO does not wait for a writer either."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, 'not a regular file', os.fspath(path))
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, 'rb')
    except BaseException:
        os.close(descriptor)
        raise


def _lock(path):
    """Lock the file `path` (created if needed); returns its descriptor, or None if another process holds it."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The holder before us removes the lock file as it finishes: if ours was removed meanwhile,
        # we locked a file nobody else will see; lock the current one instead.
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)


def holder_of(path):
    try:
        with open(path) as file:
            return file.read().strip() or 'unknown'
    except OSError:
        return 'unknown'


@contextlib.contextmanager
def locked_folder(folder, purpose):
    """Hold `folder` (created if missing) for the duration; FolderError if another run holds it.

    A folder this call created is removed again if the run leaves it empty (a refused run leaves nothing).
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FolderError(f"{folder}: exists and is not a folder")
    created = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    descriptor = _lock(path)
    if descriptor is None:
        raise FolderError(f"{folder}: in use by another run (process {holder_of(path)}); wait for it to end "
                          f"or give another {purpose}")
    try:
        try:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f'{os.getpid()}\n'.encode())
        except OSError as error:  # a full disk: name the file
            raise OSError(error.errno, error.strerror, path) from None
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for the duration (messages printed by C libraries)."""
    saved = os.dup(2)
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
