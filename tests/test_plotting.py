"""The results grid (labels, height scale, lit relief) and the report's heat map, by the figures' contents."""
import os

import numpy as np
import pytest
from matplotlib.colors import Normalize

from conftest import synthetic_pair
from depth.convention import mm_to_network
from evaluation.plotting import (BACKGROUND, ERROR_LABEL, ERROR_RANGE_MM, HEIGHT_COLOURS, HEIGHT_LABEL, LIGHT,
                                 ROW_TITLES, lit_relief, results_grid_figure, save_results_grid)
from evaluation.report import report_figure


def figure_texts(figure):
    return [text.get_text() for text in figure.findobj(lambda artist: hasattr(artist, 'get_text'))]


def depth_rows(count):
    rng = np.random.default_rng(0)
    pairs = [synthetic_pair(rng, index) for index in range(count)]
    inputs, targets = (mm_to_network(np.stack(side))[..., np.newaxis] for side in zip(*pairs))
    return inputs, targets, targets * 0.99, targets


def test_the_depth_grid_labels_rows_and_columns_and_has_a_height_scale(tmp_path):
    names = ['0100_HA04.png', '0101_SU02.png', 'my_scan.png']
    figure = results_grid_figure(depth_rows(3), names, 'test split, best-6000')
    texts = figure_texts(figure)
    for label in ('0100 HA04\nhappiness', '0101 SU02\nsurprise', 'my_scan', 'test split, best-6000', HEIGHT_LABEL,
                  *ROW_TITLES):
        assert label in texts, (label, texts)
    axes = figure.axes
    assert len(axes) == 5 * 3 + 2                                # 15 images and the two colour bars
    height_bar, error_bar = axes[-2:]
    assert height_bar.get_ylabel() == HEIGHT_LABEL
    assert height_bar.get_ylim()[0] == 0 and height_bar.get_ylim()[1] >= 40    # heights in mm, not network units
    assert error_bar.get_ylabel() == ERROR_LABEL and error_bar.get_ylim() == (-ERROR_RANGE_MM, ERROR_RANGE_MM)
    save_results_grid(tmp_path / 'grid.png', depth_rows(3), names, 'title')
    assert (tmp_path / 'grid.png').read_bytes().startswith(b'\x89PNG')


def test_file_names_of_any_bytes_are_drawn_as_display_name_shows_them(tmp_path):
    """A test file name that is not UTF-8, or holds a newline or dollar signs, neither stops the grid nor
    becomes a formula."""
    names = [os.fsdecode(b'caf\xe9.png'), 'a\nb.png', 'x$\\frac$y.png']
    save_results_grid(tmp_path / 'grid.png', depth_rows(3), names, 'test split, x$\\frac$y')
    texts = figure_texts(results_grid_figure(depth_rows(3), names, 'title'))
    assert 'caf\\xe9' in texts and 'a\\nb' in texts and 'x$\\frac$y' in texts


def test_the_segmentation_grid_stays_grey_without_a_height_scale():
    rng = np.random.default_rng(0)
    rows = [rng.random((2, 128, 128, 1)) for _ in range(4)]
    figure = results_grid_figure(rows, ['Aaron_Eckhart_0001.jpg', 'b.jpg'], 'segment', depth=False)
    assert HEIGHT_LABEL not in figure_texts(figure) and len(figure.axes) == 8    # four rows, no error row
    assert 'Aaron_Eckhart_00' in figure_texts(figure)


def test_the_error_row_is_the_written_output_minus_the_ground_truth():
    inputs, targets, outputs, _ = depth_rows(2)
    written = targets + mm_to_network(2.0) * (targets > 0)         # 2 mm too high on the face
    written[:, :3, :3] = mm_to_network(20.0)                         # and a false surface in a corner
    figure = results_grid_figure((inputs, targets, outputs, written), ['a.png', 'b.png'], 'title')
    error = figure.axes[4 * 2].get_images()[0].get_array()         # row 5, column 1
    face = targets[0, ..., 0] > 0
    assert np.allclose(error[face], 2.0, atol=1e-3) and np.allclose(error[:3, :3], 20.0, atol=1e-3)
    assert np.allclose(error[~face & (np.arange(128)[:, None] >= 3)], 0.0)


def test_the_relief_is_shaded_by_the_surface_normal_and_white_where_there_is_no_surface():
    height = np.zeros((8, 8))
    height[:, 4:] = 50 + 1.5 * np.arange(4)        # a plane rising to the right at 45 degrees
    norm = lambda values: np.clip(np.asarray(values) / 100, 0, 1)
    rgb = lit_relief(height, norm)
    assert rgb.shape == (8, 8, 3) and np.all(rgb[:, :4] == 1)
    normal = np.array([-1, 0, 1]) / np.sqrt(2)
    facing = np.clip(normal @ LIGHT.direction, 0, 1)
    colour = LIGHT.blend_soft_light(np.array([[lit_colour(0.515)]]), np.array([[[facing]]]))[0, 0]
    assert rgb[3, 5] == pytest.approx(colour)


def lit_colour(value):
    from evaluation.plotting import HEIGHT_COLOURS
    return HEIGHT_COLOURS(value)[:3]


def test_the_heat_map_stops_at_the_99th_percentile_and_says_so():
    error_map = np.full((128, 128), np.nan)
    error_map[30:90, 40:80] = np.linspace(0.1, 3, 60)[:, np.newaxis]
    error_map[30, 40] = 11.0                         # one silhouette pixel far off
    metrics = {'per_expression': {}}
    figure = report_figure(metrics, error_map)
    heat_image = figure.axes[1].get_images()[0]
    assert heat_image.get_clim() == (0, pytest.approx(np.nanpercentile(error_map, 99)))
    assert 'mean |error| (mm), clipped at its 99th percentile' in [axis.get_ylabel() for axis in figure.axes]


def test_the_height_colours_ends_stand_apart_from_the_background():
    """No surface is white: the lowest and the highest surface (nose tip, lips) must not look like it, lit or not."""
    for end in (0.0, 1.0):
        assert np.linalg.norm(np.array(HEIGHT_COLOURS(end)[:3]) - BACKGROUND) > 0.5, end
    plateau = np.zeros((32, 32))
    plateau[8:24, 8:24] = 130.0         # flat, so it faces the camera as the top of a nose does
    lit = lit_relief(plateau, Normalize(0, 130.0))
    assert np.linalg.norm(lit[16, 16] - BACKGROUND) > 0.5 and np.allclose(lit[0, 0], BACKGROUND)


def test_a_short_runs_training_curve_shows_its_one_point_from_zero_and_says_why(tmp_path):
    from training.curve import plot_training_curve
    history = [{'step': 200, 'minutes': 2.5, 'score': 3.1}]
    figure = plot_training_curve(history, str(tmp_path / 'curve.png'), 'valid RMSE (mm)', 'smoke run')
    assert (tmp_path / 'curve.png').exists()
    for axis in figure.axes:
        assert axis.get_xlim()[0] == 0 and axis.get_ylim()[0] == 0
        assert any('one validation so far' in text.get_text() for text in axis.texts)
    longer = plot_training_curve(history * 2, str(tmp_path / 'longer.png'), 'valid RMSE (mm)', 'run')
    assert not any(axis.texts for axis in longer.axes)
