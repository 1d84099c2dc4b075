"""The progress line of every command: within 80 columns, rewritten in place on a terminal, messages on lines of
their own, whole lines every log_interval seconds in a log."""
import io

from support import progress as progress_module
from support.progress import ProgressLine


class Terminal(io.StringIO):
    def isatty(self):
        return True


def training_line(total, stream, **options):
    """The training's progress line (steps counted, 16 images a step)."""
    return ProgressLine(total, label='step ', per_count=16, stream=stream, **options)


def test_a_message_on_a_terminal_starts_on_its_own_line_and_the_line_fits_80_columns(monkeypatch):
    clock = iter([0.0, 10.0, 1000.0])        # start, then two updates far enough apart to be shown
    monkeypatch.setattr(progress_module.time, 'time', lambda: next(clock))
    terminal = Terminal()
    progress = training_line(99999, terminal)
    progress.update(250, 'epoch 2  train RMSE 12.346 mm')
    progress.message('step 250: valid RMSE 2.402 mm')
    progress.update(99999, 'epoch 450  train RMSE 12.346 mm')
    text = terminal.getvalue()
    assert '\nstep 250: valid RMSE 2.402 mm\n' in text          # not glued to the progress line before it
    shown = [part.replace('\033[K', '') for part in text.replace('\n', '\r').split('\r') if part]
    progress_lines = [line for line in shown if '/99999' in line]
    assert progress_lines[0].startswith('step 250/99999  epoch 2  train RMSE 12.346 mm  400.0 img/s  ')
    assert progress_lines[0].endswith('1:06:30 left')          # 99749 steps at 25 per second: 3990 s
    assert progress_lines[-1].startswith('step 99999/99999  epoch 450  train RMSE 12.346 mm  ')
    assert all(len(line) <= 80 for line in shown), shown
    assert text.endswith('\n')                                  # the finished line does not hold the prompt


def test_in_a_log_file_every_shown_line_is_whole():
    log = io.StringIO()
    progress = training_line(10, log, log_interval=0)
    progress.update(5, 'epoch 1  train RMSE 1.000 mm')
    progress.message('step 5: valid RMSE 0.500 mm')
    progress.update(10, 'epoch 2  train RMSE 1.000 mm')
    lines = log.getvalue().split('\n')
    assert lines[0].startswith('step 5/10  epoch 1  train RMSE 1.000 mm') and '\r' not in log.getvalue()
    assert lines[1] == 'step 5: valid RMSE 0.500 mm' and lines[2].startswith('step 10/10  epoch 2')


def test_a_count_of_images_in_a_log_shows_rate_and_time_left_every_interval_and_at_the_end(monkeypatch):
    clock = iter([0.0, 5.0, 20.0, 21.0])     # start, then an update too soon for the log, one after, the last
    monkeypatch.setattr(progress_module.time, 'time', lambda: next(clock))
    log = io.StringIO()
    progress = ProgressLine(1000, label='convworking.py: infer ', counted=' images', stream=log, log_interval=10)
    for done in (100, 500, 1000):
        progress.update(done)
    assert log.getvalue().splitlines() == ['convworking.py: infer 500/1000 images  25.0 img/s  0:20 left',
                                           'convworking.py: infer 1000/1000 images  47.6 img/s  0:00 left']
