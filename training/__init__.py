"""Training the network that convworking.py defines: the loop with validation, checkpoints and grids (loop),
checkpoint bookkeeping and options.json (checkpoints), the validation history and its curve (curve), what
differs between the two tasks (tasks) and the segmentation task's LFW Part Labels data (lfw_parts).
"""
