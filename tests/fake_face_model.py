"""Tiny stand-ins for the ICT Face Model Light, built by the tests so they run without ../shared/facemodel/."""
import numpy as np

# Every shape the generator's prototypes use, an unpaired one, and an eye-gaze pair mixtures must skip.
PAIRED_ACTIONS = ("browDown", "browInnerUp", "browOuterUp", "cheekSquint", "eyeSquint", "eyeWide", "mouthFrown",
                  "mouthLowerDown", "mouthPress", "mouthSmile", "mouthStretch", "noseSneer", "eyeLookUp")
EXPRESSION_NAMES = tuple(f"{action}_{side}" for action in PAIRED_ACTIONS for side in "LR") + ("jawOpen",)


def dome_face_arrays(seed=0, grid=21, identity_modes=5):
    """Arrays in the .npz layout: a dome 12 cm across whose top (the 'nose tip') is vertex `nose_tip`."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-6, 6, grid), np.linspace(-6, 6, grid))
    neutral = np.stack([x.ravel(), y.ravel(), 13 - 0.1 * (x.ravel() ** 2 + y.ravel() ** 2)], axis=1)
    corner = np.arange(grid * grid).reshape(grid, grid)[:-1, :-1].ravel()
    triangles = np.concatenate([np.stack([corner, corner + 1, corner + grid + 1], 1),
                                np.stack([corner, corner + grid + 1, corner + grid], 1)])
    landmarks = np.zeros(68, np.int32)
    landmarks[30] = grid * grid // 2  # the centre of the grid, top of the dome
    vertex_count = len(neutral)
    return {
        "neutral": neutral.astype(np.float32),
        "identity_modes": (0.1 * rng.standard_normal((identity_modes, vertex_count, 3))).astype(np.float32),
        "expression_modes": (0.2 * rng.standard_normal((len(EXPRESSION_NAMES), vertex_count, 3))).astype(np.float32),
        "expression_names": np.array(EXPRESSION_NAMES),
        "triangles": triangles.astype(np.int32),
        "landmarks_68": landmarks,
    }


def write_fake_npz(path, **arrays_override):
    arrays = dome_face_arrays()
    arrays.update(arrays_override)
    np.savez(path, **arrays)
    return path
