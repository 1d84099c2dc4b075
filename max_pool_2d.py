"""Max pooling; mirrored as nearest-neighbour upsampling (with an optional skip link)."""
import tensorflow as tf

from layer import Layer


class MaxPool2d(Layer):
    def __init__(self, kernel_size, name, skip_connection=False):
        super().__init__(name, skip_connection)
        self.kernel_size = kernel_size

    def create_layer(self, input):
        return tf.nn.max_pool2d(input, self.kernel_size, self.kernel_size, 'SAME', name=self.name)

    def create_layer_reversed(self, input, prev_layer=None, is_output=False):
        # The skip link adds the encoder's pooled output *before* upsampling, where both have the same shape.
        net = self.add_skip_link(input, prev_layer)
        height, width = net.shape[1] * self.kernel_size, net.shape[2] * self.kernel_size
        return tf.compat.v1.image.resize_nearest_neighbor(net, [height, width], name=f'{self.name}_up')

    def get_description(self):
        return f"M{self.kernel_size}{'+skip' if self.skip_connection else ''}"

    def output_shape(self, input_shape):
        height, width, channels = input_shape
        return -(-height // self.kernel_size), -(-width // self.kernel_size), channels

    def multiply_adds(self, input_shape):
        return 0  # comparisons and copies only
