"""A z-buffer orthographic depth rasteriser, vectorised with numpy, and rendering a face under the convention.

The image frame: x = column, y = row (both in pixels; pixel (r, c) has its centre at x = c, y = r), and z is
the depth value to store, larger = nearer the camera. A pixel takes the depth of the front-most (largest z)
surface whose triangle covers its centre, interpolated barycentrically inside that triangle.
"""
import numpy as np

from depth.convention import IMAGE_SIZE, image_frame

# A pixel centre exactly on an edge shared by two triangles must not be lost to rounding in both of them; a
# tolerance this small (in barycentric units) extrapolates depth by a negligible amount.
_EDGE_TOLERANCE = 1e-9


def rasterise_depth(vertices, triangles, height, width):
    """Return a (height, width) float64 depth image of the mesh seen along -z.

    vertices: (V, 3) array of (x = column, y = row, z = depth) in the image frame; triangles: (T, 3) vertex
    indices. Pixels whose centre no triangle covers are 0, and so are pixels whose front-most surface has a
    depth below 0: the buffer starts at 0, which is the background value and the back plane at once.
    """
    # Arrays are laid out (3 corners, N triangles), C-contiguous, and gathered with np.take: numpy is several
    # times slower on the strided or fancy-indexed alternatives, and this runs thousands of times per dataset.
    corner_index = np.asarray(triangles).T
    x, y, z = (np.take(coordinate, corner_index) for coordinate in np.asarray(vertices, np.float64).T)
    x, y, z = _drop_edge_on_triangles(x, y, z)
    tri, cols, rows = _candidate_pixels(x, y, height, width)
    depth, inside = _interpolate_depth(*(np.take(corners, tri, axis=1) for corners in (x, y, z)), cols, rows)

    zbuffer = np.zeros(height * width)
    # Front-most wins: a maximum does not depend on the order of the triangles.
    np.maximum.at(zbuffer, rows[inside] * width + cols[inside], depth[inside])
    return zbuffer.reshape(height, width)


def _doubled_area(x, y):
    """Signed doubled area of each triangle given (3, N) corner coordinates."""
    return (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])


def _drop_edge_on_triangles(x, y, z):
    """Triangles seen edge-on cover no pixel centre and would divide by zero in the interpolation."""
    keep = np.flatnonzero(_doubled_area(x, y))
    return (np.take(corners, keep, axis=1) for corners in (x, y, z))


def _candidate_pixels(x, y, height, width):
    """Every (triangle, pixel) pair whose pixel centre lies in the triangle's bounding box, clipped to the image.

    Returns (triangle index, column, row) arrays of equal length.
    """
    first_col = np.maximum(np.ceil(x.min(axis=0)), 0).astype(np.int64)
    last_col = np.minimum(np.floor(x.max(axis=0)), width - 1).astype(np.int64)
    first_row = np.maximum(np.ceil(y.min(axis=0)), 0).astype(np.int64)
    last_row = np.minimum(np.floor(y.max(axis=0)), height - 1).astype(np.int64)
    box_cols = np.maximum(last_col - first_col + 1, 0)
    box_rows = np.maximum(last_row - first_row + 1, 0)
    pixels_per_triangle = box_cols * box_rows

    tri = np.repeat(np.arange(x.shape[1]), pixels_per_triangle)
    box_start = np.cumsum(pixels_per_triangle) - pixels_per_triangle
    index_in_box = np.arange(len(tri)) - box_start[tri]
    cols = first_col[tri] + index_in_box % box_cols[tri]
    rows = first_row[tri] + index_in_box // box_cols[tri]
    return tri, cols, rows


def _interpolate_depth(x, y, z, cols, rows):
    """Barycentric depth at each pixel centre (col, row) in its triangle, and whether the centre is inside.

    x, y, z: (3, N) corners of the triangle paired with each pixel.
    """
    doubled_area = _doubled_area(x, y)
    to_col, to_row = cols - x[0], rows - y[0]
    weight_1 = (to_col * (y[2] - y[0]) - (x[2] - x[0]) * to_row) / doubled_area
    weight_2 = ((x[1] - x[0]) * to_row - to_col * (y[1] - y[0])) / doubled_area
    weight_0 = 1.0 - weight_1 - weight_2
    inside = (weight_0 >= -_EDGE_TOLERANCE) & (weight_1 >= -_EDGE_TOLERANCE) & (weight_2 >= -_EDGE_TOLERANCE)
    depth = z[0] + weight_1 * (z[1] - z[0]) + weight_2 * (z[2] - z[0])
    return depth, inside


def render_depth_mm(face_mm: np.ndarray, nose_tip_mm: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(128, 128) heights in mm above the back plane of a face (vertices in mm), framed on `nose_tip_mm`."""
    return rasterise_depth(image_frame(face_mm, nose_tip_mm), triangles, IMAGE_SIZE, IMAGE_SIZE)
