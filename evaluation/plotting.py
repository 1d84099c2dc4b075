"""The results grid: rows input, ground truth, output, output as infer writes it (its background removed) and,
for depth, that output's signed error; one example per column.

Depth images are drawn as a lit relief: the colour gives the height (one scale for the whole grid, shown by
its colour bar) and the shading by the surface's normals gives the shape, which plain grey levels hide:
a smile or an open mouth changes the height by a few millimetres out of 150, but turns the surface a lot.
Pixels at or below 0 (no surface) are white, so the output row's faint background, which the next row removes,
stays visible. The error row shows where the written output is too high (red) or too low (blue), including
surface painted beyond the face and face left out.
"""
import os

import numpy as np
from matplotlib import colormaps
# The object-oriented API with the Agg canvas draws off screen without switching pyplot's global backend.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LightSource, Normalize
from matplotlib.figure import Figure

from depth.convention import PIXEL_PITCH_MM, network_to_mm
from evaluation.metrics import EXPRESSION_NAMES, parse_name
from support.command_line import display_name
from support.safe_files import atomic_write

MAX_COLUMNS = 12
ROW_TITLES = ('input', 'ground truth', 'output', 'background removed', 'error')
ERROR_COLOURS = colormaps['RdBu_r']
ERROR_RANGE_MM = 5.0  # the error row's colour scale: +- this many mm (larger errors saturate)
ERROR_LABEL = 'error of the written output (mm)'
PREVIEW_FOLDER = 'previews'     # where infer and prepare put a figure of each image they write
PREVIEW_DPI = 110               # 80 made their labels hard to read
LIGHT = LightSource(azdeg=315, altdeg=45)    # from the upper left, as readers expect of a relief
# Both ends must stand apart from the background's white: gist_earth, used before, ended nearly white, so the
# highest surface (nose tip, lips) looked like no surface.
HEIGHT_COLOURS = colormaps['viridis']
HEIGHT_LABEL = 'height above the back plane (mm)'
BACKGROUND = (1.0, 1.0, 1.0)   # the colour of no surface


def column_label(name):
    """'0103 HA04\\nhappiness' for data set names (subject, expression code and level); else the file's stem, as
    display_name shows it (a name that is not UTF-8 would stop matplotlib)."""
    subject, code, level = parse_name(name)
    if subject is None:
        return display_name(os.path.splitext(os.path.basename(name))[0])[:16]
    return f"{subject} {code}{level}\n{EXPRESSION_NAMES.get(code, '')}"


def lit_relief(height_mm, norm):
    """RGB image of a height map: coloured by height, brightened or darkened by where its surface faces."""
    # with heights in mm and the convention's pixel spacing, the relief is true to shape
    slope_down, slope_right = np.gradient(np.asarray(height_mm, np.float64), PIXEL_PITCH_MM)
    # Rows run downwards, y upwards: the normal of z = h(x, y) is (-dh/dx, -dh/dy, 1) = (-right, +down, 1).
    normals = np.stack([-slope_right, slope_down, np.ones_like(slope_down)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    facing_light = np.clip(normals @ LIGHT.direction, 0, 1)[..., np.newaxis]
    rgb = LIGHT.blend_soft_light(HEIGHT_COLOURS(norm(height_mm))[..., :3], facing_light)
    rgb[height_mm <= 0] = BACKGROUND
    return rgb


def height_colour_bar(figure, norm, axes, **options):
    """The colour bar of lit_relief's heights (mm) beside `axes`."""
    return figure.colorbar(ScalarMappable(norm, HEIGHT_COLOURS), ax=axes, label=HEIGHT_LABEL, **options)


def results_grid_figure(rows, names, title, depth=True):
    """The grid as a matplotlib Figure: rows = (inputs, targets, outputs, background removed), N x H x W (x 1)
    each.

    depth: the images are heights on the network's scale, drawn as a lit relief with one colour bar in mm, and
    a fifth row shows the signed error of the last row against the ground truth, with its own colour bar;
    otherwise grey images in [0, 1] (the segmentation task's photographs, masks and probabilities).
    """
    columns = min(MAX_COLUMNS, len(names))
    images = [[np.squeeze(row[column]) for column in range(columns)] for row in rows]
    if depth:
        images = [[network_to_mm(image) for image in row] for row in images]
        norm = Normalize(0, max(1.0, max(float(np.max(image)) for row in images for image in row)))
        images.append([written - target for written, target in zip(images[3], images[1])])
        error_norm = Normalize(-ERROR_RANGE_MM, ERROR_RANGE_MM)
    figure = Figure(figsize=(1.5 * columns + 1.2, 1.7 * len(images)), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(images), columns, squeeze=False)
    for row_index, row in enumerate(images):
        for column, image in enumerate(row):
            axis = axes[row_index, column]
            if depth and row_index == 4:
                axis.imshow(image, cmap=ERROR_COLOURS, norm=error_norm, interpolation='nearest')
            elif depth:
                axis.imshow(lit_relief(image, norm), interpolation='nearest')
            else:
                axis.imshow(image, cmap='gray', vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(ROW_TITLES[row_index], fontsize=9)
            if row_index == 0:
                axis.set_title(column_label(names[column]), fontsize=8, parse_math=False)  # a $ is no formula
    if depth:
        height_colour_bar(figure, norm, axes[:4], shrink=0.8, pad=0.01)
        figure.colorbar(ScalarMappable(error_norm, ERROR_COLOURS), ax=axes[4:], label=ERROR_LABEL, shrink=0.9,
                        pad=0.01, extend='both')
    figure.suptitle(title, fontsize=10, parse_math=False)
    return figure


def save_results_grid(path, rows, names, title, depth=True):
    """Save the grid of up to MAX_COLUMNS examples as a PNG (see results_grid_figure)."""
    with atomic_write(path) as file:
        results_grid_figure(rows, names, title, depth).savefig(file, dpi=100, format='png')


def grid_examples(dataset, count=12):
    """Fixed, evenly spread examples, so that the grids of different steps compare."""
    return np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int)


def save_grid(path, task, dataset, outputs, chosen, background, title):
    """The results grid of the chosen examples of a data set: input, ground truth, output, background removed
    as `background` (inference.background.Background) decides it (and, for depth, its error)."""
    rows = (dataset.inputs[chosen], dataset.targets[chosen], outputs[chosen],
            task.cleaned(outputs[chosen], dataset.inputs[chosen], background))
    save_results_grid(path, rows, [dataset.names[i] for i in chosen], title, task.grid_shows_depth)
