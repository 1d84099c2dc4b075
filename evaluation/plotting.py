"""The results grid: rows input, ground truth, output, thresholded output; one example per column.

Depth images are drawn as a lit relief: the colour gives the height (one scale for the whole grid, shown by
its colour bar) and the shading by the surface's normals gives the shape, which plain grey levels hide:
a smile or an open mouth changes the height by a few millimetres out of 150, but turns the surface a lot.
Pixels at or below 0 (no surface) are white, so the output row's faint background, which the thresholded
row removes, stays visible.
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
from support.safe_files import atomic_write

MAX_COLUMNS = 12
ROW_TITLES = ('input', 'ground truth', 'output', 'thresholded')
PREVIEW_FOLDER = 'previews'     # where infer and prepare put a figure of each image they write
LIGHT = LightSource(azdeg=315, altdeg=45)    # from the upper left, as readers expect of a relief
HEIGHT_COLOURS = colormaps['gist_earth']
HEIGHT_LABEL = 'height above the back plane (mm)'


def thresholded(outputs, threshold):
    """Outputs with everything below the threshold set to 0, so the face silhouette comes out clean."""
    return np.where(outputs >= threshold, outputs, 0)


def column_label(name):
    """'0103 HA04\\nhappiness' for data set names (subject, expression code and level); else the file's stem."""
    subject, code, level = parse_name(name)
    if subject is None:
        return os.path.splitext(os.path.basename(name))[0][:16]
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
    rgb[height_mm <= 0] = 1
    return rgb


def results_grid_figure(rows, names, title, depth=True):
    """The grid as a matplotlib Figure: rows = (inputs, targets, outputs, thresholded), N x H x W (x 1) each.

    depth: the images are heights on the network's scale, drawn as a lit relief with one colour bar in mm;
    otherwise grey images in [0, 1] (the segmentation task's photographs, masks and probabilities).
    """
    columns = min(MAX_COLUMNS, len(names))
    images = [[np.squeeze(row[column]) for column in range(columns)] for row in rows]
    if depth:
        images = [[network_to_mm(image) for image in row] for row in images]
        norm = Normalize(0, max(1.0, max(float(np.max(image)) for row in images for image in row)))
    figure = Figure(figsize=(1.5 * columns + 1.2, 6.8), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for row_index, row in enumerate(images):
        for column, image in enumerate(row):
            axis = axes[row_index, column]
            if depth:
                axis.imshow(lit_relief(image, norm), interpolation='nearest')
            else:
                axis.imshow(image, cmap='gray', vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(ROW_TITLES[row_index], fontsize=9)
            if row_index == 0:
                axis.set_title(column_label(names[column]), fontsize=8)
    if depth:
        figure.colorbar(ScalarMappable(norm, HEIGHT_COLOURS), ax=axes, label=HEIGHT_LABEL, shrink=0.8,
                        pad=0.01)
    figure.suptitle(title, fontsize=10)
    return figure


def save_results_grid(path, rows, names, title, depth=True):
    """Save the grid of up to MAX_COLUMNS examples as a PNG (see results_grid_figure)."""
    with atomic_write(path) as file:
        results_grid_figure(rows, names, title, depth).savefig(file, dpi=100, format='png')


def grid_examples(dataset, count=12):
    """Fixed, evenly spread examples, so that the grids of different steps compare."""
    return np.linspace(0, len(dataset) - 1, min(count, len(dataset))).astype(int)


def save_grid(path, task, dataset, outputs, chosen, threshold_mm, title):
    """The results grid of the chosen examples of a data set: input, ground truth, output, thresholded."""
    rows = (dataset.inputs[chosen], dataset.targets[chosen], outputs[chosen],
            task.thresholded(outputs[chosen], threshold_mm))
    save_results_grid(path, rows, [dataset.names[i] for i in chosen], title, task.grid_shows_depth)
