"""Where a command's defaults put its files, and where it may not write: no training replaces the shipped model,
and no output lands inside a checkpoint or data folder."""
import os

from support.paths import REPOSITORY, enclosing, same_folder

DEFAULT_RESULTS = {'remove': 'results', 'segment': os.path.join('results', 'segment'),
                   'mask': os.path.join('results', 'mask')}
SHIPPED_DIR = os.path.join(REPOSITORY, 'checkpoints')   # the shipped models: training never writes there
DEFAULT_TRAINING_DIR = os.path.join(REPOSITORY, 'runs', 'train')


def default_folders(args, task, error):
    """(checkpoint_dir, results_dir): training writes into its own folders unless told otherwise, so that no
    training command replaces the shipped model or the committed results by accident (README: promoting a run)."""
    training = args.mode == 'train'
    checkpoint_dir = args.checkpoint_dir or (DEFAULT_TRAINING_DIR if training else SHIPPED_DIR)
    if training and same_folder(os.path.join(checkpoint_dir, task), os.path.join(SHIPPED_DIR, task)):
        error(f"{os.path.join(checkpoint_dir, task)} holds the shipped model, which training never replaces: "
              "train into another --checkpoint-dir and promote the run as README says")
    results_dir = args.results_dir or os.path.join(checkpoint_dir if training else REPOSITORY, DEFAULT_RESULTS[task])
    return checkpoint_dir, results_dir


def check_output_place(args, checkpoint_dir, results_dir, data, error):
    """Refuse outputs inside a checkpoint folder or a data folder: files written there would be taken for
    checkpoints or for data (e.g. test images) by the next run, or replace them."""
    written = {'infer': args.output, 'export': args.output, 'test': results_dir}.get(args.mode)
    checkpoint = args.checkpoint and (args.checkpoint if os.path.isdir(args.checkpoint) else
                                      os.path.dirname(os.path.abspath(args.checkpoint)))
    inside = written and enclosing(written, [data] + ([] if args.mode == 'test' else
                                                      [checkpoint, checkpoint_dir, SHIPPED_DIR]))
    if inside:
        kind = 'data' if inside == data else 'checkpoint'
        error(f"{'--results-dir' if args.mode == 'test' else '--output'} {written} is inside the {kind} folder "
              f"{inside}; give a folder outside it")
