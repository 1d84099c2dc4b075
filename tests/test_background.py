"""The background rule infer, the grids and test mode share (inference.background), on arrays made here."""
import numpy as np

from inference.background import INSIDE_THRESHOLD_MM, NEAR_INPUT_PX, Background, surface_mask, with_holes_filled


def face_and_output():
    input_mm = np.zeros((32, 32))
    input_mm[8:24, 8:24] = 60.0
    output_mm = np.full((32, 32), 0.5)                   # the network's faint background everywhere
    output_mm[8:24, 8:24] = 60.0
    output_mm[8:24, 8:24][0, 0] = 5.0                    # a low but real face pixel
    output_mm[8:24, 24] = 30.0                           # the outline moved one pixel out (the expression)
    output_mm[0:3, 0:3] = 25.0                           # a false patch far from the face
    return output_mm, input_mm


def test_surface_is_kept_on_the_input_face_and_next_to_it_not_far_from_it():
    output_mm, input_mm = face_and_output()
    mask = surface_mask(output_mm, input_mm, threshold_mm=10.0)
    assert mask[8:24, 8:24].all()                        # the 5 mm face pixel too (threshold inside is 1 mm)
    assert mask[8:24, 24].all()                          # 30 mm, one pixel beyond the input's outline
    assert not mask[0:3, 0:3].any()                      # the far patch, though above the threshold
    assert not mask[:, 27:].any() and mask.sum() == 16 * 16 + 16


def test_low_outputs_beside_the_face_are_background_and_the_result_is_zero_there():
    output_mm, input_mm = face_and_output()
    output_mm[8:24, 25] = 8.0                            # below the 10 mm threshold, two pixels out
    written = Background(threshold_mm=10.0).apply(output_mm, input_mm)
    assert (written[8:24, 25] == 0).all() and (written[0:3, 0:3] == 0).all()
    assert np.array_equal(written[8:24, 8:25], output_mm[8:24, 8:25])


def test_only_pixels_within_near_input_px_may_be_added():
    input_mm = np.zeros((1, 32, 32))
    input_mm[0, 16, 16] = 50.0
    output_mm = np.full((1, 32, 32), 40.0)
    mask = surface_mask(output_mm, input_mm, threshold_mm=10.0)[0]
    rows, cols = np.nonzero(mask)
    assert np.hypot(rows - 16, cols - 16).max() <= NEAR_INPUT_PX and mask[16, 16 + NEAR_INPUT_PX]


def test_a_zero_threshold_keeps_the_raw_output_near_the_face():
    output_mm, input_mm = face_and_output()
    mask = surface_mask(output_mm, input_mm, threshold_mm=0.0)
    assert mask[8:24, 8:24].all() and mask[8:24, 24:24 + NEAR_INPUT_PX].all() and not mask[0:3, 0:3].any()
    assert INSIDE_THRESHOLD_MM > 0


def test_a_hole_the_input_encloses_is_face_and_an_open_bay_is_not():
    input_mm = np.zeros((32, 32))
    input_mm[4:28, 4:28] = 60.0
    input_mm[12:18, 10:22] = 0.0                         # an open mouth left empty: enclosed by the face
    input_mm[20:28, 14:18] = 0.0                         # a bay cut in from the face's lower edge: open to outside
    output_mm = np.full((32, 32), 5.0)                   # above the inside threshold, below the 10 mm one
    mask = surface_mask(output_mm, input_mm, threshold_mm=10.0)
    assert mask[12:18, 10:22].all()                      # the hole closes, as the neutral face does
    assert not mask[20:28, 14:18].any()                  # the bay is only beside the face: 5 mm is too low there
    assert not mask[:, :2].any()
    holes = with_holes_filled(input_mm > 0) & ~(input_mm > 0)
    assert holes.sum() == 6 * 12 and holes[12:18, 10:22].all()
