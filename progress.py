"""A progress line for long loops: step, epoch, training score, images per second and time remaining.

On a terminal the line is rewritten in place; in a log file (nohup) a full line is written every
`log_interval` seconds instead, so logs stay readable. Other messages go through `message`, which puts
them on a line of their own (on a terminal, the progress line is redrawn below them at the next update).
The line stays within 80 columns.
"""
import sys
import time


def format_duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


class ProgressLine:
    def __init__(self, first_step, last_step, images_per_step, format_score, stream=sys.stdout,
                 log_interval=30.0):
        self.first_step, self.last_step = first_step, last_step
        self.images_per_step = images_per_step
        self.format_score = format_score
        self.stream = stream
        self.live = stream.isatty()
        self.log_interval = log_interval
        self.started = self.last_shown = time.time()
        self.smoothed_score = None
        self.showing = False        # a live line is on screen without its newline

    def update(self, step, epoch, score):
        now = time.time()
        # An exponential average shows the trend; single batches are noisy.
        self.smoothed_score = score if self.smoothed_score is None else 0.95 * self.smoothed_score + 0.05 * score
        if step < self.last_step and now - self.last_shown < (0.5 if self.live else self.log_interval):
            return
        self.last_shown = now
        done = step - self.first_step
        rate = done / max(now - self.started, 1e-9)
        remaining = (self.last_step - step) / rate if rate > 0 else 0.0
        line = (f'step {step}/{self.last_step}  epoch {epoch}  {self.format_score(self.smoothed_score)}  '
                f'{rate * self.images_per_step:.1f} img/s  {format_duration(remaining)} left')
        if self.live:
            self.stream.write(f'\r{line}\033[K')
            self.showing = True
            if step >= self.last_step:
                self.end_line()
        else:
            self.stream.write(line + '\n')
        self.stream.flush()

    def end_line(self):
        """Finish a live progress line, so that what follows starts on a line of its own."""
        if self.showing:
            self.stream.write('\n')
            self.showing = False

    def message(self, text):
        self.end_line()
        self.stream.write(text + '\n')
        self.stream.flush()
