"""--mode export: a trained model in forms that need none of this code.

export (--mode export --output DIR)
  Writes DIR/frozen_graph.pb (variables folded into constants, inference-mode batch normalisation, only
  `inputs` -> `output`, any batch size), DIR/saved_model/ (signature 'serving_default': 'inputs' -> 'output'),
  DIR/frozen_graph_opencv.pb (the same for cv2.dnn.readNetFromTensorflow, see opencv_graph; left out, with
  the reason in model.json, when OpenCV cannot run it), with --background mask (the default) the mask network
  that decides infer's background as DIR/mask_frozen_graph.pb, and DIR/model.json (names, shapes, scale,
  checkpoint, step, validation and test RMSE, the background rule). Every form is reloaded and must reproduce the
  checkpoint's output to EXPORT_TOLERANCE. Everything is written into a hidden folder beside DIR
  (.DIR.partial-PID), renamed to DIR once complete: an export is whole or absent, however it stops (kill -9
  included), and the next export there removes what a killed one left. Refuses a DIR that exists, unless it is
  an empty folder.
"""
import json
import os

import cv2
import numpy as np
import tensorflow as tf

from depth.convention import FULL_SCALE_MM, IMAGE_SIZE, MM_PER_PNG_UNIT, VERSION, mm_to_network
from depth.dataset import DataError
from support.command_line import PROGRAM, say
from support.paths import recorded_path, resolve_recorded_path
from support.safe_files import atomic_path, atomic_write, remove_leftovers, write_strict_json

FROZEN_GRAPH_FILE = 'frozen_graph.pb'
MASK_GRAPH_FILE = 'mask_frozen_graph.pb'   # the mask network, with --background mask
OPENCV_GRAPH_FILE = 'frozen_graph_opencv.pb'
SAVED_MODEL_FOLDER = 'saved_model'
MODEL_INFO_FILE = 'model.json'
SIGNATURE_KEY = 'serving_default'
INPUT_NAME, OUTPUT_NAME = 'inputs', 'output'
# The exported forms must reproduce the checkpoint to this (on the network's scale, 1.0 = 127.5 mm).
EXPORT_TOLERANCE = 1e-4
# model.json: what the exported output still needs to become what infer writes
BACKGROUND_NOTES = {
    'mask': f"infer keeps an output pixel where the mask network ({MASK_GRAPH_FILE}: the same inputs, output the "
            "probability that the neutral face covers each pixel) gives at least mask_probability and the output is "
            "at least inside_threshold_mm high, and writes 0 elsewhere (inference/background.py)",
    'input': "infer keeps an output pixel where the input has a face (holes it encloses included) and the output is "
             "at least min(threshold_mm, inside_threshold_mm) high, or within near_input_px of it and at least "
             "threshold_mm high, and writes 0 elsewhere (inference/background.py)",
}


def frozen_inference_graph(session, network):
    """GraphDef of inputs -> output with the variables as constants. The network is built for export
    (is_training fixed to False): batch normalisation reads its moving averages, and no control flow is left
    for the tools that cannot read it."""
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
        session, session.graph.as_graph_def(), [OUTPUT_NAME])
    # The variables' reads became Identity nodes: splice them out (a smaller graph other tools read more easily).
    graph_def = tf.compat.v1.graph_util.remove_training_nodes(frozen, protected_nodes=[INPUT_NAME, OUTPUT_NAME])
    graph_def.library.CopyFrom(frozen.library)  # remove_training_nodes drops it (--standardize's map_fn needs it)
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [OUTPUT_NAME])
    if any(node.op in ('If', 'StatelessIf') for node in graph_def.node):
        raise RuntimeError("the frozen graph still holds a tf.cond (If operation)")
    placeholders = [node.name for node in graph_def.node if node.op.startswith('Placeholder')]
    if placeholders != [INPUT_NAME]:
        raise RuntimeError(f"the frozen graph's placeholders are {placeholders}, expected only {INPUT_NAME}")
    return graph_def


def run_frozen_graph(graph_def, batch):
    """Run a frozen GraphDef the way a user without this code would (plain import_graph_def)."""
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(f'{OUTPUT_NAME}:0', {f'{INPUT_NAME}:0': batch})


def write_saved_model(graph_def, directory):
    """A SavedModel of the frozen graph (weights as constants): signature 'serving_default' inputs -> output."""
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        inputs, output = graph.get_tensor_by_name(f'{INPUT_NAME}:0'), graph.get_tensor_by_name(f'{OUTPUT_NAME}:0')
        signature = tf.compat.v1.saved_model.predict_signature_def({INPUT_NAME: inputs}, {OUTPUT_NAME: output})
        builder = tf.compat.v1.saved_model.Builder(directory)
        with tf.compat.v1.Session(graph=graph) as session:
            builder.add_meta_graph_and_variables(session, [tf.saved_model.SERVING],
                                                 signature_def_map={SIGNATURE_KEY: signature},
                                                 strip_default_attrs=True)
        builder.save()


def run_saved_model(directory, batch):
    """Run the SavedModel's serving signature in a fresh graph (tf.compat.v1 loader: works in graph mode)."""
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], directory)
        signature = meta_graph.signature_def[SIGNATURE_KEY]
        return session.run(signature.outputs[OUTPUT_NAME].name, {signature.inputs[INPUT_NAME].name: batch})


def rmse_on_test_split(checkpoint, results_dir, data_dir):
    """The test RMSE (mm) of results_dir/test_metrics.json if it was measured for this checkpoint on the test
    split of data_dir, else None."""
    path = os.path.join(results_dir, 'test_metrics.json')
    try:
        with open(path) as file:
            metrics = json.load(file)
    except (OSError, ValueError):
        return None
    measured = {key: resolve_recorded_path(str(metrics.get(key))) for key in ('checkpoint', 'data')}
    same = measured == {'checkpoint': os.path.abspath(checkpoint), 'data': os.path.abspath(data_dir)}
    return metrics.get('rmse_mm') if same else None


def verification_batch(count=2, seed=0):
    """Two synthetic dome-shaped 'faces' on the network's scale, enough to compare the exported forms."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    images = []
    for _ in range(count):
        centre, radius = rng.uniform(54, 74, 2), rng.uniform(30, 45)
        dome = 2 * np.sqrt(np.clip(radius ** 2 - (rows - centre[0]) ** 2 - (columns - centre[1]) ** 2, 0, None))
        images.append(np.where(dome > 0, dome + 40 + rng.normal(0, 1, dome.shape), 0))
    return mm_to_network(np.stack(images))[..., np.newaxis]


def opencv_graph(graph_def):
    """The frozen graph as OpenCV's DNN module reads it (cv2.dnn.readNetFromTensorflow): same arithmetic.

    Two export-only changes. (1) The transposed convolutions' output shapes, built at run time from the
    batch size (tf.stack of tf.shape), become constants for a batch of 1: OpenCV's importer needs a constant
    there (it uses only the height and width, so OpenCV still runs N x 1 x 128 x 128 blobs; TensorFlow runs
    this graph for one image at a time). (2) Every constant read by several operations gets one copy per
    reader: the decoder reuses the encoder's kernels, and OpenCV frees a kernel's data once the first
    convolution has read it, so the transposed convolution sharing it would find it empty.
    """
    shape_nodes = sorted({node.input[0].split(':')[0] for node in graph_def.node
                          if node.op == 'Conv2DBackpropInput'})
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as session:
            shapes = session.run([f'{name}:0' for name in shape_nodes],
                                 {f'{INPUT_NAME}:0': np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)})
    fixed = {name: np.asarray(shape, np.int32) for name, shape in zip(shape_nodes, shapes)}
    result = tf.compat.v1.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        new = result.node.add()
        if node.name in fixed:
            new.name, new.op = node.name, 'Const'
            new.attr['dtype'].type = tf.int32.as_datatype_enum
            new.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(fixed[node.name]))
        else:
            new.CopyFrom(node)
        if node.name == INPUT_NAME:
            new.attr['shape'].shape.CopyFrom(tf.TensorShape([1, IMAGE_SIZE, IMAGE_SIZE, 1]).as_proto())
    result = tf.compat.v1.graph_util.extract_sub_graph(result, [OUTPUT_NAME])
    constants = {node.name: node for node in result.node if node.op == 'Const'}
    readers = {}
    for node in result.node:
        for name in node.input:
            if name in constants:
                readers[name] = readers.get(name, 0) + 1
    shared = {name for name, count in readers.items() if count > 1}
    untied = tf.compat.v1.GraphDef()
    untied.versions.CopyFrom(result.versions)
    for node in result.node:
        if node.name in shared:
            continue
        new = untied.node.add()
        new.CopyFrom(node)
        for position, name in enumerate(node.input):
            if name in shared:
                copy = untied.node.add()
                copy.CopyFrom(constants[name])
                copy.name = new.input[position] = f'{name}/for_{node.name}'
    return untied


def run_opencv(path, batch):
    """The OpenCV DNN module's output for a batch (NHWC in and out; OpenCV itself takes and gives NCHW)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its parser logs every failed attempt
    try:
        net = cv2.dnn.readNetFromTensorflow(path)
        net.setInput(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        return net.forward().transpose(0, 2, 3, 1)
    finally:
        cv2.utils.logging.setLogLevel(level)


def try_opencv_export(graph_def, path, batch, expected):
    """Write the OpenCV graph and check it with cv2.dnn: (max abs difference, None) or (None, the reason).

    Not being readable by OpenCV is not an error of the export (a bfloat16 network's casts, for instance, are
    not supported): the file is then removed and the reason goes into model.json.
    """
    if not hasattr(cv2.dnn, 'readNetFromTensorflow'):
        return None, (f'OpenCV {cv2.__version__} has no cv2.dnn.readNetFromTensorflow (OpenCV 5.1 removed it): '
                      'the OpenCV graph needs an OpenCV before 5.1, as requirements.txt asks')
    try:
        with atomic_write(path) as file:
            file.write(opencv_graph(graph_def).SerializeToString())
        difference = float(np.max(np.abs(run_opencv(path, batch) - expected)))
    except (cv2.error, ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    else:
        if difference < EXPORT_TOLERANCE:
            return difference, None
        reason = f'OpenCV {cv2.__version__} runs it but differs from the checkpoint by {difference:.3g}'
    if os.path.exists(path):
        os.remove(path)
    return None, f'OpenCV {cv2.__version__} cannot use it: {reason}'


def export_model(session, network, checkpoint, directory, background, bfloat16, test_rmse_mm, mask=None):
    """--mode export: write the frozen graphs, the SavedModel and model.json into `directory`, and check them.
    model.json records how infer decides the background (`background`: inference.background's description),
    whether the network computes in bfloat16 and the checkpoint's test RMSE (None if not measured). `mask`: the
    mask network's (session, network) built for export, written as MASK_GRAPH_FILE (None: no mask network)."""
    check_export_folder(directory)
    graph_def = frozen_inference_graph(session, network)
    parent, name = os.path.split(os.path.normpath(directory))
    remove_leftovers(parent or '.', say, of=name)
    # A hidden folder renamed to `directory` once complete (see the module doc). The rename fails, naming
    # `directory`, if another export made it meanwhile (an empty folder is replaced).
    with atomic_path(directory) as staging:
        os.makedirs(staging)
        if mask is not None:
            background = dict(background, **write_mask_graph(*mask, staging))
        info = write_export(session, network, checkpoint, graph_def, staging, background, bfloat16, test_rmse_mm)
    opencv = info['opencv_graph']
    written = [FROZEN_GRAPH_FILE, *([opencv['file']] if opencv['file'] else []), f'{SAVED_MODEL_FOLDER}/',
               *([MASK_GRAPH_FILE] if mask is not None else []), MODEL_INFO_FILE]
    differences = [value for value in info['max_abs_difference_to_checkpoint'].values() if value is not None]
    print(f"{PROGRAM}: exported {os.path.basename(checkpoint)} (step {info['step']}) to {directory}: "
          f"{', '.join(written)}; each reproduces the checkpoint to within {max(differences):.1g}")
    if not opencv['file']:
        print(f"{PROGRAM}: no {OPENCV_GRAPH_FILE}: {opencv['note']}")


def write_mask_graph(session, network, directory):
    """The mask network as a frozen graph in `directory`, reloaded and checked against the checkpoint as the
    remover's forms are; returns what model.json's background records of it."""
    graph_def = frozen_inference_graph(session, network)
    with atomic_write(os.path.join(directory, MASK_GRAPH_FILE)) as file:
        file.write(graph_def.SerializeToString())
    batch = verification_batch()
    difference = float(np.max(np.abs(run_frozen_graph(graph_def, batch)
                                      - session.run(network.output, {network.inputs: batch}))))
    if not difference < EXPORT_TOLERANCE:
        raise RuntimeError(f"the exported {MASK_GRAPH_FILE} differs from the mask checkpoint by {difference:.3g} "
                           f"(tolerance {EXPORT_TOLERANCE})")
    return {'frozen_graph': MASK_GRAPH_FILE, 'mirror_average': network.mirror_average,
            'max_abs_difference_to_checkpoint': difference}


def check_export_folder(directory):
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise DataError(f"{directory}: exists and is not a folder (--output takes a folder)")
    if os.path.isdir(directory) and os.listdir(directory):
        raise DataError(f"{directory}: already exists; export never overwrites: remove it or give another "
                        "--output folder")


def write_export(session, network, checkpoint, graph_def, directory, background, bfloat16, test_rmse_mm):
    """Write and check the exported forms and model.json (see export_model) into `directory`; returns what
    model.json holds."""
    frozen_path, opencv_path, saved_model_dir, info_path = (
        os.path.join(directory, name) for name in (FROZEN_GRAPH_FILE, OPENCV_GRAPH_FILE, SAVED_MODEL_FOLDER,
                                                   MODEL_INFO_FILE))
    with atomic_write(frozen_path) as file:
        file.write(graph_def.SerializeToString())
    with atomic_path(saved_model_dir) as temporary:
        write_saved_model(graph_def, temporary)

    batch = verification_batch()
    expected = session.run(network.output, {network.inputs: batch})
    differences = {'frozen_graph': float(np.max(np.abs(run_frozen_graph(graph_def, batch) - expected))),
                   'saved_model': float(np.max(np.abs(run_saved_model(saved_model_dir, batch) - expected)))}
    for form, difference in differences.items():
        if not difference < EXPORT_TOLERANCE:
            raise RuntimeError(f"the exported {form} differs from the checkpoint by {difference:.3g} "
                               f"(tolerance {EXPORT_TOLERANCE})")
    differences['opencv_graph'], opencv_problem = try_opencv_export(graph_def, opencv_path, batch, expected)
    # operations OpenCV does not read, of options that change how the checkpoint is run, not the checkpoint
    unread = [(what, option) for given, what, option in (
        (bfloat16, 'Cast operations (--bfloat16)', '--no-bfloat16'),
        (network.mirror_average, 'ReverseV2 operations (--mirror-average)', '--no-mirror-average'),
        (network.deadband_mm, 'Sign and Select operations (--deadband-mm)', '--deadband-mm 0'),
        (network.deadband_relief, 'MaxPool and Select operations (--deadband-relief)', '--deadband-relief 0'))
        if given]
    if opencv_problem and unread:
        opencv_problem = (f"the graph has {' and '.join(what for what, _ in unread)}, which OpenCV does not read; "
                          f"export with {' '.join(option for _, option in unread)} for OpenCV, the checkpoint "
                          f'is the same. {opencv_problem}')

    step, valid_rmse = session.run([network.global_step, network.best_valid_score])
    shape = [None, IMAGE_SIZE, IMAGE_SIZE, 1]
    info = {
        'convention_version': VERSION,
        'input': {'name': INPUT_NAME, 'tensor': f'{INPUT_NAME}:0', 'shape': shape, 'dtype': 'float32'},
        'output': {'name': OUTPUT_NAME, 'tensor': f'{OUTPUT_NAME}:0', 'shape': shape, 'dtype': 'float32'},
        'scale': {
            'full_scale_mm': FULL_SCALE_MM,
            'meaning': f'heights above the back plane: 1.0 = {FULL_SCALE_MM} mm, 0 = background '
                       '(input and output alike)',
            'png_mm_per_unit': {f'{bits}-bit': mm for bits, mm in sorted(MM_PER_PNG_UNIT.items(), reverse=True)},
        },
        'frozen_graph': FROZEN_GRAPH_FILE,
        'saved_model': {'folder': SAVED_MODEL_FOLDER, 'tags': [tf.saved_model.SERVING],
                        'signature': SIGNATURE_KEY},
        'opencv_graph': {
            'file': None if opencv_problem else OPENCV_GRAPH_FILE,
            'note': opencv_problem or (f'cv2.dnn.readNetFromTensorflow (checked with OpenCV {cv2.__version__}); '
                                       'blobs N x 1 x 128 x 128 (NCHW); in TensorFlow this graph takes one '
                                       'image at a time'),
        },
        'background': dict(background, note=BACKGROUND_NOTES[background['rule']]),
        'checkpoint': recorded_path(checkpoint),
        'step': int(step),
        'valid_rmse_mm': float(valid_rmse) if np.isfinite(valid_rmse) else None,
        'test_rmse_mm': test_rmse_mm,
        'architecture': network.architecture,
        'bfloat16': bfloat16,
        'mirror_average': network.mirror_average,
        'deadband_mm': network.deadband_mm,
        'deadband_relief': network.deadband_relief,
        'max_abs_difference_to_checkpoint': differences,
    }
    write_strict_json(info_path, info)
    return info
