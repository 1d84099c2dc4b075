"""Depth images under the project's convention: the convention itself (convention: frame, pixel pitch, back
plane, PNG units, the network's float scale), depth PNG files (png), rendering meshes into depth images
(rasterise) and the input/target pairs of a data folder with their training batches (dataset).
"""
