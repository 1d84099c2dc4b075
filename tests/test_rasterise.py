"""The z-buffer rasteriser on tiny meshes with depths known in closed form."""
import numpy as np

from depth.rasterise import rasterise_depth

SIZE = 16
ROWS, COLS = np.mgrid[0:SIZE, 0:SIZE].astype(float)  # pixel centres, in the image frame


def square(first, last, depth_at):
    """Two triangles covering the square [first, last]^2 (pixel units), corners at depth depth_at(x, y)."""
    corners = [(first, first), (last, first), (last, last), (first, last)]
    vertices = np.array([(x, y, depth_at(x, y)) for x, y in corners], float)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]])


def test_tilted_plane_has_the_analytic_depth_at_every_covered_pixel_centre():
    def plane(x, y):
        return 50.0 + 2.0 * x - 0.75 * y

    vertices, triangles = square(2.3, 12.6, plane)
    depth = rasterise_depth(vertices, triangles, SIZE, SIZE)

    covered = (COLS >= 2.3) & (COLS <= 12.6) & (ROWS >= 2.3) & (ROWS <= 12.6)
    np.testing.assert_allclose(depth[covered], plane(COLS, ROWS)[covered], rtol=0, atol=1e-9)
    assert (depth[~covered] == 0).all()


def test_pyramid_depth_falls_linearly_from_the_apex():
    # Square pyramid, apex 8 high over pixel (7, 7), base the square 2..12: 4 triangles around the apex.
    apex, half_width, height = 7.0, 5.0, 8.0
    base = [(2, 2), (12, 2), (12, 12), (2, 12)]
    vertices = np.array([(apex, apex, height)] + [(x, y, 0.0) for x, y in base])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    depth = rasterise_depth(vertices, triangles, SIZE, SIZE)

    distance = np.maximum(abs(COLS - apex), abs(ROWS - apex)) / half_width
    expected = np.where(distance <= 1, height * (1 - distance), 0.0)
    np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-9)
    assert depth[7, 7] == height


def test_front_most_of_two_overlapping_triangles_wins_in_either_order():
    near = [(1, 1, 30.0), (14, 1, 30.0), (1, 14, 30.0)]  # covers the upper-left half
    far = [(1, 1, 10.0), (14, 1, 10.0), (14, 14, 10.0)]  # covers the upper-right half
    for vertices in (np.array(near + far), np.array(far + near)):
        depth = rasterise_depth(vertices, np.array([[0, 1, 2], [3, 4, 5]]), SIZE, SIZE)
        assert depth[2, 5] == 30.0  # in both: the nearer one
        assert depth[3, 13] == 10.0  # only in the far one
        assert depth[12, 2] == 30.0  # only in the near one
        assert depth[15, 15] == 0.0


def test_intersecting_planes_show_the_upper_envelope():
    rising = square(0, 15, lambda x, y: 10.0 + x)
    falling = square(0, 15, lambda x, y: 25.0 - x)
    vertices = np.concatenate([rising[0], falling[0]])
    triangles = np.concatenate([rising[1], falling[1] + 4])
    depth = rasterise_depth(vertices, triangles, SIZE, SIZE)
    np.testing.assert_allclose(depth, np.maximum(10.0 + COLS, 25.0 - COLS), rtol=0, atol=1e-9)


def test_only_pixel_centres_count():
    # A triangle between the centres of pixels (3, 3), (3, 4), (4, 3): it contains none of them.
    between = np.array([[3.1, 3.1, 5.0], [3.9, 3.1, 5.0], [3.1, 3.9, 5.0]])
    assert (rasterise_depth(between, np.array([[0, 1, 2]]), SIZE, SIZE) == 0).all()
    # One that contains the centre of pixel (row 4, col 3) and no other.
    around = np.array([[2.8, 3.7, 5.0], [3.6, 3.7, 5.0], [2.8, 4.5, 5.0]])
    depth = rasterise_depth(around, np.array([[0, 1, 2]]), SIZE, SIZE)
    assert np.argwhere(depth).tolist() == [[4, 3]]


def test_diagonal_through_pixel_centres_leaves_no_holes():
    # The shared edge of the two triangles runs exactly through the centres (k, k).
    vertices, triangles = square(0, 15, lambda x, y: 7.0)
    assert (rasterise_depth(vertices, triangles, SIZE, SIZE) == 7.0).all()


def test_mesh_larger_than_the_image_is_clipped_and_surfaces_below_zero_read_zero():
    vertices, triangles = square(-40, 60, lambda x, y: x - 8.5)  # negative depth left of column 8.5
    depth = rasterise_depth(vertices, triangles, SIZE, SIZE)
    np.testing.assert_allclose(depth, np.maximum(COLS - 8.5, 0), rtol=0, atol=1e-9)


def test_triangles_seen_edge_on_are_ignored():
    edge_on = np.array([[2.0, 2.0, 1.0], [10.0, 10.0, 9.0], [6.0, 6.0, 50.0]])
    assert (rasterise_depth(edge_on, np.array([[0, 1, 2]]), SIZE, SIZE) == 0).all()
