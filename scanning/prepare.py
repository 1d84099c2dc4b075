"""--mode prepare: raw 3D face scans (OBJ, PLY, and BU-3DFE .wrl, Bosphorus .bnt, FRGC .abs) -> depth images
under the convention, ready for --mode infer.

    python convworking.py --mode prepare --input scans/ --output prepared/ [--units mm]

For every NAME.obj / .ply / .wrl / .bnt / .abs of --input (a file, or a folder, not searched recursively) it writes
    DIR/NAME.png           the depth image (16-bit, 0.1 mm, convention version 1; scan_alignment.py),
    DIR/previews/NAME.png  the scan seen from the front as given, after alignment, and the depth image.
Refused before anything is written, as infer does: a missing input, a folder without scans, an output that
is the input's folder or already holds a file the run would write. A scan that cannot be read or is no face
is refused when it is the only file; in a folder it is skipped with one line, and the run ends with exit
status 2. No TensorFlow here: preparing needs no network.
"""
import os
import sys
import time

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from depth.convention import FULL_SCALE_MM, IMAGE_CENTRE, IMAGE_SIZE, PIXEL_PITCH_MM
from depth.dataset import DataError
from depth.png import write_depth_png
from evaluation.plotting import PREVIEW_DPI, PREVIEW_FOLDER, height_colour_bar, lit_relief
from faces.model import DEFAULT_FACE_MODEL, FaceModelError, load_face_model
from scanning.alignment import MM_PER_SCAN_UNIT, ScanError, face_template, prepare_scan
from scanning.mesh_io import SCAN_SUFFIXES, MeshError, is_scan_file, read_scan
from support.command_line import PROGRAM, display_name, say
from support.safe_files import atomic_write, locked_folder, remove_leftovers

SUFFIX_LIST = ', '.join(SCAN_SUFFIXES)
PREVIEW_POINTS = 20000  # enough to see the scan's shape; drawing every point of a big scan only costs time


def scan_paths(path):
    """The scans to prepare: the file itself, or the folder's scan files (SCAN_SUFFIXES) in name order."""
    if not os.path.exists(path):
        raise DataError(f"{path}: not found (--input takes a 3D scan ({SUFFIX_LIST}) or a folder of them)")
    if os.path.isdir(path):
        paths = sorted(os.path.join(path, name) for name in os.listdir(path) if is_scan_file(os.path.join(path, name)))
        if not paths:
            raise DataError(f"{path}: holds no 3D scans ({SUFFIX_LIST})")
        return paths
    if not is_scan_file(path):
        raise DataError(f"{path}: not a 3D scan file (prepare reads {SUFFIX_LIST})")
    return [path]


def result_paths(scan_path, output_dir):
    name = os.path.splitext(os.path.basename(scan_path))[0] + '.png'
    return os.path.join(output_dir, name), os.path.join(output_dir, PREVIEW_FOLDER, name)


def check_output(input_path, paths, output_dir):
    """Refuse an output that is not a folder, is the input's folder, or holds a file this run would write.
    Two scans of one name (a.obj, a.wrl) would write the same image: refused too."""
    input_dir = input_path if os.path.isdir(input_path) else os.path.dirname(input_path) or '.'
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise DataError(f"{output_dir}: exists and is not a folder (--output takes a folder)")
    if os.path.realpath(output_dir) == os.path.realpath(input_dir):
        raise DataError(f"{output_dir}: is the input's folder; give another --output folder")
    targets = [result_paths(path, output_dir)[0] for path in paths]
    if len(set(targets)) < len(targets):
        twice = next(target for target in targets if targets.count(target) > 1)
        raise DataError(f"{twice}: two scans of the same name would write it; rename one of them")
    existing = [target for path in paths for target in result_paths(path, output_dir) if os.path.lexists(target)]
    if existing:
        raise DataError(f"{existing[0]}: already exists ({len(existing)} of the files this run would write "
                        "exist); prepare never overwrites: remove them or give another --output folder")


class Preview:
    """The scan from the front as given | after alignment, the image's square outlined | the depth image, lit as
    the results grids draw it, with its colour bar and axes in mm."""

    def __init__(self):
        self.figure = Figure(figsize=(11, 3.6), dpi=PREVIEW_DPI, layout='constrained')
        self.axes = self.figure.subplots(1, 3)
        half = (IMAGE_CENTRE + 0.5) * PIXEL_PITCH_MM   # the image's edge, from the nose tip
        self.norm = Normalize(0, FULL_SCALE_MM)     # the convention's range: one scale for every scan
        blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
        # The depth panel is made once (the scatter panels are redrawn): its colour bar must not pile up.
        self.depth = self.axes[2].imshow(lit_relief(blank, self.norm), extent=(-half, half, -half, half))
        self.axes[2].set_title(f'depth image {IMAGE_SIZE} x {IMAGE_SIZE}, 1.5 mm pixels', fontsize=9)
        self.axes[2].set_ylabel('y (mm)', fontsize=8)
        height_colour_bar(self.figure, self.norm, self.axes[2], shrink=0.9)

    def save(self, path, prepared, title):
        for axis in self.axes[:2]:
            axis.clear()
        chosen = np.random.default_rng(0).permutation(len(prepared.points_mm))[:PREVIEW_POINTS]
        chosen = chosen[np.argsort(prepared.framed_mm[chosen, 2])]  # the front-most drawn last, on top
        given, framed, kept = prepared.points_mm[chosen], prepared.framed_mm[chosen], prepared.kept[chosen]
        self.axes[0].scatter(given[:, 0], given[:, 1], c=given[:, 2], s=0.3, cmap='gray')
        self.axes[0].set_title(f'scan as given ({prepared.units} -> mm)', fontsize=9)
        self.axes[1].scatter(framed[~kept, 0], framed[~kept, 1], c='tab:red', s=0.3)
        self.axes[1].scatter(framed[kept, 0], framed[kept, 1], c=framed[kept, 2], s=0.3, cmap='gray')
        half = (IMAGE_CENTRE + 0.5) * PIXEL_PITCH_MM
        self.axes[1].plot([-half, half, half, -half, -half], [-half, -half, half, half, -half], 'c-', lw=0.8)
        self.axes[1].plot(0, 0, 'c+', ms=8)
        self.axes[1].set_title('aligned, nose tip at 0 (red: cropped)', fontsize=9)
        self.depth.set_data(lit_relief(prepared.depth_mm, self.norm))
        for axis in self.axes[:2]:
            axis.set_aspect('equal')
        for axis in self.axes:
            axis.set_xlabel('x (mm)', fontsize=8)
            axis.tick_params(labelsize=7)
        self.figure.suptitle(title, fontsize=9, parse_math=False)  # a $ in a file name is no formula
        with atomic_write(path) as file:
            self.figure.savefig(file, format='png')


def describe(prepared):
    registration = prepared.registration
    return (f'{prepared.units}, fit {registration.residual_mm:.2f} mm over '
            f'{100 * registration.inlier_fraction:.0f} % of the face, '
            f'{prepared.kept.mean() * 100:.0f} % of the points kept')


def prepare_files(input_path, output_dir, units):
    """--mode prepare: every scan of input_path -> output_dir (see the module doc), in `units` (or 'auto')."""
    paths = scan_paths(input_path)
    check_output(input_path, paths, output_dir)
    try:
        template = face_template(load_face_model(DEFAULT_FACE_MODEL))
    except FaceModelError as error:
        raise DataError(str(error)) from None
    # Checked again once the folder is held: another run may have written there meanwhile.
    with locked_folder(output_dir, '--output folder'):
        check_output(input_path, paths, output_dir)
        for folder in (output_dir, os.path.join(output_dir, PREVIEW_FOLDER)):
            remove_leftovers(folder, say)
        write_prepared(paths, template, input_path, output_dir, None if units == 'auto' else units)


def write_prepared(paths, template, input_path, output_dir, units):
    single_file = not os.path.isdir(input_path)
    preview, skipped = Preview(), []
    # Registration takes seconds per scan: say so before the first, not only after it.
    print(f"{PROGRAM}: prepare {len(paths)} scan(s) into {output_dir} (several seconds each)", flush=True)
    started = time.monotonic()
    for number, path in enumerate(paths, 1):
        try:
            prepared = prepare_scan(read_scan(path), template, units)
        except (MeshError, ScanError) as error:
            message = str(error) if isinstance(error, MeshError) else f"{path}: {error}"
            if single_file:
                raise DataError(message) from None
            print(f"{PROGRAM}: skipped {message}", file=sys.stderr)
            skipped.append(path)
            continue
        image_path, preview_path = result_paths(path, output_dir)
        os.makedirs(os.path.dirname(preview_path), exist_ok=True)
        write_depth_png(image_path, prepared.depth_mm)
        name = display_name(os.path.basename(path))
        preview.save(preview_path, prepared, f'{name}: {describe(prepared)}')
        print(f"{PROGRAM}: prepare {number}/{len(paths)} {name} -> {display_name(image_path)} "
              f"({describe(prepared)})", flush=True)
    print(summary(len(paths), len(skipped), time.monotonic() - started, output_dir))
    if skipped:
        raise DataError(f"{len(skipped)} of {len(paths)} scan(s) skipped (reported above)"
                        + ('' if len(skipped) < len(paths) else '; nothing was written'))


def summary(total, skipped, seconds, output_dir):
    """The closing line: counts, seconds per scan, where the files are."""
    prepared = total - skipped
    where = (f"; depth images in {output_dir}, previews in {os.path.join(output_dir, PREVIEW_FOLDER)}"
             if prepared else '')
    return (f"{PROGRAM}: prepared {prepared} of {total} scan(s), {skipped} skipped, in {seconds:.1f} s "
            f"({seconds / total:.1f} s per scan){where}")


UNIT_CHOICES = ('auto', *MM_PER_SCAN_UNIT)
