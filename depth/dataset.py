"""Input/target pairs of depth images in the data128_128 layout, and the batches training draws from them.

Layout: DATA/inputs/SPLIT/NAME.png and DATA/targets/SPLIT/NAME.png, one pair per file name, SPLIT one of
train, valid, test. Pixels become floats on the network's scale (depth.convention: 1.0 = 127.5 mm, 0 = background).
"""
import os

import numpy as np

from depth.convention import IMAGE_SIZE, mm_to_network
from depth.png import read_depth_png

SPLITS = ('train', 'valid', 'test')


def moved(images, rows, cols):
    """Images (N x H x W x C) moved `rows` pixels down and `cols` pixels right (negative: up, left), as a face
    registered that far off would lie: what moves out of the image is lost, and what moves in repeats the image's
    edge, since a face the border cuts goes on beyond it (and background stays background)."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (max(rows, 0), max(-rows, 0)), (max(cols, 0), max(-cols, 0)), (0, 0)),
                    mode='edge')
    return padded[:, max(-rows, 0):max(-rows, 0) + height, max(-cols, 0):max(-cols, 0) + width]


def offset_description(rows, cols):
    """How test mode and its report name a move of every test pair (--offset-px)."""
    return f"every test pair moved {rows} px down and {cols} px right (--offset-px)"


class DataError(ValueError):
    """A data folder that does not hold what the mode needs (the message names the folder or file)."""


def pair_names(data_dir, split):
    """Sorted file names of the split's pairs; every input must have its target and vice versa."""
    folders = [os.path.join(data_dir, side, split) for side in ('inputs', 'targets')]
    for folder in folders:
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: folder not found (expected DATA/inputs/{split} and DATA/targets/{split})")
    inputs, targets = ({f for f in os.listdir(folder) if f.lower().endswith('.png')} for folder in folders)
    if not inputs:
        raise DataError(f"{folders[0]}: holds no .png images")
    for missing, side in ((sorted(inputs - targets), 'targets'), (sorted(targets - inputs), 'inputs')):
        if missing:
            raise DataError(f"{os.path.join(data_dir, side, split, missing[0])}: missing "
                            f"({len(missing)} file(s) in {split} have no counterpart in {side}/)")
    return sorted(inputs)


class Dataset:
    """Images held in memory as N x H x W x 1 float32 arrays."""

    def __init__(self, names, inputs, targets):
        self.names = list(names)
        self.inputs = inputs
        self.targets = targets

    @classmethod
    def load(cls, data_dir, split, select=None):
        """The split's pairs; with `select`, only those whose file name it accepts."""
        names = [name for name in pair_names(data_dir, split) if select is None or select(name)]
        inputs, targets = [], []
        for name in names:
            input_mm, _ = read_depth_png(os.path.join(data_dir, 'inputs', split, name), IMAGE_SIZE)
            target_mm, _ = read_depth_png(os.path.join(data_dir, 'targets', split, name), IMAGE_SIZE)
            inputs.append(input_mm)
            targets.append(target_mm)
        as_batch = lambda images: mm_to_network(np.stack(images))[..., np.newaxis]
        return cls(names, as_batch(inputs), as_batch(targets))

    @classmethod
    def joined(cls, datasets):
        """One dataset holding the pairs of several, in order (e.g. committed and generated training subjects)."""
        return cls([name for dataset in datasets for name in dataset.names],
                   np.concatenate([dataset.inputs for dataset in datasets]),
                   np.concatenate([dataset.targets for dataset in datasets]))

    def subset(self, indices):
        """The pairs at these indices, in their order (an index may repeat)."""
        return type(self)([self.names[index] for index in indices], self.inputs[indices], self.targets[indices])

    def __len__(self):
        return len(self.names)

    def images_per_step(self, batch_size):
        """Images a training step sees: batch_size, or the whole set when it holds fewer."""
        return min(batch_size, len(self))

    def steps_per_epoch(self, batch_size):
        return max(1, len(self) // batch_size)

    def training_batch(self, step, batch_size, seed, flip=False):
        """The batch of a global training step: (inputs, targets, epoch).

        The order is a permutation drawn anew each epoch from (seed, epoch), so a run resumed at any step
        sees exactly the batches an uninterrupted run would have seen. With flip, a random half of the batch
        is mirrored left-right (input and target together): a mirrored face is another plausible face,
        and the frame is centred on the nose tip, so the mirror stays in the convention.
        """
        epoch, index = divmod(step, self.steps_per_epoch(batch_size))
        order = np.random.default_rng([seed, epoch]).permutation(len(self))
        chosen = order[index * batch_size:(index + 1) * batch_size]
        inputs, targets = self.inputs[chosen], self.targets[chosen]
        if flip:
            mirrored = np.random.default_rng([seed, epoch, index]).random(len(chosen)) < 0.5
            inputs[mirrored] = inputs[mirrored, :, ::-1]
            targets[mirrored] = targets[mirrored, :, ::-1]
        return inputs, targets, epoch

    def moved(self, rows, cols):
        """The same pairs, every input and target moved `rows` pixels down and `cols` right (see moved)."""
        return type(self)(self.names, moved(self.inputs, rows, cols), moved(self.targets, rows, cols))

    def batches(self, batch_size):
        """All images in file order, in batches (for validation and testing)."""
        for start in range(0, len(self), batch_size):
            yield self.inputs[start:start + batch_size], self.targets[start:start + batch_size]
