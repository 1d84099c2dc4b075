"""Using a trained model: neutralising your own depth images (infer) and exporting it (export).

infer  (--mode infer --input PATH --output DIR [--resize])
  PATH is one .png or a folder of them (not searched recursively). For every input NAME.png it writes
    DIR/NAME.png           the neutralised depth map: same name, same bit depth and same units as the input
                           (16-bit: 0.1 mm, 8-bit: 0.5 mm); heights below --threshold-mm become background 0
                           (the results grid's thresholded row); 8-bit outputs clip at 255 = 127.5 mm;
    DIR/previews/NAME.png  input | output | output - input in mm, with colour bars.
  Refused before anything is written: a missing PATH, a folder without .png files, an output folder that is
  the input's folder, an output folder already holding any of the files the run would write (nothing is
  ever overwritten). Images that are not single-channel 8- or 16-bit PNGs of 128 x 128 pixels are refused
  when PATH is a file; in a folder they are skipped, each reported on one line, the others are written, and
  the run ends with an error (exit status 2) naming how many were skipped.
  --resize resamples images of another size to 128 x 128 (pads to a square with background first, keeps the
  heights in mm, averages face pixels only with face pixels). The output is then 128 x 128. The result is
  meaningful only for images that follow the data set's convention (frame, pixel size, back plane).

export (--mode export --output DIR)
  Writes DIR/frozen_graph.pb (variables folded into constants, inference-mode batch normalisation, only
  `inputs` -> `output`, any batch size), DIR/saved_model/ (signature 'serving_default': 'inputs' -> 'output'),
  DIR/frozen_graph_opencv.pb (the same for cv2.dnn.readNetFromTensorflow, see opencv_graph; left out, with
  the reason in model.json, when OpenCV cannot run it) and DIR/model.json (names, shapes, scale, checkpoint,
  step, validation and test RMSE). Every form is reloaded and must reproduce the checkpoint's output to
  EXPORT_TOLERANCE. Refuses a DIR already holding any of these files.
"""
import collections
import json
import os
import sys

import cv2
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from support.paths import recorded_path, resolve_recorded_path
from support.command_line import PROGRAM
from depth.convention import IMAGE_SIZE
from depth.dataset import DataError
from depth.convention import FULL_SCALE_MM, MM_PER_PNG_UNIT, VERSION, mm_to_network, network_to_mm
from depth.png import DepthImageError, read_depth_png, write_depth_png
from evaluation.plotting import PREVIEW_FOLDER, thresholded
from support.progress import ProgressLine
from support.safe_files import atomic_path, atomic_write, locked_folder, remove_path, write_strict_json

FROZEN_GRAPH_FILE = 'frozen_graph.pb'
OPENCV_GRAPH_FILE = 'frozen_graph_opencv.pb'
SAVED_MODEL_FOLDER = 'saved_model'
MODEL_INFO_FILE = 'model.json'
SIGNATURE_KEY = 'serving_default'
INPUT_NAME, OUTPUT_NAME = 'inputs', 'output'
# The exported forms must reproduce the checkpoint to this (on the network's scale, 1.0 = 127.5 mm).
EXPORT_TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------------------- infer

def input_paths(path):
    """The PNG files to neutralise: the file itself, or the folder's .png files in name order."""
    if not os.path.exists(path):
        raise DataError(f"{path}: not found (--input takes a depth PNG or a folder of them)")
    if os.path.isdir(path):
        names = sorted(name for name in os.listdir(path)
                       if name.lower().endswith('.png') and os.path.isfile(os.path.join(path, name)))
        if not names:
            raise DataError(f"{path}: holds no .png images")
        return [os.path.join(path, name) for name in names]
    if not path.lower().endswith('.png'):
        raise DataError(f"{path}: not a .png file (infer reads single-channel 8- or 16-bit PNGs)")
    return [path]


def output_paths(path, output_dir):
    name = os.path.basename(path)
    return os.path.join(output_dir, name), os.path.join(output_dir, PREVIEW_FOLDER, name)


def check_output_folder(input_path, paths, output_dir):
    """Refuse an output folder that is the input's folder or already holds a file this run would write."""
    input_dir = input_path if os.path.isdir(input_path) else os.path.dirname(input_path) or '.'
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise DataError(f"{output_dir}: exists and is not a folder (--output takes a folder)")
    if os.path.realpath(output_dir) == os.path.realpath(input_dir):
        raise DataError(f"{output_dir}: is the input's folder; give another --output folder "
                        "(outputs keep the input file names)")
    existing = [target for path in paths for target in output_paths(path, output_dir) if os.path.lexists(target)]
    if existing:
        raise DataError(f"{existing[0]}: already exists ({len(existing)} of the files this run would write "
                        "exist); infer never overwrites: remove them or give another --output folder")


def resample_depth(height_mm, size=IMAGE_SIZE):
    """Resample heights (mm) to size x size, keeping the heights in mm.

    The image is first padded to a square with background (centred, so the aspect ratio is kept). Each
    output pixel averages only the face pixels (> 0) it covers, so the background does not pull the face's
    outline down into a ramp; it is background where less than half of its area was face.
    """
    rows, columns = height_mm.shape
    side = max(rows, columns)
    pad_rows, pad_columns = side - rows, side - columns
    square = np.pad(height_mm, ((pad_rows // 2, pad_rows - pad_rows // 2),
                                (pad_columns // 2, pad_columns - pad_columns // 2)))
    face = (square > 0).astype(np.float32)
    total = cv2.resize(square * face, (size, size), interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    return np.where(coverage >= 0.5, total / np.maximum(coverage, 1e-6), 0).astype(np.float32)


DepthImage = collections.namedtuple('DepthImage', 'path height_mm bits note')


def load_depth_image(path, resize):
    """A file as a DepthImage: heights in mm (IMAGE_SIZE x IMAGE_SIZE float32), bit depth, a note if resampled."""
    height_mm, bits = read_depth_png(path)
    rows, columns = height_mm.shape
    if (rows, columns) == (IMAGE_SIZE, IMAGE_SIZE):
        return DepthImage(path, height_mm, bits, '')
    if not resize:
        raise DepthImageError(f"{path}: is {columns} x {rows} pixels, the network takes {IMAGE_SIZE} x "
                              f"{IMAGE_SIZE} (--resize resamples it)")
    return DepthImage(path, resample_depth(height_mm), bits, f', resampled from {columns} x {rows}')


def load_depth_images(paths, resize, skipped, refuse_bad):
    """The readable images of `paths`; the others are reported and added to `skipped` (or, refuse_bad, raised)."""
    images = []
    for path in paths:
        try:
            images.append(load_depth_image(path, resize))
        except DepthImageError as error:
            if refuse_bad:
                raise
            print(f"{PROGRAM}: skipped {error}", file=sys.stderr)
            skipped.append(path)
    return images


class Preview:
    """input | output | output - input (mm): the two heights on one grey scale, the difference in colour.

    One figure serves every image (only its data, colour limits and title change): building a figure per
    image would take most of infer's time.
    """

    def __init__(self):
        self.figure = Figure(figsize=(9, 3.3), dpi=80, layout='constrained')
        axes = self.figure.subplots(1, 3)
        blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
        self.heights = [axis.imshow(blank, cmap='gray', vmin=0, vmax=FULL_SCALE_MM) for axis in axes[:2]]
        self.difference = axes[2].imshow(blank, cmap='RdBu_r', vmin=-10, vmax=10)
        for axis, label in zip(axes, ('input', 'output (neutralised)', 'output - input')):
            axis.set_title(label, fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        self.figure.colorbar(self.heights[1], ax=axes[:2].tolist(), label='height (mm)', shrink=0.85)
        self.figure.colorbar(self.difference, ax=axes[2], label='mm', shrink=0.85)
        self.title = self.figure.suptitle(' ', fontsize=9)
        self.figure.draw_without_rendering()
        self.figure.set_layout_engine('none')  # keep the layout computed once

    def save(self, path, input_mm, output_mm, title):
        high = max(float(input_mm.max()), float(output_mm.max()), 1.0)
        for image, height_mm in zip(self.heights, (input_mm, output_mm)):
            image.set_data(height_mm)
            image.set_clim(0, high)
        difference = output_mm - input_mm
        face = (input_mm > 0) | (output_mm > 0)
        # The 99th percentile keeps a few outline pixels (face in one image, background in the other) from
        # washing out the colours of the expression's change.
        limit = max(float(np.percentile(np.abs(difference[face]), 99)) if face.any() else 0.0, 0.5)
        self.difference.set_data(difference)
        self.difference.set_clim(-limit, limit)
        self.title.set_text(title)
        with atomic_write(path) as file:
            self.figure.savefig(file, format='png')


def write_result(image, output_mm, output_dir, preview):
    """The neutralised depth map in the input's bit depth and units, and its preview."""
    depth_path, preview_path = output_paths(image.path, output_dir)
    write_depth_png(depth_path, output_mm, image.bits)
    preview.save(preview_path, image.height_mm, output_mm, f'{os.path.basename(image.path)} ({image.bits}-bit, '
                                                           f'{MM_PER_PNG_UNIT[image.bits]} mm per unit{image.note})')


def neutralise_files(session, network, input_path, output_dir, resize, batch_size, threshold_mm):
    """--mode infer: neutralise input_path (a PNG or a folder of them) into output_dir (see the module doc),
    batch_size images a run; heights below threshold_mm become background."""
    paths = input_paths(input_path)
    check_output_folder(input_path, paths, output_dir)
    # Checked again once the folder is held: another run may have written there meanwhile.
    with locked_folder(output_dir, '--output folder'):
        check_output_folder(input_path, paths, output_dir)
        write_results(session, network, paths, not os.path.isdir(input_path), output_dir, resize, batch_size,
                      threshold_mm)


def write_results(session, network, paths, single_file, output_dir, resize, batch_size, threshold_mm):
    skipped, written, preview = [], 0, None
    progress = (ProgressLine(len(paths), label=f'{PROGRAM}: infer ', counted=' images', log_interval=10.0)
                if len(paths) > batch_size else None)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = load_depth_images(chunk, resize, skipped, refuse_bad=single_file)
        if images:
            batch = mm_to_network(np.stack([image.height_mm for image in images]))[..., np.newaxis]
            outputs_mm = network_to_mm(session.run(network.output, {network.inputs: batch})[..., 0])
            os.makedirs(os.path.join(output_dir, PREVIEW_FOLDER), exist_ok=True)
            preview = preview or Preview()
            for image, output_mm in zip(images, outputs_mm):
                write_result(image, thresholded(output_mm, threshold_mm), output_dir, preview)
            written += len(images)
        if progress:
            progress.update(start + len(chunk))
    if written:
        print(f"{PROGRAM}: wrote {written} neutralised image(s) to {output_dir} and their previews to "
              f"{os.path.join(output_dir, PREVIEW_FOLDER)}")
    if skipped:
        raise DataError(f"{len(skipped)} of {len(paths)} image(s) skipped (reported above)"
                        + ('' if written else '; nothing was written'))


# ------------------------------------------------------------------------------------------------ export

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


def export_model(session, network, checkpoint, directory, threshold_mm, bfloat16, test_rmse_mm):
    """--mode export: write the frozen graphs, the SavedModel and model.json into `directory`, and check them.
    model.json records threshold_mm (the background threshold infer uses), whether the network computes in
    bfloat16 and the checkpoint's test RMSE (None if not measured)."""
    names = (FROZEN_GRAPH_FILE, OPENCV_GRAPH_FILE, SAVED_MODEL_FOLDER, MODEL_INFO_FILE)
    targets = [os.path.join(directory, name) for name in names]
    check_export_folder(directory, targets)
    graph_def = frozen_inference_graph(session, network)
    # Checked again once the folder is held: another run may have written there meanwhile.
    with locked_folder(directory, '--output folder'):
        check_export_folder(directory, targets)
        try:
            write_export(session, network, checkpoint, graph_def, directory, targets, threshold_mm, bfloat16,
                         test_rmse_mm)
        except BaseException:
            # None of them existed before (checked above): a partial export would only block the rerun.
            for path in targets:
                remove_path(path)
            raise


def check_export_folder(directory, targets):
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise DataError(f"{directory}: exists and is not a folder (--output takes a folder)")
    existing = [path for path in targets if os.path.lexists(path)]
    if existing:
        raise DataError(f"{existing[0]}: already exists; export never overwrites: remove it or give another "
                        "--output folder")


def write_export(session, network, checkpoint, graph_def, directory, targets, threshold_mm, bfloat16, test_rmse_mm):
    """Write and check the exported forms and model.json (see export_model)."""
    frozen_path, opencv_path, saved_model_dir, info_path = targets
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
    if opencv_problem and bfloat16:
        opencv_problem = ('the graph computes in bfloat16 (--bfloat16 adds Cast operations, which OpenCV does not '
                          f'read; export without --bfloat16 for OpenCV, the checkpoint is the same). {opencv_problem}')

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
            'background_threshold_mm': threshold_mm,
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
        'checkpoint': recorded_path(checkpoint),
        'step': int(step),
        'valid_rmse_mm': float(valid_rmse) if np.isfinite(valid_rmse) else None,
        'test_rmse_mm': test_rmse_mm,
        'architecture': network.architecture,
        'bfloat16': bfloat16,
        'max_abs_difference_to_checkpoint': differences,
    }
    write_strict_json(info_path, info)
    written = [FROZEN_GRAPH_FILE] + ([] if opencv_problem else [OPENCV_GRAPH_FILE]) + [f'{SAVED_MODEL_FOLDER}/',
                                                                                   MODEL_INFO_FILE]
    print(f"{PROGRAM}: exported {os.path.basename(checkpoint)} (step {int(step)}) to {directory}: "
          f"{', '.join(written)}; each reproduces the checkpoint to within "
          f"{max(value for value in differences.values() if value is not None):.1g}")
    if opencv_problem:
        print(f"{PROGRAM}: no {OPENCV_GRAPH_FILE}: {opencv_problem}")
