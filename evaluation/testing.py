"""--mode test: a trained model's outputs on the test split, scored by its task, with the report and the grids."""
import os
import time

from depth.dataset import offset_description
from evaluation.plotting import grid_examples, save_grid
from support.command_line import check_room, say
from support.paths import recorded_path
from support.safe_files import locked_folder, remove_leftovers, write_strict_json
from training.tasks import TASKS


def provenance(checkpoint, data_folder, offset_px):
    """What test_metrics.json records of what was tested on what, whatever the task: the checkpoint, the data
    folder, and how far the test pairs were moved (rows down, cols right; --offset-px)."""
    return dict(checkpoint=recorded_path(checkpoint), data=recorded_path(data_folder), offset_px=list(offset_px))


def test_checkpoint(options, restore, restore_background):
    """--mode test: the checkpoint that restore() gives as (session, network, prefix) on the test split of
    options.data (the command line's Options), its outputs' background decided by restore_background()'s
    inference.background.Background; the metrics, report and grids into options.results_dir."""
    task = TASKS[options.task]
    started = time.time()
    say(f"loading the test split of {options.data} and the model")
    data = options.data_source()
    check_room(options.results_dir, '--results-dir')
    (test_set, train), gallery = task.load_for_testing(data), task.load_gallery(data)
    if any(options.offset_px):
        say(offset_description(*options.offset_px))
        test_set = test_set.moved(*options.offset_px)
    session, network, prefix = restore()
    background = restore_background()
    say(f"testing {prefix}: the model's outputs for the {len(test_set)} test images")
    with session:
        outputs = network.predict(session, test_set.batches(options.batch_size))
        gallery_outputs = None
        if gallery is not None:
            say(f"the model's outputs for the {len(gallery)} images of the recognition gallery")
            gallery_outputs = network.predict(session, gallery.batches(options.batch_size))
    with locked_folder(options.results_dir, '--results-dir'):
        remove_leftovers(options.results_dir, say)
        metrics = task.evaluate(data, test_set, outputs, provenance(prefix, data.folder, options.offset_px), say,
                                options.results_dir, background, gallery, gallery_outputs, options.model_fit_every,
                                train)
        say("the grids")
        examples = grid_examples(test_set, 4 * 12)
        written = ['test_metrics.json', *task.report_files]
        for number, start in enumerate(range(0, len(examples), 12), 1):
            written.append(f'test_grid_{number}.png')
            save_grid(os.path.join(options.results_dir, written[-1]), task, test_set, outputs,
                      examples[start:start + 12], background,
                      f'test split, {os.path.basename(prefix)}: input, ground truth, output, background removed, '
                      'its error')
        write_strict_json(os.path.join(options.results_dir, 'test_metrics.json'),
                          dict(metrics, mirror_average=network.mirror_average,
                               deadband_mm=network.deadband_mm, deadband_relief=network.deadband_relief))
    print()
    task.print_metrics(metrics)
    print()
    say(f"tested in {time.time() - started:.0f} s; wrote {', '.join(written)} in {options.results_dir}")
