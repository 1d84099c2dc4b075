"""A progress line for long loops: step, epoch, loss, images per second and time remaining.

On a terminal the line is rewritten in place; in a log file (nohup) a full line is written every
`log_interval` seconds instead, so logs stay readable.
"""
import sys
import time


def format_duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


class ProgressLine:
    def __init__(self, first_step, last_step, images_per_step, stream=sys.stdout, log_interval=30.0):
        self.first_step, self.last_step = first_step, last_step
        self.images_per_step = images_per_step
        self.stream = stream
        self.live = stream.isatty()
        self.log_interval = log_interval
        self.started = self.last_shown = time.time()
        self.smoothed_loss = None

    def update(self, step, epoch, loss):
        now = time.time()
        # An exponential average shows the trend; single batches are noisy.
        self.smoothed_loss = loss if self.smoothed_loss is None else 0.95 * self.smoothed_loss + 0.05 * loss
        if step < self.last_step and now - self.last_shown < (0.5 if self.live else self.log_interval):
            return
        self.last_shown = now
        done = step - self.first_step
        rate = done / max(now - self.started, 1e-9)
        remaining = (self.last_step - step) / rate if rate > 0 else 0.0
        line = (f'step {step}/{self.last_step}  epoch {epoch}  loss {self.smoothed_loss:.5f}  '
                f'{rate * self.images_per_step:.1f} img/s  elapsed {format_duration(now - self.started)}  '
                f'remaining {format_duration(remaining)}')
        self.stream.write(f'\r{line}\033[K' if self.live else line + '\n')
        if self.live and step >= self.last_step:
            self.stream.write('\n')
        self.stream.flush()
