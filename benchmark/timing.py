"""The benchmark's timing: a worker process's channel to the parent, the pacing of self-running training loops,
and timed windows of calls (the harness, the workers and the peers share them)."""
import json
import os
import sys
import time


class Channel:
    """A worker's side of the conversation with the parent: commands on stdin, replies on a pipe.

    The parent sends {'do': 'window', 'name': M} (time one window of measurement M and reply with its
    duration) or {'do': 'finish'} (end, reply with the worker's final details). Between commands the worker
    waits idle, so that the parent can run one window of every measurement in turn (interleaved).
    """

    def __init__(self, reply_fd):
        self.replies = os.fdopen(reply_fd, 'w')

    def reply(self, message):
        self.replies.write(json.dumps(message) + '\n')
        self.replies.flush()

    @staticmethod
    def command():
        line = sys.stdin.readline()
        if not line:
            raise SystemExit(f"{os.path.basename(sys.argv[0])}: worker: the parent went away")
        return json.loads(line)

    def serve(self, windows):
        """Answer window commands with windows[name](); return at 'finish'."""
        self.reply({'ready': list(windows)})
        while True:
            command = self.command()
            if command['do'] == 'finish':
                return
            self.reply(dict(windows[command['name']](), name=command['name']))


class Pacer:
    """For a loop that runs by itself (convworking's training, Keras's fit, a plain loop): call
    step_done() after every step. After `warmup` steps it reports ready and waits for a command; a window
    command lets `steps` more steps run, timed from the moment the command arrived; a finish command lets the
    loop run on to its end (the caller replies with the final details)."""

    def __init__(self, channel, name, warmup, steps, images_per_step):
        self.channel, self.name, self.warmup, self.steps = channel, name, warmup, steps
        self.images_per_step = images_per_step
        self.done, self.window_end, self.started, self.finished = 0, None, None, False
        self.first_steps = []
        self.last = time.perf_counter()

    def step_done(self):
        now = time.perf_counter()
        self.done += 1
        if self.done <= self.warmup:
            self.first_steps.append(now - self.last)
            self.last = now
        if self.finished:
            return
        if self.done == self.warmup:
            self.channel.reply({'ready': [self.name]})
            self._next()
        elif self.done == self.window_end:
            self.channel.reply({'name': self.name, 'seconds': now - self.started,
                                'images': self.steps * self.images_per_step})
            self._next()

    def _next(self):
        command = self.channel.command()
        if command['do'] == 'finish':
            self.finished = True
        else:
            self.window_end = self.done + self.steps
            self.started = time.perf_counter()


def window_of(function, repeats, images):
    """A window function: `repeats` calls of function(), timed together."""
    def window():
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        return {'seconds': time.perf_counter() - started, 'images': repeats * images}
    return window


def calls_of(function, calls):
    """A window function for latency: `calls` calls of function(), each timed."""
    def window():
        durations = []
        for _ in range(calls):
            started = time.perf_counter()
            function()
            durations.append(time.perf_counter() - started)
        return {'seconds': sum(durations), 'images': calls, 'calls': durations}
    return window
