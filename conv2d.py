"""Convolution; mirrored as the transposed convolution with the same (tied) kernel variable."""
import tensorflow as tf

from layer import Layer, batch_norm, lrelu


class Conv2d(Layer):
    def __init__(self, kernel_size, stride, output_channels, name, is_training, use_batch_norm=True,
                 skip_connection=False):
        super().__init__(name, skip_connection)
        self.kernel_size = kernel_size
        self.stride = stride
        self.output_channels = output_channels
        self.is_training = is_training
        self.use_batch_norm = use_batch_norm
        self.kernel = None        # created by create_layer, reused by create_layer_reversed
        self.input_shape = None   # the decoder side restores this shape

    def create_layer(self, input):
        self.input_shape = input.shape.as_list()
        with tf.compat.v1.variable_scope(self.name):
            self.kernel = tf.compat.v1.get_variable(
                'kernel', [self.kernel_size, self.kernel_size, self.input_shape[3], self.output_channels],
                initializer=tf.compat.v1.glorot_uniform_initializer())
            net = tf.nn.conv2d(input, self.compute_kernel(input.dtype), self.stride, 'SAME')
            return lrelu(self._normalise_or_bias(net, self.output_channels))

    def create_layer_reversed(self, input, prev_layer=None, is_output=False):
        net = self.add_skip_link(input, prev_layer)
        _, height, width, channels = self.input_shape
        with tf.compat.v1.variable_scope(f'{self.name}_reversed'):
            # conv2d_transpose reads the kernel as [h, w, out, in]: exactly the forward kernel's layout, so
            # the same variable maps this layer's output shape back to its input shape.
            output_shape = tf.stack([tf.shape(net)[0], height, width, channels])
            net = tf.nn.conv2d_transpose(net, self.compute_kernel(net.dtype), output_shape, self.stride, 'SAME')
            net.set_shape([None, height, width, channels])
            if is_output:
                return self._bias(net, channels)
            return lrelu(self._normalise_or_bias(net, channels))

    def compute_kernel(self, dtype):
        """The kernel in the precision of the tensor it meets (bfloat16 compute keeps float32 weights)."""
        return self.kernel if dtype == self.kernel.dtype else tf.cast(self.kernel, dtype)

    def _normalise_or_bias(self, net, channels):
        if self.use_batch_norm:
            return batch_norm(net, self.is_training, 'batch_norm')
        return self._bias(net, channels)

    @staticmethod
    def _bias(net, channels):
        bias = tf.compat.v1.get_variable('bias', [channels], initializer=tf.zeros_initializer())
        return tf.nn.bias_add(net, tf.cast(bias, net.dtype))

    def get_description(self):
        return (f"C{self.kernel_size},{self.output_channels},s{self.stride}"
                f"{'+skip' if self.skip_connection else ''}")

    def output_shape(self, input_shape):
        height, width, _ = input_shape
        return -(-height // self.stride), -(-width // self.stride), self.output_channels

    def multiply_adds(self, input_shape):
        height, width, channels = self.output_shape(input_shape)
        return height * width * channels * self.kernel_size ** 2 * input_shape[2]
