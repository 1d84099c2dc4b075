"""The network's graph: shapes, tied kernels, skip links, batch normalisation, and that it can learn."""
import numpy as np
import pytest

from conftest import deadband_in_numpy, synthetic_pair
from convworking import ARCHITECTURE_DEFAULTS, TASKS, Network, TrainingSetup, tf
from depth.convention import mm_to_network, network_to_mm

TINY = dict(ARCHITECTURE_DEFAULTS, channels=8, kernel_size=3)


def build(architecture, training=None, for_export=False, mirror_average=False, deadband_mm=0.0,
          deadband_relief=0.0):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        network = Network(architecture, training=training, for_export=for_export, mirror_average=mirror_average,
                          deadband_mm=deadband_mm, deadband_relief=deadband_relief)
    return graph, network


def encoder_shapes(network):
    shape, shapes = (128, 128, 1), []
    for layer in network.layers:
        shape = layer.output_shape(shape)
        shapes.append(shape)
    return shapes


@pytest.mark.parametrize('architecture, bottleneck', [
    (ARCHITECTURE_DEFAULTS, (2, 2, 64)),
    (dict(TINY, modules=2, channels=5), (8, 8, 5)),
])
def test_encoder_shrinks_and_decoder_restores_the_image_shape(architecture, bottleneck):
    graph, network = build(architecture)
    assert encoder_shapes(network)[-1] == bottleneck
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        batch = np.random.default_rng(0).random((3, 128, 128, 1), np.float32)
        output = session.run(network.output, {network.inputs: batch})
        bottleneck_tensor = graph.get_tensor_by_name(f"max_{architecture['modules']}:0")
        assert session.run(bottleneck_tensor, {network.inputs: batch}).shape == (3, *bottleneck)
    assert output.shape == (3, 128, 128, 1)
    assert network.output.name == 'output:0'


def test_mirror_average_is_the_mean_of_the_output_and_the_mirrored_output_of_the_mirrored_input(tmp_path):
    batch = np.random.default_rng(1).random((3, 128, 128, 1), np.float32)
    graph, network = build(TINY)
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        gate, = [v for v in network.model_variables if v.op.name == 'residual_gate']
        session.run(gate.assign(0.5))  # not 'do nothing'
        direct, mirrored = (session.run(network.output, {network.inputs: images}) for images in
                            (batch, batch[:, :, ::-1]))
        prefix = tf.compat.v1.train.Saver(network.model_variables).save(session, str(tmp_path / 'weights'))
    graph, averaging = build(TINY, mirror_average=True)
    with graph.as_default(), tf.compat.v1.Session() as session:
        tf.compat.v1.train.Saver(averaging.model_variables).restore(session, prefix)
        averaged = session.run(averaging.output, {averaging.inputs: batch})
    assert averaged.shape == batch.shape
    np.testing.assert_allclose(averaged, (direct + mirrored[:, :, ::-1]) / 2, atol=1e-6)
    assert np.abs(direct - mirrored[:, :, ::-1]).max() > 1e-3   # the network alone is not mirror-symmetric


def test_deadband_shrinks_each_change_of_the_inputs_surface_and_keeps_the_rest():
    inputs_mm = np.array([80.0, 80.0, 80.0, 80.0, 0.0, 80.0], np.float32)
    outputs_mm = np.array([80.5, 79.9, 80.1, 78.0, 5.0, 0.0], np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        shrunk = session.run(TASKS['remove'].with_deadband(tf, tf.constant(mm_to_network(outputs_mm)),
                                                           tf.constant(mm_to_network(inputs_mm)), 0.2))
    # 0.5 mm up -> 0.3; changes within 0.2 mm -> none; 2 mm down -> 1.8; background and erased surface as they are
    np.testing.assert_allclose(network_to_mm(shrunk), [80.3, 80.0, 80.0, 78.2, 5.0, 0.0], atol=1e-4)


def face_with_a_cliff_and_its_blurred_outputs():
    """An input face (mm, 1 x H x W x 1) that drops by 40 mm below row 90 (a jaw above the neck), and two outputs:
    the first blurs that drop by 3 mm on the rows beside it and moves the rest by 0.1 mm (a near-neutral face);
    the second does the same and also raises a wide region by 6 mm (an expression it removes)."""
    rows, cols = np.mgrid[:128, :128]
    face = (rows > 10) & (rows < 118) & (cols > 14) & (cols < 114)
    height = np.where(face, np.where(rows < 90, 90.0, 50.0) - 0.05 * np.abs(cols - 64), 0)
    blurred = height + np.where(face, 0.1, 0) + np.where(face & (rows == 89), -3.0, 0) \
        + np.where(face & (rows == 90), 3.0, 0)
    expression = blurred + np.where(face & (rows > 30) & (rows < 80), 6.0, 0)
    as_batch = lambda image: mm_to_network(image.astype(np.float32))[None, ..., None]
    return as_batch(height), as_batch(blurred), as_batch(expression)


def test_relief_deadband_keeps_the_inputs_cliff_on_a_near_neutral_face_only():
    inputs, near_neutral, expression = face_with_a_cliff_and_its_blurred_outputs()
    inputs, outputs = np.concatenate([inputs, inputs]), np.concatenate([near_neutral, expression])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        kept = session.run(TASKS['remove'].with_deadband(tf, tf.constant(outputs), tf.constant(inputs), 0.2, 0.1))
    np.testing.assert_allclose(kept, deadband_in_numpy(outputs, inputs, 0.2 / 127.5, 0.1), atol=1e-6)
    change_mm = network_to_mm(kept - inputs)[..., 0]
    # near neutral (its change 0.1 mm): the cliff's 3 mm blur is not drawn; elsewhere the 0.2 mm deadband alone
    assert np.abs(change_mm[0, 89:91, 20:108]).max() < 1e-3 and np.abs(change_mm[0, 40:80, 40:90]).max() < 1e-3
    # an expression (its change 6 mm inside the face): the relief adds nothing, 2.9 mm down -> 2.7, 6.1 up -> 5.9
    np.testing.assert_allclose(change_mm[1, 89, 20:108], -2.7, atol=1e-3)
    np.testing.assert_allclose(change_mm[1, 40:80, 40:90], 5.9, atol=1e-3)


def test_relief_deadband_of_an_image_without_inner_face_is_the_plain_deadband():
    inputs = np.zeros((1, 128, 128, 1), np.float32)
    inputs[0, 60:66, 60:66] = mm_to_network(80.0)       # a face too small to have an inner face
    outputs = inputs + mm_to_network(1.0)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        kept = session.run(TASKS['remove'].with_deadband(tf, tf.constant(outputs), tf.constant(inputs), 0.2, 0.1))
    np.testing.assert_allclose(kept, deadband_in_numpy(outputs, inputs, 0.2 / 127.5), atol=1e-6)


@pytest.mark.parametrize('deadband_relief', [0.0, 0.1])
def test_network_applies_the_deadband_to_its_output(tmp_path, deadband_relief):
    batch = np.random.default_rng(2).random((2, 128, 128, 1), np.float32) * 0.8
    batch[:, :20] = 0   # some background
    graph, network = build(TINY)
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        gate, = [v for v in network.model_variables if v.op.name == 'residual_gate']
        session.run(gate.assign(0.01))  # changes of a fraction of a mm to a few mm
        plain = session.run(network.output, {network.inputs: batch})
        prefix = tf.compat.v1.train.Saver(network.model_variables).save(session, str(tmp_path / 'weights'))
    graph, shrinking = build(TINY, deadband_mm=0.5, deadband_relief=deadband_relief)
    with graph.as_default(), tf.compat.v1.Session() as session:
        tf.compat.v1.train.Saver(shrinking.model_variables).restore(session, prefix)
        output = session.run(shrinking.output, {shrinking.inputs: batch})
    change_mm = network_to_mm(plain - batch)[batch > 0]
    assert (np.abs(change_mm) < 0.5).mean() > 0.05 and (np.abs(change_mm) > 0.5).mean() > 0.05
    np.testing.assert_allclose(output, deadband_in_numpy(plain, batch, 0.5 / 127.5, deadband_relief), atol=1e-6)


def test_decoder_reuses_the_encoders_kernels():
    graph, network = build(TINY)
    kernels = [v for v in graph.get_collection('variables') if v.op.name.endswith('kernel')]
    assert len(kernels) == 2 * TINY['modules']          # one per encoder convolution, none for the decoder
    assert not [v for v in kernels if 'reversed' in v.op.name]
    transposed = [op for op in graph.get_operations()
                  if op.type == 'Conv2DBackpropInput' and op.name.endswith('reversed/conv2d_transpose')]
    assert len(transposed) == len(kernels)
    kernel_reads = {op.inputs[1].op.inputs[0].op.name for op in transposed}   # ReadVariableOp <- variable
    assert kernel_reads == {v.op.name for v in kernels}


def test_every_convolution_but_the_output_is_batch_normalised():
    graph, network = build(TINY)
    trainable = {v.op.name for v in graph.get_collection('trainable_variables')}
    convolutions = 2 * TINY['modules']
    assert len([n for n in trainable if n.endswith('batch_norm/scale')]) == 2 * convolutions - 1
    assert [n for n in trainable if n.endswith('bias')] == ['conv_1_1_reversed/bias']


def count_skip_links(architecture):
    graph, _ = build(architecture)
    return len([op for op in graph.get_operations() if op.name.endswith('_skip')])


def test_skip_links_change_the_graph():
    assert count_skip_links(dict(TINY, skip_links='none')) == 0
    # every pool but the deepest, whose output is the decoder's input; with 'all', every layer but that one
    assert count_skip_links(dict(TINY, skip_links='pools')) == TINY['modules'] - 1
    assert count_skip_links(dict(TINY, skip_links='all')) == 3 * TINY['modules'] - 1


def test_batch_norm_uses_batch_statistics_in_training_and_moving_ones_at_test():
    graph, network = build(dict(TINY, residual=False), TrainingSetup())
    batch = np.random.default_rng(1).random((4, 128, 128, 1), np.float32)
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        moving_mean, = [v for v in graph.get_collection('variables')
                        if v.op.name == 'conv_1_1/batch_norm/moving_mean']
        before = session.run(moving_mean)
        test_output = session.run(network.output, {network.inputs: batch})
        assert np.array_equal(session.run(moving_mean), before)      # inference leaves the averages alone
        train_output = session.run(network.output, {network.inputs: batch, network.is_training: True})
        assert not np.array_equal(session.run(moving_mean), before)  # training moves them
        assert not np.allclose(test_output, train_output)


def test_only_a_network_built_for_training_holds_an_optimiser():
    for training, optimised in ((None, False), (TrainingSetup(), True)):
        graph, network = build(TINY, training)
        assert bool([v for v in graph.get_collection('variables') if 'Adam' in v.op.name]) == optimised
        assert hasattr(network, 'train_op') == optimised


def test_a_network_built_for_export_holds_no_control_flow():
    graph, network = build(TINY, for_export=True)
    assert not [op for op in graph.get_operations() if op.type in ('If', 'StatelessIf')]
    assert network.is_training is False
    assert [op.name for op in graph.get_operations() if op.type.startswith('Placeholder')] == ['inputs', 'targets']


def test_a_tiny_network_overfits_a_handful_of_pairs():
    rng = np.random.default_rng(0)
    pairs = [synthetic_pair(rng, index) for index in range(4)]
    inputs = mm_to_network(np.stack([p[0] for p in pairs]))[..., None]
    targets = mm_to_network(np.stack([p[1] for p in pairs]))[..., None]
    graph, network = build(TINY, TrainingSetup(learning_rate=3e-3, decay_steps=300))
    feed = {network.inputs: inputs, network.targets: targets, network.is_training: True}
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        first = session.run(network.loss, {network.inputs: inputs, network.targets: targets})
        for _ in range(300):
            session.run(network.train_op, feed)
        last = session.run(network.loss, {network.inputs: inputs, network.targets: targets})
    assert last < first / 10, (first, last)


def test_calibrating_batch_norm_makes_test_mode_agree_with_batch_statistics():
    # residual=False: a fresh residual gate would hide the network
    graph, network = build(dict(TINY, residual=False), TrainingSetup())
    batch = np.random.default_rng(2).random((4, 128, 128, 1), np.float32)
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        with_batch_statistics = session.run(network.output, {network.inputs: batch, network.is_training: True})
        # 1 % of the output's range: what remains is the unbiased (stored) vs biased (used) batch variance
        # in the 4 x 4 bottleneck layers
        tolerance = 0.01 * np.abs(with_batch_statistics).max()
        before = np.abs(session.run(network.output, {network.inputs: batch}) - with_batch_statistics).max()
        network.calibrate_batch_norm(session, [batch] * 200)   # 0.9 ** 200: the initial averages are gone
        after = np.abs(session.run(network.output, {network.inputs: batch}) - with_batch_statistics).max()
    assert before > 10 * tolerance and after < tolerance, (before, after, tolerance)


def test_the_training_score_is_the_batch_rmse_over_the_face_in_mm():
    graph, network = build(TINY, TrainingSetup())
    rng = np.random.default_rng(1)
    pairs = [synthetic_pair(rng, index) for index in range(2)]
    inputs, targets = (mm_to_network(np.stack(side))[..., np.newaxis] for side in zip(*pairs))
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        output, score, loss = session.run([network.output, network.training_score, network.loss],
                                          {network.inputs: inputs, network.targets: targets})
    face = targets > 0
    expected = np.sqrt(np.mean((output[face] - targets[face]) ** 2)) * 127.5
    assert score == pytest.approx(expected, rel=1e-4)
    assert 0 < score and loss == pytest.approx(np.mean((output - targets) ** 2), rel=1e-4)  # the loss stays as it was


@pytest.mark.parametrize('weight', [0.0, 0.5])
def test_the_background_weight_adds_a_hinge_on_output_above_the_margin_where_neither_side_has_a_face(weight):
    graph, network = build(TINY, TrainingSetup(loss='mse', loss_region='face', background_weight=weight))
    rng = np.random.default_rng(3)
    shape = (2, 128, 128, 1)
    targets, inputs = (np.where(rng.random(shape) < 0.4, rng.random(shape), 0).astype(np.float32) for _ in 'ti')
    output = mm_to_network(rng.uniform(-5, 20, shape))   # in mm: below, at and above the 5 mm margin
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        # the loss as a function of the output: fed in place of the network's answer
        loss = session.run(network.loss, {network.output: output, network.targets: targets, network.inputs: inputs})
    face, beside = targets > 0, (targets == 0) & (inputs == 0)
    above = np.maximum(output[beside] - mm_to_network(5.0), 0)
    expected = np.mean((output[face] - targets[face]) ** 2) + weight * np.sum(above ** 2) / face.sum()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_the_segmentation_training_score_is_the_pixel_accuracy_in_percent():
    graph, network = build(dict(TINY, task='segment', residual=False), TrainingSetup())
    rng = np.random.default_rng(2)
    inputs = rng.random((2, 128, 128, 1), np.float32)
    targets = (rng.random((2, 128, 128, 1)) < 0.3).astype(np.float32)
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        output, score = session.run([network.output, network.training_score],
                                    {network.inputs: inputs, network.targets: targets})
    assert score == pytest.approx(100 * np.mean((output >= 0.5) == (targets >= 0.5)), rel=1e-5)
