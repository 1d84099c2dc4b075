"""The expression protocol, modelled on BU-3DFE: six prototypic expressions at four intensities, plus
neutral, and random mixtures of the face model's expression shapes (weights by shape name)."""
from pathlib import Path

import numpy as np

from faces.model import FaceModel
from support.command_line import UsageError

# An action names an ICT shape, or an _L/_R pair of shapes when the model has no shape of that exact name.
PROTOTYPES = {  # at intensity 1.0
    "HA": {"cheekSquint": 1.0, "mouthSmile": 1.0},
    "SA": {"browInnerUp": 1.0, "browDown": 0.5, "mouthFrown": 1.0},
    "SU": {"browInnerUp": 1.0, "browOuterUp": 1.0, "eyeWide": 1.0, "jawOpen": 0.5},
    "FE": {"browInnerUp": 1.0, "browOuterUp": 1.0, "browDown": 0.5, "eyeWide": 1.0, "mouthStretch": 1.0,
           "jawOpen": 0.3},
    "AN": {"browDown": 1.0, "eyeWide": 0.5, "eyeSquint": 0.7, "mouthPress": 1.0},
    "DI": {"noseSneer": 1.0, "mouthFrown": 0.7, "mouthLowerDown": 0.7},
}
INTENSITIES = (0.25, 0.5, 0.75, 1.0)  # levels 1 to 4
MIXTURES_PER_SUBJECT = 6  # the committed data's random mixtures per subject (--mixtures-per-subject)
# Random mixtures: 1 to 4 actions, pairs used on one side only with this probability, weights uniform in
# [0.3, 1.0]. Eye-gaze shapes (eyeLook*) are left out: they turn the eyeballs and barely change depth.
MIXTURE_ACTIONS = (1, 4)
ONE_SIDED_PROBABILITY = 0.5
MIXTURE_WEIGHTS = (0.3, 1.0)
EXCLUDED_FROM_MIXTURES = ("eyeLook",)
DECIMALS = 6  # weights and angles are rounded to this before rendering, so dataset.json re-renders exactly


def shapes_of_action(action: str, expression_names) -> list:
    """The shape names an action stands for: the shape itself, or its _L and _R shapes."""
    if action in expression_names:
        return [action]
    return [f"{action}_L", f"{action}_R"]


def mixture_actions(expression_names) -> list:
    """The actions random mixtures choose from: each _L/_R pair as one action, every other shape alone."""
    actions = []
    for name in expression_names:
        if name.startswith(EXCLUDED_FROM_MIXTURES):
            continue
        other_side = {"_L": "_R", "_R": "_L"}.get(name[-2:])
        action = name[:-2] if other_side and name[:-2] + other_side in expression_names else name
        if action not in actions:
            actions.append(action)
    return actions


def prototype_weights(code: str, intensity: float, expression_names) -> dict:
    return {shape: round(weight * intensity, DECIMALS)
            for action, weight in PROTOTYPES[code].items() for shape in shapes_of_action(action, expression_names)}


def random_mixture_weights(rng: np.random.Generator, actions, expression_names) -> dict:
    """1 to 4 distinct actions; a pair is often used on one side only; both sides of a pair share a weight."""
    weights = {}
    count = min(rng.integers(MIXTURE_ACTIONS[0], MIXTURE_ACTIONS[1] + 1), len(actions))  # tiny test models
    for action_index in rng.choice(len(actions), size=count, replace=False):
        weight = round(float(rng.uniform(*MIXTURE_WEIGHTS)), DECIMALS)
        shapes = shapes_of_action(actions[action_index], expression_names)
        if len(shapes) == 2 and rng.random() < ONE_SIDED_PROBABILITY:
            shapes = [shapes[rng.integers(2)]]
        weights.update({shape: weight for shape in shapes})
    return weights


def check_model_has_prototype_shapes(model: FaceModel, path: Path):
    needed = {shape for weights in PROTOTYPES.values() for action in weights
              for shape in shapes_of_action(action, model.expression_names)}
    missing = sorted(needed - set(model.expression_names))
    if missing:
        raise UsageError(f"{path}: the face model lacks the expression shapes {', '.join(missing)}")
