"""The results grid: rows input, ground truth, output, thresholded output; one example per column."""
import matplotlib

matplotlib.use('Agg')  # files only: training runs on machines without a screen
import matplotlib.pyplot as plt
import numpy as np

from safe_files import atomic_write

MAX_COLUMNS = 12
ROW_TITLES = ('input', 'ground truth', 'output', 'thresholded')


def thresholded(outputs, threshold):
    """Outputs with everything below the threshold set to 0, so the face silhouette comes out clean."""
    return np.where(outputs >= threshold, outputs, 0)


def save_results_grid(path, inputs, targets, outputs, thresholded_outputs, title):
    """Save a 4-row grid of up to MAX_COLUMNS examples; all four images of a column share one grey scale."""
    columns = min(MAX_COLUMNS, len(inputs))
    rows = [inputs, targets, outputs, thresholded_outputs]
    figure, axes = plt.subplots(4, columns, figsize=(1.3 * columns, 5.6), squeeze=False)
    for column in range(columns):
        images = [np.squeeze(row[column]) for row in rows]
        low, high = min(map(np.min, images)), max(map(np.max, images))
        for row, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image, cmap='gray', vmin=low, vmax=high if high > low else low + 1)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(ROW_TITLES[row], fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    with atomic_write(path) as file:
        figure.savefig(file, dpi=80, format='png')
    plt.close(figure)
