"""options.json is checked against the checkpoint (issue 24, item 2): its values' types and ranges, the
checkpoint's variables (names, shapes, both ways) and the architecture recorded with the weights."""
import json
import os
import shutil

import pytest

from conftest import TINY_NETWORK, assert_one_line_error, run_program

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'checkpoints')


@pytest.fixture(scope='module')
def trained(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp('trusted')
    done = run_program('--mode', 'train', '--data', tiny_data, '--checkpoint-dir', root / 'checkpoints',
                       '--results-dir', root / 'results', *TINY_NETWORK, '--max-steps', 2, '--validate-every', 2)
    assert done.returncode == 0, done.stderr
    return root / 'checkpoints' / 'remove'


def edited(folder, tmp_path, **architecture):
    """A copy of the checkpoint folder whose options.json has these architecture values."""
    copy = shutil.copytree(folder, tmp_path / 'copy')
    options = json.loads((copy / 'options.json').read_text())
    options['architecture'].update(architecture)
    (copy / 'options.json').write_text(json.dumps(options))
    return copy


def infer(checkpoint, tiny_data, tmp_path):
    return run_program('--mode', 'infer', '--checkpoint', checkpoint, '--output', tmp_path / 'out',
                       '--input', os.path.join(tiny_data, 'inputs', 'test', '0000_NE00.png'))


@pytest.mark.parametrize('field, value, fragment', [
    ('skip_links', 'pools', 'trained with skip_links "all"'),   # adds no variable: the recorded architecture
    ('standardize', True, 'trained with standardize false'),
    ('residual', False, 'trained with residual true'), ('batch_norm', False, 'trained with batch_norm true'),
    ('channels', 4, 'trained with channels 8'),
    ('kernel_size', [], 'architecture.kernel_size is []'), ('kernel_size', None, 'architecture.kernel_size is null'),
    ('kernel_size', '5', 'architecture.kernel_size is "5"'), ('channels', -3, 'architecture.channels is -3'),
    ('residual', 1, 'architecture.residual is 1'), ('skip_links', 'some', 'architecture.skip_links'),
    ('task', 7, 'architecture.task is 7')])
def test_an_edited_options_json_is_one_line_naming_the_field(trained, tiny_data, tmp_path, field, value, fragment):
    assert_one_line_error(infer(edited(trained, tmp_path, **{field: value}), tiny_data, tmp_path), fragment)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('field, value', [('skip_links', 'pools'), ('standardize', True), ('residual', False)])
def test_the_shipped_model_s_options_are_checked_without_rewriting_it(tiny_data, tmp_path, field, value):
    assert infer(os.path.join(SHIPPED, 'remove'), tiny_data, tmp_path).returncode == 0
    copy = edited(os.path.join(SHIPPED, 'remove'), tmp_path, **{field: value})
    assert_one_line_error(infer(copy, tiny_data, tmp_path / 'again'), f'trained with {field}')


def test_a_checkpoint_without_a_record_is_checked_by_its_variables(tmp_path):
    """A checkpoint made before the record (not a shipped one): a variable it has that the graph lacks."""
    from support.quiet_tensorflow import tf
    from training.checkpoints import CheckpointError, check_checkpoint_fits
    with tf.Graph().as_default():
        kept = tf.compat.v1.get_variable('kernel', [3], initializer=tf.zeros_initializer())
        gate = tf.compat.v1.get_variable('residual_gate', [], initializer=tf.zeros_initializer())
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver([kept, gate]).save(session, str(tmp_path / 'old'))
        assert check_checkpoint_fits(prefix, [kept, gate], {'residual': True})['kernel'] == [3]
        with pytest.raises(CheckpointError, match='its variable residual_gate is not in this network'):
            check_checkpoint_fits(prefix, [kept], {'residual': False})


def test_the_shipped_segmentation_options_validate_as_they_are():
    from training.checkpoints import read_options
    assert read_options(os.path.join(SHIPPED, 'segment'))['architecture']['standardize'] is True
