"""Raw 3D face scans to depth images (--mode prepare): reading OBJ and PLY (mesh_io), registering a scan to the
face model and rendering it under the convention (alignment), the command's file handling (prepare), and
synthetic scans with a known answer with their measurement (synthetic, measurement; scan_benchmark.py).
"""
