"""--mode infer: neutralising your own depth images with a trained model.

infer  (--mode infer --input PATH --output DIR [--resize])
  PATH is one .png or a folder of them (not searched recursively). For every input NAME.png it writes
    DIR/NAME.png           the neutralised depth map: same name, same bit depth and same units as the input
                           (16-bit: 0.1 mm, 8-bit: 0.5 mm); what is not surface becomes background 0, as
                           --background decides it (inference/background.py; the results grid's row
                           'background removed'); 8-bit outputs clip at 255 = 127.5 mm;
    DIR/previews/NAME.png  input | output | output - input in mm, with colour bars: for the first --previews
                           inputs only (default 8; drawing one takes far longer than the network's work).
  Refused before anything is written: a missing PATH, a folder without .png files, an output folder that is
  the input's folder, an output folder already holding any of the files the run would write (nothing is
  ever overwritten). Images that are not single-channel 8- or 16-bit PNGs of 128 x 128 pixels, or not
  regular files (a FIFO named x.png), are refused when PATH is a file; in a folder they are skipped, each
  reported on one line, the others are written, and the run ends with an error (exit status 2) naming how
  many were skipped. What a killed run left in DIR (temporaries of files half written) is removed first.
  --resize resamples images of another size to 128 x 128 (pads to a square with background first, keeps the
  heights in mm, averages face pixels only with face pixels). The output is then 128 x 128. The result is
  meaningful only for images that follow the data set's convention (frame, pixel size, back plane).
"""
import collections
import os
import sys
import time

import cv2
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from depth.convention import FULL_SCALE_MM, IMAGE_SIZE, MM_PER_PNG_UNIT, mm_to_network, network_to_mm
from depth.dataset import DataError
from depth.png import DepthImageError, read_depth_png, write_depth_png
from evaluation.plotting import PREVIEW_DPI, PREVIEW_FOLDER, height_colour_bar, lit_relief
from support.command_line import PROGRAM, display_name, say
from support.progress import ProgressLine
from support.safe_files import atomic_write, locked_folder, remove_leftovers


def input_paths(path):
    """The PNG files to neutralise: the file itself, or the folder's .png files in name order (anything named
    .png but a folder: what is not a regular file is skipped when read)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: not found (--input takes a depth PNG or a folder of them)")
    if os.path.isdir(path):
        names = sorted(name for name in os.listdir(path)
                       if name.lower().endswith('.png') and not os.path.isdir(os.path.join(path, name)))
        if not names:
            raise DataError(f"{path}: holds no .png images")
        return [os.path.join(path, name) for name in names]
    if not path.lower().endswith('.png'):
        raise DataError(f"{path}: not a .png file (infer reads single-channel 8- or 16-bit PNGs)")
    return [path]


def output_paths(path, output_dir):
    name = os.path.basename(path)
    return os.path.join(output_dir, name), os.path.join(output_dir, PREVIEW_FOLDER, name)


def check_output_folder(input_path, paths, output_dir, previews):
    """Refuse an output folder that is the input's folder or already holds a file this run would write (the
    previews of the first `previews` paths)."""
    input_dir = input_path if os.path.isdir(input_path) else os.path.dirname(input_path) or '.'
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise DataError(f"{output_dir}: exists and is not a folder (--output takes a folder)")
    if os.path.realpath(output_dir) == os.path.realpath(input_dir):
        raise DataError(f"{output_dir}: is the input's folder; give another --output folder "
                        "(outputs keep the input file names)")
    targets = [output_paths(path, output_dir)[0] for path in paths]
    targets += [output_paths(path, output_dir)[1] for path in paths[:previews]]
    existing = [target for target in targets if os.path.lexists(target)]
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
    """input | output: lit reliefs on one height scale, as the results grids draw them | output - input (mm).

    One figure serves every image (only its data, colour limits and title change): building a figure per
    image would take most of its time.
    """

    def __init__(self):
        self.figure = Figure(figsize=(9, 3.3), dpi=PREVIEW_DPI, layout='constrained')
        axes = self.figure.subplots(1, 3)
        blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
        self.heights = [axis.imshow(lit_relief(blank, Normalize(0, 1))) for axis in axes[:2]]
        self.difference = axes[2].imshow(blank, cmap='RdBu_r', vmin=-10, vmax=10)
        for axis, label in zip(axes, ('input', 'output (neutralised)', 'output - input')):
            axis.set_title(label, fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        self.height_scale = height_colour_bar(self.figure, Normalize(0, FULL_SCALE_MM), axes[:2].tolist(),
                                              shrink=0.85).mappable
        self.figure.colorbar(self.difference, ax=axes[2], label='output - input (mm)', shrink=0.85)
        self.title = self.figure.suptitle(' ', fontsize=9, parse_math=False)  # a $ in a file name is no formula
        self.figure.draw_without_rendering()
        self.figure.set_layout_engine('none')  # keep the layout computed once

    def save(self, path, input_mm, output_mm, title):
        norm = Normalize(0, max(float(input_mm.max()), float(output_mm.max()), 1.0))
        for image, height_mm in zip(self.heights, (input_mm, output_mm)):
            image.set_data(lit_relief(height_mm, norm))
        self.height_scale.set_clim(norm.vmin, norm.vmax)
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
    """The neutralised depth map in the input's bit depth and units, and its preview (None: none)."""
    depth_path, preview_path = output_paths(image.path, output_dir)
    write_depth_png(depth_path, output_mm, image.bits)
    if preview is None:
        return
    os.makedirs(os.path.dirname(preview_path), exist_ok=True)
    preview.save(preview_path, image.height_mm, output_mm, f'{display_name(os.path.basename(image.path))} '
                                                           f'({image.bits}-bit, {MM_PER_PNG_UNIT[image.bits]} mm per '
                                                           f'unit{image.note})')


def neutralise_files(session, network, input_path, output_dir, resize, batch_size, background, previews):
    """--mode infer: neutralise input_path (a PNG or a folder of them) into output_dir (see the module doc),
    batch_size images a run, with previews of the first `previews`; `background`
    (inference.background.Background) decides which pixels of each output are background."""
    paths = input_paths(input_path)
    check_output_folder(input_path, paths, output_dir, previews)
    # Checked again once the folder is held: another run may have written there meanwhile.
    with locked_folder(output_dir, '--output folder'):
        check_output_folder(input_path, paths, output_dir, previews)
        for folder in (output_dir, os.path.join(output_dir, PREVIEW_FOLDER)):
            remove_leftovers(folder, say)
        write_results(session, network, paths, not os.path.isdir(input_path), output_dir, resize, batch_size,
                      background, previews)


def write_results(session, network, paths, single_file, output_dir, resize, batch_size, background, previews):
    skipped, written, drawn, preview = [], 0, 0, None
    with_preview = set(paths[:previews])
    progress = (ProgressLine(len(paths), label=f'{PROGRAM}: infer ', counted=' images', log_interval=10.0)
                if len(paths) > batch_size else None)
    started = time.monotonic()
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = load_depth_images(chunk, resize, skipped, refuse_bad=single_file)
        if images:
            inputs_mm = np.stack([image.height_mm for image in images])
            batch = mm_to_network(inputs_mm)[..., np.newaxis]
            outputs_mm = network_to_mm(session.run(network.output, {network.inputs: batch})[..., 0])
            for image, output_mm in zip(images, background.apply(outputs_mm, inputs_mm)):
                # A preview takes far longer to draw than the network takes to compute: the first few only.
                preview = (preview or Preview()) if image.path in with_preview else None
                write_result(image, output_mm, output_dir, preview)
                drawn += preview is not None
            written += len(images)
        if progress:
            progress.update(start + len(chunk))
    if written:
        seconds = time.monotonic() - started
        previews_dir = display_name(os.path.join(output_dir, PREVIEW_FOLDER))
        print(f"{PROGRAM}: wrote {written} neutralised image(s) to {display_name(output_dir)} in {seconds:.1f} s "
              f"({written / max(seconds, 1e-9):.1f} img/s)" + (f", previews of the first {drawn} in {previews_dir}"
                                                                  if drawn else ''))
    if skipped:
        raise DataError(f"{len(skipped)} of {len(paths)} image(s) skipped (reported above)"
                        + ('' if written else '; nothing was written'))
