"""The written report of a test: report.md (the tables), report.png (RMSE per expression, the error heat map),
and the tables and recognition lines printed on the terminal."""
import math
import os

import numpy as np

from depth.convention import FULL_SCALE_MM
from depth.dataset import offset_description
from evaluation.baselines import BASELINE_NAMES
from evaluation.metrics import INSIDE_DISTANCE_PX, MS_SSIM_FILTER_SIZE, group_order
from support.safe_files import atomic_write

_OVERALL_COLUMNS = (('rmse_mm', 'RMSE (mm)'), ('mae_mm', 'MAE (mm)'), ('within_1mm', '<= 1 mm'),
                    ('within_2mm', '<= 2 mm'), ('ms_ssim', 'MS-SSIM'))
_WHOLE_IMAGE_COLUMNS = (('inside_rmse_mm', 'inside RMSE (mm)'), ('outline_rmse_mm', 'outline RMSE (mm)'),
                        ('false_surface_share', 'false surface'), ('missing_surface_share', 'missing surface'),
                        ('written_rmse_mm', 'RMSE as written (mm)'))
HEAT_MAP_PERCENTILE = 99
_SHARE_METRICS = {'within_1mm', 'within_2mm', 'rank1', 'eer'}
_SURFACE_METRICS = {'false_surface_share', 'missing_surface_share'}  # shares of the image: small, 2 decimals
_MISSING = '-'


def _format_value(metric, value):
    """Millimetres with 3 decimals, shares as percentages, MS-SSIM with 4 decimals; NaN -> 'n/a'."""
    if value is None:
        return _MISSING
    value = float(value)
    if math.isnan(value):
        return 'n/a'
    if metric in _SURFACE_METRICS:
        return f"{100 * value:.2f} %"
    if metric in _SHARE_METRICS:
        return f"{100 * value:.1f} %"
    if metric == 'ms_ssim':
        return f"{value:.4f}"
    return f"{value:.3f}"


def _methods(metrics):
    """(name, block) for the model and each baseline present; the model's count is 'n_images'."""
    model = dict(metrics, n=metrics.get('n_images'))
    baselines = metrics.get('baselines') or {}
    return [('model', model)] + [(name, baselines[name]) for name in BASELINE_NAMES if name in baselines]


def _overall_rows(metrics, columns=_OVERALL_COLUMNS):
    header = ['method', 'n'] + [title for _, title in columns]
    rows = [[name, str(block.get('n', _MISSING))]
            + [_format_value(metric, block.get(metric)) for metric, _ in columns]
            for name, block in _methods(metrics)]
    return header, rows


def _group_rows(metrics, grouping, metric='rmse_mm', title='RMSE (mm)'):
    """A metric per group (grouping = 'per_expression' or 'per_level') for the model and each baseline."""
    methods = _methods(metrics)
    groups = {}
    for _, block in methods:
        groups.update(dict.fromkeys((block.get(grouping) or {}).keys()))
    header = [grouping.replace('per_', ''), 'n'] + [f"{name} {title}" for name, _ in methods]
    rows = []
    for group in sorted(groups, key=group_order):
        entries = [(block.get(grouping) or {}).get(group, {}) for _, block in methods]
        rows.append([group, str(entries[0].get('n', _MISSING))]
                    + [_format_value(metric, entry.get(metric)) for entry in entries])
    return header, rows


def _recognition_lines(result):
    """Markdown lines of a recognition section: a table, or the reason it was skipped."""
    if not result:
        return ["Recognition was not run."]
    if 'skipped' in result:
        return [f"Recognition skipped: {result['skipped']}"]
    rows = [[label, _format_value('rank1', (result.get(key) or {}).get('rank1')),
             _format_value('eer', (result.get(key) or {}).get('eer'))]
            for key, label in (('raw', 'raw (with expression)'), ('neutralised', 'neutralised by the model'))]
    return (_markdown_table(['probes', 'rank-1', 'EER'], rows)
            + ["", f"Distance: {result.get('distance', _MISSING)}; gallery {result.get('n_gallery', _MISSING)} "
                   f"faces, {result.get('n_probes', _MISSING)} probes."])


def _gallery_lines(gallery):
    """Markdown lines of the generated-gallery section (none when test mode ran without a gallery)."""
    if not gallery:
        return []
    rmse = gallery.get('rmse_mm_per_expression') or {}
    codes = sorted({code for groups in rmse.values() for code in groups}, key=group_order)
    rows = [[f"{method} RMSE (mm)"] + [_format_value('rmse_mm', rmse[method].get(code)) for code in codes]
            for method in rmse]
    return (["", f"## Recognition on {gallery.get('subjects', _MISSING)} generated identities", "",
             f"Identities no training sees (make_dataset.py seed {gallery.get('seed', _MISSING)}); "
             f"{gallery.get('probes', _MISSING)}.", ""]
            + _recognition_lines(gallery)
            + ["", "RMSE of the gallery's probes (unseen identities):", ""]
            + _markdown_table(['expression'] + codes, rows))


def _model_fit_lines(metrics):
    """Markdown lines on the model-fit baseline: its sample, its speed, and the model on the same images."""
    fit = (metrics.get('baselines') or {}).get('model_fit')
    if not fit:
        return []
    same = fit.get('on_the_same_sample') or {}
    rows = [[name, _format_value('rmse_mm', block.get('rmse_mm')), _format_value('inside_rmse_mm',
                                                                                  block.get('inside_rmse_mm'))]
            for name, block in [('model_fit', fit)] + list(same.items())]
    return (["", "## The model fit, the field's usual neutraliser", "",
             f"The face model's pose, identity and expression fitted to each input's points (scanning/alignment.py) "
             f"and re-rendered without the expression, in the input's pixel frame: {fit.get('sample', _MISSING)}, "
             f"{fit.get('seconds_per_image', _MISSING)} s per image. On the same images:", ""]
            + _markdown_table(['method', 'RMSE (mm)', 'inside RMSE (mm)'], rows))


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _text_table(header, rows):
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [header] + rows]


def _offset_note(offset_px):
    if not offset_px or not any(offset_px):
        return ''
    return f", {offset_description(*offset_px)}"


def report_markdown(metrics):
    """The text of report.md."""
    lines = ["# Expression removal: test evaluation", "",
             f"Checkpoint: {metrics.get('checkpoint', _MISSING)}  ",
             f"Data: {metrics.get('data', _MISSING)}{_offset_note(metrics.get('offset_px'))}  ",
             f"Test images: {metrics.get('n_images', _MISSING)}", "",
             "Errors are over the face pixels of the target (neutral) image; images without face pixels "
             "are left out of the means. MS-SSIM is over the whole image as written (its background decided as "
             "infer writes it).", "",
             "## Model and baselines", ""]
    lines += _markdown_table(*_overall_rows(metrics))
    lines += ["", "## The whole image", "",
              f"Inside: face pixels {INSIDE_DISTANCE_PX} px or more from the target's background; outline: the rest "
              "of the face. False surface: pixels where the output (its background decided as infer writes it) has "
              "a surface and the target none, as a share of the image; missing surface: the reverse. RMSE as "
              "written: the RMSE over the face of the output as infer writes it.", ""]
    lines += _markdown_table(*_overall_rows(metrics, _WHOLE_IMAGE_COLUMNS))
    lines += ["", "## RMSE per expression", ""] + _markdown_table(*_group_rows(metrics, 'per_expression'))
    lines += ["", "## Inside the face, per expression", ""]
    lines += _markdown_table(*_group_rows(metrics, 'per_expression', 'inside_rmse_mm', 'inside RMSE (mm)'))
    lines += ["", "## False surface per expression", ""]
    lines += _markdown_table(*_group_rows(metrics, 'per_expression', 'false_surface_share', 'false surface'))
    lines += ["", "## RMSE per level", "",
              "Levels are the two digits of the file name pooled across codes: intensities 01-04 of the "
              "prototypes, 00 for neutral faces, and the mixture number for MX.", ""]
    lines += _markdown_table(*_group_rows(metrics, 'per_level'))
    lines += _model_fit_lines(metrics)
    lines += ["", "## Recognition", ""] + _recognition_lines(metrics.get('recognition'))
    lines += _gallery_lines(metrics.get('recognition_gallery'))
    lines += ["", "## Settings", "",
              f"- MS-SSIM filter size: {metrics.get('ms_ssim_filter_size', MS_SSIM_FILTER_SIZE)} "
              f"(max_val {FULL_SCALE_MM} mm)",
              f"- Linear baseline: {metrics.get('linear_baseline', _MISSING)}", ""]
    return "\n".join(lines)


def report_figure(metrics, mean_abs_error_map_mm):
    """The Figure of report.png: RMSE per expression (model, identity, linear) and the model's error heat map."""
    # The object-oriented API with the Agg canvas draws off screen without switching pyplot's global
    # backend under the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5))
    FigureCanvasAgg(figure)
    bars, heat = figure.subplots(1, 2, gridspec_kw={'width_ratios': [1.4, 1]})

    compared = [(name, block) for name, block in _methods(metrics) if name in ('model', 'identity', 'linear')]
    codes = sorted((metrics.get('per_expression') or {}).keys(), key=group_order)
    width = 0.8 / max(len(compared), 1)
    for index, (name, block) in enumerate(compared):
        values = [(block.get('per_expression') or {}).get(code, {}).get('rmse_mm', math.nan) for code in codes]
        bars.bar(np.arange(len(codes)) + (index - (len(compared) - 1) / 2) * width, values, width, label=name)
    bars.set_xticks(np.arange(len(codes)), codes)
    bars.set_xlabel('expression')
    bars.set_ylabel('RMSE over the face (mm)')
    bars.set_title('RMSE per expression')
    bars.legend()

    if mean_abs_error_map_mm is None:
        heat.text(0.5, 0.5, 'no error map', ha='center', va='center')
    else:
        error_map = np.asarray(mean_abs_error_map_mm, np.float64)
        # NaN (no face there in any image, as mean_abs_error_map gives) or an exact 0 (a map summed
        # with zeros outside the face) is background.
        shown = np.ma.masked_where(~np.isfinite(error_map) | (error_map == 0), error_map)
        # A few silhouette pixels err by ~10 mm, most of the face by ~1: a scale up to the maximum would
        # paint the face black, so it stops at a high percentile and the colour bar says so.
        top = float(np.percentile(shown.compressed(), HEAT_MAP_PERCENTILE)) if shown.count() else 1.0
        image = heat.imshow(shown, cmap='inferno', vmin=0, vmax=top)
        figure.colorbar(image, ax=heat, extend='max',
                        label=f'mean |error| (mm), clipped at its {HEAT_MAP_PERCENTILE}th percentile')
    heat.set_title("model's mean absolute error per pixel")
    heat.set_axis_off()
    figure.tight_layout()
    return figure


def write_report(metrics, results_dir, mean_abs_error_map_mm):
    """Write results_dir/report.md and results_dir/report.png; returns their paths."""
    os.makedirs(results_dir, exist_ok=True)
    markdown_path = os.path.join(results_dir, 'report.md')
    image_path = os.path.join(results_dir, 'report.png')
    with atomic_write(markdown_path, 'w') as handle:
        handle.write(report_markdown(metrics))
    with atomic_write(image_path) as file:
        report_figure(metrics, mean_abs_error_map_mm).savefig(file, dpi=100, format='png')
    return markdown_path, image_path


def recognition_summary(result, where='test split'):
    """Rank-1 rate and equal-error rate, neutralised vs raw, or why recognition did not run."""
    if not result or 'skipped' in result:
        return f"recognition skipped: {(result or {}).get('skipped', 'not run')}"
    neutralised, raw = result['neutralised'], result['raw']
    return (f"recognition on the {where} (gallery: {result['n_gallery']} neutral faces; "
            f"{result['n_probes']} expressive probes):\n"
            f"  rank-1 {_format_value('rank1', neutralised['rank1'])} neutralised vs "
            f"{_format_value('rank1', raw['rank1'])} raw; equal-error rate {_format_value('eer', neutralised['eer'])} "
            f"vs {_format_value('eer', raw['eer'])}")


def print_table(metrics):
    """Print the overall comparison, the RMSE per expression and the recognition result."""
    print("\n".join(_text_table(*_overall_rows(metrics))))
    print()
    print("\n".join(_text_table(*_overall_rows(metrics, _WHOLE_IMAGE_COLUMNS))))
    print()
    print("\n".join(_text_table(*_group_rows(metrics, 'per_expression'))))
    print()
    print(recognition_summary(metrics.get('recognition')))
    if metrics.get('recognition_gallery'):
        print(recognition_summary(metrics['recognition_gallery'], 'generated identities'))
