"""The speed benchmark's harness: worker processes driven by commands, the interleaved measurement of their
windows, and the facts about the machine the report records (CPU, versions, CPU time used meanwhile).

Each worker runs in its own process (python bench.py --worker NAME SPEC REPLY_FD: `command` is the script that
answers that), so that one's threads, eager or graph mode and memory do not touch the others, and the training
process's peak memory is its own. All the workers of a precision are alive together and take turns, one window
each (see measure): the machine's speed drifts (on this 2-core VM, identical steps vary by 20-40 % within
seconds), and measuring each worker after the other would compare those drifts, not the programs.
"""
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from benchmark.timing import Channel
from support.machine import cpu_model_and_flags


class WorkerProcess:
    """A worker in a fresh Python process (python COMMAND --worker NAME SPEC REPLY_FD), driven by commands;
    `command` is the path of the script that runs it (bench.py, whose main() hands --worker to worker_main)."""

    TIMEOUT = 1800   # seconds without a reply: the worker is stuck

    def __init__(self, name, spec, command):
        self.name, self.precision = name, spec['precision']
        self.tmp = tempfile.mkdtemp(prefix=f'bench_{name}_')
        spec_path = os.path.join(self.tmp, 'spec.json')
        with open(spec_path, 'w') as file:
            json.dump(dict(spec, tmp=self.tmp), file)
        self.log_path = os.path.join(self.tmp, 'output.log')
        read_fd, write_fd = os.pipe()
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [sys.executable, os.path.abspath(command), '--worker', name, spec_path, str(write_fd)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=[write_fd], text=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1'))
        os.close(write_fd)
        self.replies = os.fdopen(read_fd)
        self.measurements = self.read()['ready']

    def read(self):
        import select
        if not select.select([self.replies], [], [], self.TIMEOUT)[0]:
            self.process.kill()
            raise RuntimeError(self.failure(f'no reply in {self.TIMEOUT} s'))
        line = self.replies.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(self.failure(f'exited with {self.process.returncode}'))
        message = json.loads(line)
        if 'error' in message:
            raise RuntimeError(self.failure(message['error']))
        return message

    def request(self, command):
        try:
            self.process.stdin.write(json.dumps(command) + '\n')
            self.process.stdin.flush()
        except BrokenPipeError:
            pass                                   # read() reports how it ended
        return self.read()

    def finish(self):
        final = self.request({'do': 'finish'})['final']
        self.process.wait()
        self.close()
        return final

    def failure(self, what):
        with open(self.log_path) as file:
            tail = [line.rstrip() for line in file if line.strip()][-6:]
        return f"worker {self.name} ({self.precision}) {what}: " + ' | '.join(tail)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.replies.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def worker_main(name, spec_path, reply_fd, workers):
    """A worker process's life: run workers[name](spec, channel), then reply with its final details or its error."""
    with open(spec_path) as file:
        spec = json.load(file)
    channel = Channel(int(reply_fd))
    try:
        final = workers[name](spec, channel)
    except BaseException as error:  # the parent shows it with the end of the log
        import traceback
        traceback.print_exc()
        channel.reply({'error': f'{type(error).__name__}: {error}'})
        return 1
    channel.reply({'final': final})
    return 0


def measure(names, spec, windows, settle, log, command):
    """Start the workers of one precision, run `windows` rounds of one window of every measurement, each
    round starting with the next worker (interleaved: a slower or faster spell of the machine touches all of
    them alike), then finish them. Returns ({measurement: [window results]}, {worker: final}, failures).
    `command`: the script that runs a worker (see WorkerProcess); its name starts the progress lines."""
    prefix = os.path.basename(command)
    workers, failures, results, finals = [], {}, {}, {}
    for name in names:
        started = time.perf_counter()
        print(f"{prefix}: starting {name} in {spec['precision']} ...", file=sys.stderr, flush=True)
        try:
            workers.append(WorkerProcess(name, spec, command))
        except RuntimeError as error:
            failures[name] = str(error)
            print(f"{prefix}: {error}", file=sys.stderr, flush=True)
        log.append({'worker': name, 'precision': spec['precision'], 'start_s': time.perf_counter() - started})
    for round_ in range(windows):
        order = workers[round_ % len(workers):] + workers[:round_ % len(workers)] if workers else []
        for worker in order:
            for measurement in worker.measurements:
                time.sleep(settle)        # let the previous worker's idle threads stop spinning
                try:
                    results.setdefault(measurement, []).append(dict(
                        worker.request({'do': 'window', 'name': measurement}), round=round_))
                except RuntimeError as error:
                    failures[worker.name] = str(error)
                    workers.remove(worker)
                    print(f"{prefix}: {error}", file=sys.stderr, flush=True)
                    break
        print(f"{prefix}: {spec['precision']}: round {round_ + 1}/{windows} done", file=sys.stderr,
              flush=True)
    for worker in workers:
        started = time.perf_counter()
        try:
            finals[worker.name] = worker.finish()
        except RuntimeError as error:
            failures[worker.name] = str(error)
            worker.close()
        log.append({'worker': worker.name, 'precision': spec['precision'], 'finish_s': time.perf_counter() - started})
    return results, finals, failures


# ------------------------------------------------------------------------------------------------ machine

def cpu_description():
    """The CPU (model, cores, bfloat16 support), memory and platform, as the report records them."""
    model, flags = cpu_model_and_flags()
    return {'cpu': model, 'cores': os.cpu_count(), 'avx512f': 'avx512f' in flags,
            'avx512_bf16': 'avx512_bf16' in flags, 'amx_bf16': 'amx_bf16' in flags,
            'memory_gb': round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1),
            'platform': platform.platform(), 'python': platform.python_version()}


def versions():
    """The versions of the installed frameworks the benchmark compares ({package: version})."""
    import importlib.metadata as metadata
    found = {}
    for package in ('tensorflow-cpu', 'tensorflow', 'keras', 'numpy', 'torch'):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def torch_importable():
    """Whether PyTorch is installed (optional, not a requirement)."""
    import importlib.util
    return importlib.util.find_spec('torch') is not None


def busy_cpu_seconds():
    """CPU time spent by everything on the machine so far (from /proc/stat), or None."""
    try:
        with open('/proc/stat') as file:
            fields = [int(value) for value in file.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def own_cpu_seconds():
    """CPU time used so far by this process and its finished children (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

