"""TensorFlow, quietly: imported without its start-up chatter and on first use, its errors in one line."""
import functools
import os
import sys

from support.safe_files import quiet_stderr


@functools.cache
def import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up messages hidden.

    TensorFlow 2.21 prints them (oneDNN notes, CPU features) straight to file descriptor 2 during the
    import, ignoring TF_CPP_MIN_LOG_LEVEL; they would bury the one-line errors this program promises.
    Level 3 also keeps out its C++ core's error lines, which would come before ours (on a full disk, the summary
    writer's "E0000 ... Write failed" before the line naming the file): training and test check for room first,
    and what fails later reaches this program as an exception, which it reports in one line.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    with quiet_stderr():
        import tensorflow
    # Deprecation notes of the tf.compat.v1 API we use on purpose, and errors this program reports itself in
    # one line (e.g. tf.train.latest_checkpoint's about a checkpoint whose files are missing).
    tensorflow.get_logger().setLevel('CRITICAL')
    return tensorflow


def tensorflow_loaded():
    """Whether TensorFlow's import has completed. An import that Ctrl-C broke leaves no 'tensorflow' module, and
    trying it again fails with a traceback of its own (its registries are half filled): after Ctrl-C, ask
    first."""
    return 'tensorflow' in sys.modules


class LazyTensorFlow:
    """The tensorflow module, imported (quietly) on first use: --help and bad options answer at once
    instead of after TensorFlow's seconds of start-up."""

    def __getattr__(self, name):
        return getattr(import_tensorflow_quietly(), name)


tf = LazyTensorFlow()


def error_summary(error):
    """The line of a TensorFlow error that says what went wrong: its last one, node reference and hints aside
    (graph-mode errors start with "Graph execution error:" and a stack of the graph's construction)."""
    text = getattr(error, 'message', None) or str(error)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(('[[', 'Hint:'))]
    return lines[-1] if lines else type(error).__name__
