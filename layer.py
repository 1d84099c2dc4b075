"""The Layer idea of Arahusky's SegNet rebuild: every encoder layer also builds its own mirror image.

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
