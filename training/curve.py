"""Time to quality: every validation's score with the step and the training wall time it was reached at.

The history lives beside the checkpoints (`valid_history.json`), so a resumed run continues its curve; the
wall time is the training's own (kept in the checkpoints, so the minutes a run spent stopped do not count).
Each validation redraws `training_curve.png`: the score against minutes and against steps.
"""
import json
import math
import os

from support.safe_files import atomic_path, write_strict_json

HISTORY_FILE = 'valid_history.json'


def read_history(checkpoint_dir, up_to_step=None):
    """[{step, minutes, score}] of the run in checkpoint_dir, without entries past `up_to_step` (a resumed run
    repeats those steps)."""
    path = os.path.join(checkpoint_dir, HISTORY_FILE)
    try:
        with open(path) as file:
            history = json.load(file)['validations']
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a damaged curve costs only the plot's past points, never the training
    return [entry for entry in history if up_to_step is None or entry['step'] <= up_to_step]


def write_history(checkpoint_dir, history, score_name):
    write_strict_json(os.path.join(checkpoint_dir, HISTORY_FILE),
                      {'score': score_name, 'minutes': 'training wall time, summed over resumed runs',
                       'validations': history})


def first_reaching(history, score):
    """The first entry whose (valid) score is at or below `score`, or None."""
    return next((entry for entry in history if entry['score'] <= score), None)


def note_single_point(axis, value, score):
    """A short run's one validation: on auto-scaled axes it is a lone dot in the middle of nowhere; draw the axes
    from 0 and say why there is no curve."""
    for line in axis.lines:
        line.set_markersize(8)
    axis.set_xlim(0, 1.1 * value if value > 0 else 1)
    axis.set_ylim(0, 1.2 * score if score > 0 else 1)
    axis.text(0.5, 0.1, 'one validation so far: a longer run draws the curve\n(a point every --validate-every steps)',
              transform=axis.transAxes, ha='center', fontsize=8)


def plot_training_curve(history, path, score_name, title):
    """Score against training minutes (left) and steps (right), the best so far (by the selection score, where
    the history has one) marked; the held-out family's score beside the valid one, where the history has it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    by_time, by_step = figure.subplots(1, 2, sharey=True)
    scores = [entry['score'] for entry in history]
    family = [entry.get('family_score', math.nan) for entry in history]
    selection = [entry.get('selection_score', entry['score']) for entry in history]
    best = min(range(len(history)), key=selection.__getitem__) if history else None
    for axis, key, label in ((by_time, 'minutes', 'training wall time (min)'), (by_step, 'step', 'step')):
        values = [entry[key] for entry in history]
        axis.plot(values, scores, marker='.', color='tab:blue', label='valid split')
        if not all(math.isnan(score) for score in family):
            axis.plot(values, family, marker='.', color='tab:green', label='held-out family')
        if best is not None:
            axis.plot(values[best], scores[best], marker='o', color='tab:red',
                      label=f"best {scores[best]:.3f} at step {history[best]['step']}, "
                            f"{history[best]['minutes']:.0f} min")
        if history:
            axis.legend(fontsize=8)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
        if len(history) == 1:
            note_single_point(axis, values[0], scores[0])
    by_time.set_ylabel(score_name)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format='png')
    return figure
