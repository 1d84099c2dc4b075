"""The Layer idea of Arahusky's SegNet rebuild: every encoder layer also builds its own mirror image; and the
small graph pieces the layers share (leaky ReLU, batch normalisation: tf.nn ops, no Keras).

The network is a list of Layer objects. The encoder calls `create_layer` on each in order; the decoder
walks the same list backwards calling `create_layer_reversed`, so the decoder mirrors the encoder layer by
layer by construction (a convolution becomes a transposed convolution with the same kernel, a max pool
becomes an upsampling).
"""
from abc import ABC, abstractmethod

import tensorflow as tf


class Layer(ABC):
    def __init__(self, name, skip_connection=False):
        self.name = name
        # A skip link adds this layer's encoder output to the decoder's input at the mirrored position,
        # giving the decoder back the detail the encoder squeezed out.
        self.skip_connection = skip_connection

    @abstractmethod
    def create_layer(self, input):
        """Build the encoder side of the layer; returns its output tensor."""

    @abstractmethod
    def create_layer_reversed(self, input, prev_layer=None, is_output=False):
        """Build the decoder side: map a tensor shaped like this layer's output back to its input's shape.

        prev_layer is this layer's encoder output (used by skip links); is_output marks the decoder's last
        layer, which produces the network's output and so gets no activation.
        """

    @abstractmethod
    def get_description(self):
        """A short human-readable description, e.g. 'C7,64,s2'."""

    @abstractmethod
    def output_shape(self, input_shape):
        """(height, width, channels) of the encoder output for an input of that shape (for FLOP counts)."""

    @abstractmethod
    def multiply_adds(self, input_shape):
        """Multiply-adds of the encoder side for one image; the mirrored decoder side costs the same."""

    def add_skip_link(self, input, prev_layer):
        if self.skip_connection and prev_layer is not None:
            return tf.add(input, prev_layer, name=f'{self.name}_skip')
        return input

LEAKY_RELU_ALPHA = 0.2
# The running averages must keep up with weights that move fast in short CPU trainings: with 0.99 they lagged
# so far behind that test-mode outputs were worse than doing nothing (measured; see results/experiments.md).
BATCH_NORM_DECAY = 0.9
BATCH_NORM_EPSILON = 1e-3


def lrelu(x, name=None):
    return tf.nn.leaky_relu(x, alpha=LEAKY_RELU_ALPHA, name=name)


def batch_norm(x, is_training, scope):
    """Batch normalisation honouring `is_training`: a boolean tensor (the training graph's placeholder), or
    False for a graph that only infers.

    Training: normalise with the batch statistics and move the running averages towards them (the update
    runs whenever the training branch runs, so no UPDATE_OPS bookkeeping can be forgotten).
    Inference: normalise with the running averages. The learned offset plays the role of the layer's bias.
    A graph built with is_training=False holds only the inference branch, no tf.cond: export freezes it as it
    is, and tools without control flow (OpenCV's DNN module) read it.
    """
    channels = x.shape[-1]
    with tf.compat.v1.variable_scope(scope):
        offset = tf.compat.v1.get_variable('offset', [channels], initializer=tf.zeros_initializer())
        scale = tf.compat.v1.get_variable('scale', [channels], initializer=tf.ones_initializer())
        moving_mean = tf.compat.v1.get_variable('moving_mean', [channels], trainable=False,
                                                initializer=tf.zeros_initializer())
        moving_variance = tf.compat.v1.get_variable('moving_variance', [channels], trainable=False,
                                                    initializer=tf.ones_initializer())

    def with_batch_statistics():
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=BATCH_NORM_EPSILON,
                                                             is_training=True)
        updates = [tf.compat.v1.assign_sub(moving, (1 - BATCH_NORM_DECAY) * (moving - batch))
                   for moving, batch in ((moving_mean, mean), (moving_variance, variance))]
        with tf.control_dependencies(updates):
            return tf.identity(y)

    def with_moving_statistics():
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, moving_mean, moving_variance,
                                                   epsilon=BATCH_NORM_EPSILON, is_training=False)
        return y

    if is_training is False:
        return with_moving_statistics()
    return tf.cond(is_training, with_batch_statistics, with_moving_statistics)
