"""README agrees with the program: the examples of --help are README's Quick start commands, and back.

(README's Python snippets are run in tests/test_inference.py, beside the exported model they load.)
"""
import os
import re

import convworking
from conftest import REPO, run_program

COMMANDS = ('python convworking.py ', 'tensorboard ')   # the lines of README's blocks that are examples


def readme_section(title):
    """The text of README's section `## title`, up to the next section."""
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as file:
        text = file.read()
    match = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## )', text, re.S | re.M)
    assert match, f'README has no section {title!r}'
    return match.group(1)


def code_blocks(text, language):
    return re.findall(rf'^```{language}\n(.*?)^```', text, re.S | re.M)


def help_examples():
    """[(comment lines, command)] as --help prints them."""
    finished = run_program('--help')
    assert finished.returncode == 0, finished.stderr
    return examples_of(finished.stdout.split('\nexamples:\n', 1)[1].splitlines())


def examples_of(lines):
    """[(comment lines, command)]: each command line with the comment lines right above it."""
    examples, comments = [], []
    for line in (line.strip() for line in lines):
        if line.startswith('#'):
            comments.append(line)
        elif line.startswith(COMMANDS):
            examples.append((tuple(comments), line))
            comments = []
        else:
            comments = []
    return examples


def test_every_example_of_help_is_in_the_readmes_quick_start_and_back():
    shown = help_examples()
    readme = examples_of(line for block in code_blocks(readme_section('Quick start'), 'bash')
                         for line in block.splitlines())
    assert len(shown) >= 8            # the parser found them: an empty list would agree with anything
    assert shown == readme


def test_the_smoke_example_renders_nothing_and_the_full_run_says_its_steps():
    commands = {command: ' '.join(comments) for comments, command in help_examples()}
    smoke = next(command for command in commands if '--max-steps 200' in command)
    assert '--generated-subjects 0' in smoke and '--family-subjects 0' in smoke
    full = next(command for command in commands if '--checkpoint-dir runs/full' in command)
    steps = convworking.DEFAULT_LENGTH['remove']['max_steps']
    assert f'{steps:,} steps' in commands[full] and 'epochs' not in commands[full]
    tensorboard = next(command for command in commands if command.startswith('tensorboard'))
    assert 'runs/smoke/results/logs' in commands[tensorboard]
