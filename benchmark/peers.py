"""The benchmark's peers: convworking.py's default network written again in Keras 3 and in PyTorch, each trained
on in-memory batches, to compare the program's speed with (bench.py runs them as workers).

Kept in step with convworking.Network by hand (layers, tied kernels, batch normalisation, skip links, residual
gate, loss over the face, Adam with the same decay): bench.py's test checks that each has the same number of
weights and moving statistics as the graph.
"""
import os

from benchmark.timing import Pacer
from depth.convention import IMAGE_SIZE

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def worker_keras(spec, channel):
    """The network in Keras 3 (TensorFlow backend), trained with Model.fit on in-memory arrays."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    os.environ['KERAS_BACKEND'] = 'tensorflow'
    import numpy as np
    import keras
    from keras import layers, ops

    keras.mixed_precision.set_global_policy('mixed_bfloat16' if spec['precision'] == 'bfloat16' else 'float32')
    keras.utils.set_random_seed(0)
    momentum, epsilon, alpha = spec['batch_norm_decay'], spec['batch_norm_epsilon'], spec['leaky_relu_alpha']

    class TiedConv2DTranspose(layers.Layer):
        """The transposed convolution with the kernel of an encoder Conv2D (the layouts agree, as in TF)."""

        def __init__(self, conv, output_shape, use_bias, **kwargs):
            super().__init__(**kwargs)
            self.kernel_of = lambda: conv.kernel      # a function, so Keras does not track conv twice
            self.stride, self.target_shape, self.use_bias = conv.strides, tuple(output_shape), use_bias

        def build(self, input_shape):
            if self.use_bias:
                self.bias = self.add_weight(shape=(self.target_shape[-1],), initializer='zeros', name='bias')

        def call(self, x):
            kernel = ops.cast(self.kernel_of(), self.compute_dtype)
            y = ops.conv_transpose(x, kernel, self.stride, padding='same')
            return y + ops.cast(self.bias, self.compute_dtype) if self.use_bias else y

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *self.target_shape)

    class ResidualGate(layers.Layer):
        def build(self, input_shape):
            self.gate = self.add_weight(shape=(), initializer='zeros', name='gate')

        def call(self, inputs, logits):
            return inputs + self.gate * logits

    def face_mse(y_true, y_pred):
        # Per image: its share of the batch's face-weighted sum, scaled so that Keras's mean over the batch
        # is exactly the project's loss: sum(error^2 * face) / sum(face) over the whole batch.
        y_pred = ops.cast(y_pred, 'float32')
        face = ops.cast(y_true > 0, 'float32')
        per_image = ops.sum(ops.square(y_pred - y_true) * face, axis=(1, 2, 3))
        return per_image * ops.cast(ops.shape(y_true)[0], 'float32') / ops.maximum(ops.sum(face), 1.0)

    inputs = keras.Input(IMAGE_SHAPE)
    net, convs, outputs, shapes = inputs, {}, {}, {}
    for layer in spec['layers']:
        shapes[layer['name']] = tuple(net.shape[1:])
        if layer['kind'] == 'conv':
            conv = convs[layer['name']] = layers.Conv2D(layer['channels'], layer['kernel'], layer['stride'], 'same',
                                                        use_bias=not layer['batch_norm'], name=layer['name'])
            net = conv(net)
            net = layers.BatchNormalization(momentum=momentum, epsilon=epsilon)(net) if layer['batch_norm'] else net
            net = layers.LeakyReLU(alpha)(net)
        else:
            net = layers.MaxPooling2D(layer['size'], padding='same')(net)
        outputs[layer['name']] = net
    for index, layer in reversed(list(enumerate(spec['layers']))):
        if layer['skip']:
            net = layers.Add()([net, outputs[layer['name']]])
        if layer['kind'] == 'conv':
            is_output = index == 0
            net = TiedConv2DTranspose(convs[layer['name']], shapes[layer['name']],
                                      use_bias=is_output or not layer['batch_norm'],
                                      name=f"{layer['name']}_reversed")(net)
            if not is_output:
                if layer['batch_norm']:
                    net = layers.BatchNormalization(momentum=momentum, epsilon=epsilon)(net)
                net = layers.LeakyReLU(alpha)(net)
        else:
            net = layers.UpSampling2D(layer['size'], interpolation='nearest')(net)
    output = ResidualGate(dtype='float32')(inputs, layers.Activation('linear', dtype='float32')(net))
    model = keras.Model(inputs, output)
    learning_rate = keras.optimizers.schedules.PolynomialDecay(spec['lr'], spec['decay_steps'], spec['lr'] / 100)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, epsilon=1e-8), loss=face_mse)
    kernels = [w for w in model.trainable_weights if 'kernel' in w.path]

    batch = spec['batch_size']
    pacer = Pacer(channel, 'keras', spec['warmup'], spec['steps'], batch)

    class Paced(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pacer.step_done()

    total_steps = spec['warmup'] + spec['windows'] * spec['steps']
    rng = np.random.default_rng(0)
    x = rng.random((batch * total_steps, *IMAGE_SHAPE), np.float32)
    y = rng.random((batch * total_steps, *IMAGE_SHAPE), np.float32)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Paced()])
    return {'jit_compile': bool(model.jit_compile), 'kernel_variables': len(kernels),
            'parameters': int(model.count_params()), 'first_steps_s': pacer.first_steps,
            'keras_version': keras.__version__}


def worker_torch(spec, channel):
    """The network in PyTorch on the CPU, trained with a plain loop on in-memory tensors."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    alpha, epsilon, decay = spec['leaky_relu_alpha'], spec['batch_norm_epsilon'], spec['batch_norm_decay']

    class Network(nn.Module):
        def __init__(self, layer_list):
            super().__init__()
            self.layer_list = layer_list
            self.convs, self.norms, self.biases = nn.ModuleDict(), nn.ModuleDict(), nn.ParameterDict()
            channels, size = IMAGE_SHAPE[2], IMAGE_SHAPE[0]
            self.sizes = {}
            for index, layer in enumerate(layer_list):
                self.sizes[layer['name']] = size
                if layer['kind'] == 'conv':
                    kernel, stride = layer['kernel'], layer['stride']
                    conv = nn.Conv2d(channels, layer['channels'], kernel, stride, (kernel - 1) // 2,
                                     bias=not layer['batch_norm'])
                    nn.init.xavier_uniform_(conv.weight)
                    self.convs[layer['name']] = conv
                    size = -(-size // stride)
                    if layer['batch_norm']:
                        self.norms[layer['name']] = nn.BatchNorm2d(layer['channels'], epsilon, 1 - decay)
                        if index > 0:
                            self.norms[layer['name'] + '_reversed'] = nn.BatchNorm2d(channels, epsilon, 1 - decay)
                    if index == 0 or not layer['batch_norm']:
                        self.biases[layer['name'] + '_reversed'] = nn.Parameter(torch.zeros(channels))
                    channels = layer['channels']
                else:
                    size = -(-size // layer['size'])
            self.gate = nn.Parameter(torch.zeros(()))

        def forward(self, inputs):
            net, outputs = inputs, {}
            for layer in self.layer_list:
                name = layer['name']
                if layer['kind'] == 'conv':
                    net = self.convs[name](net)
                    net = F.leaky_relu(self.norms[name](net) if name in self.norms else net, alpha)
                else:
                    net = F.max_pool2d(net, layer['size'], ceil_mode=True)
                outputs[name] = net
            for index, layer in reversed(list(enumerate(self.layer_list))):
                name = layer['name']
                if layer['skip']:
                    net = net + outputs[name]
                if layer['kind'] == 'conv':
                    conv, target = self.convs[name], self.sizes[name]
                    stride, padding = conv.stride[0], conv.padding[0]
                    extra = target - ((net.shape[-1] - 1) * stride - 2 * padding + conv.kernel_size[0])
                    net = F.conv_transpose2d(net, conv.weight, None, stride, padding, extra)   # tied kernel
                    reversed_name = name + '_reversed'
                    if reversed_name in self.biases:
                        net = net + self.biases[reversed_name].to(net.dtype)[:, None, None]
                    if index > 0:
                        net = F.leaky_relu(self.norms[reversed_name](net) if reversed_name in self.norms else net,
                                           alpha)
                else:
                    net = F.interpolate(net, scale_factor=layer['size'], mode='nearest')
            return inputs + self.gate * net.float()

    model = Network(spec['layers'])
    optimiser = torch.optim.Adam(model.parameters(), spec['lr'], eps=1e-8)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 1 - 0.99 * min(step, spec['decay_steps']) / spec['decay_steps'])
    bf16 = spec['precision'] == 'bfloat16'
    batch = spec['batch_size']
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((batch, IMAGE_SHAPE[2], *IMAGE_SHAPE[:2]), generator=generator)
    y = torch.rand((batch, IMAGE_SHAPE[2], *IMAGE_SHAPE[:2]), generator=generator)
    model.train()

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            output = model(x)
        face = (y > 0).float()
        loss = ((output.float() - y) ** 2 * face).sum() / face.sum().clamp(min=1)
        loss.backward()
        optimiser.step()
        schedule.step()

    pacer = Pacer(channel, 'torch', spec['warmup'], spec['steps'], batch)
    for _ in range(spec['warmup'] + spec['windows'] * spec['steps']):
        step()
        pacer.step_done()
        if pacer.finished:
            break
    # Parameters as the other two count them: weights and the batch normalisations' moving statistics.
    statistics_ = [b for name, b in model.named_buffers() if not name.endswith('num_batches_tracked')]
    return {'torch_version': torch.__version__, 'threads': torch.get_num_threads(),
            'first_steps_s': pacer.first_steps,
            'parameters': sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in statistics_)}
