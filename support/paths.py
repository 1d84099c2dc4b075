"""Where the repository is, and paths as results files record them.

Results files (test_metrics.json, options.json, model.json) record paths relative to the repository:
committed results then name no machine's folders, and still point at the right checkpoint and data in any clone.
"""
import os

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recorded_path(path):
    """A path as results files record it."""
    return os.path.relpath(os.path.abspath(path), REPOSITORY)


def resolve_recorded_path(path):
    """The absolute path a recorded one names (older files recorded absolute paths; they pass unchanged)."""
    return os.path.normpath(os.path.join(REPOSITORY, path))


def same_folder(first, second):
    """Whether two paths name the same place (links and relative paths resolved; neither need exist)."""
    return os.path.realpath(first) == os.path.realpath(second)


def is_inside(path, folder):
    """Whether `path` is `folder` or lies under it (links resolved; neither need exist)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def enclosing(path, folders):
    """The first of `folders` that `path` is or lies under (see is_inside), or None."""
    return next((folder for folder in folders if folder and is_inside(path, folder)), None)
