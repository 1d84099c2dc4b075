"""The one progress line of every long loop: count, what the caller adds, rate and time remaining.

    step 250/32000  epoch 2  train RMSE 2.346 mm  400.0 img/s  1:06:30 left      (training)
    convworking.py: infer 32/1000 images  85.2 img/s  0:11 left                 (infer)
    1300/3120 pairs  45.3 pairs/s  0:40 left                                    (make_dataset.py)

On a terminal the line is rewritten in place (at most every LIVE_INTERVAL seconds); in a log file (nohup, a
pipe) a full line is written every `log_interval` seconds instead, so logs stay readable. The last count
always shows, and ends the line. Other messages go through `message`, which puts them on a line of their own
(on a terminal, the progress line is redrawn below them at the next update). The line stays within 80 columns.
"""
import sys
import time

LIVE_INTERVAL = 0.5   # seconds between redraws on a terminal


def format_duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


class ProgressLine:
    """`label` done/total `counted`, then update's details, the rate in `unit`/s and the time left.

    The count starts at `first` (a resumed training's step); each count stands for `per_count` units (a
    training step for its images), so the rate is in units whatever is counted.
    """

    def __init__(self, total, first=0, label='', counted='', unit='img', per_count=1, stream=None,
                 log_interval=30.0):
        self.total, self.first = total, first
        self.label, self.counted, self.unit, self.per_count = label, counted, unit, per_count
        # standard output as it is now, not as it was when this module was imported (a test's capture, since
        # closed, or a redirection made later)
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.log_interval = log_interval
        self.started = self.last_shown = time.time()
        self.showing = False        # a live line is on screen without its newline

    def update(self, done, details=''):
        now = time.time()
        if done < self.total and now - self.last_shown < (LIVE_INTERVAL if self.live else self.log_interval):
            return
        self.last_shown = now
        rate = (done - self.first) / max(now - self.started, 1e-9)
        remaining = (self.total - done) / rate if rate > 0 else 0.0
        line = (f'{self.label}{done}/{self.total}{self.counted}  {details + "  " if details else ""}'
                f'{rate * self.per_count:.1f} {self.unit}/s  {format_duration(remaining)} left')
        if self.live:
            self.stream.write(f'\r{line}\033[K')
            self.showing = True
            if done >= self.total:
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
