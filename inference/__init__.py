"""Using a trained model: neutralising your own depth images (neutralise, --mode infer) and exporting the model
as frozen graphs, a SavedModel and an OpenCV graph (export, --mode export).
"""
