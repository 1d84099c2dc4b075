"""Face recognition with raw and neutralised probes: nearest gallery face by depth difference, rank-1
identification rate and verification equal-error rate."""
import math

import numpy as np

from evaluation.metrics import as_image_batch

RECOGNITION_DISTANCE = ("root-mean-square depth difference (mm) over the union of the two face masks "
                        "(pixels where either image is > 0)")


def face_distances(gallery_mm, probes_mm):
    """P x G matrix of RECOGNITION_DISTANCE between every probe and every gallery face.

    With the background set to 0, pixels outside the union of the two masks add nothing to the squared
    difference, so its sum over the union is |p|^2 + |g|^2 - 2 p.g, and the union's size is |P| + |G| - P.G for
    the masks: two matrix products instead of a P x G x pixels array (a 300-face gallery stays fast).
    Two empty images are at distance 0 (they are identical).
    """
    gallery, probes = (np.asarray(as_image_batch(images), np.float64) for images in (gallery_mm, probes_mm))
    gallery, probes = gallery.reshape(len(gallery), -1), probes.reshape(len(probes), -1)
    gallery_face, probe_face = gallery > 0, probes > 0
    gallery, probes = np.where(gallery_face, gallery, 0.0), np.where(probe_face, probes, 0.0)
    squared = ((probes ** 2).sum(axis=1)[:, np.newaxis] + (gallery ** 2).sum(axis=1)[np.newaxis, :]
               - 2 * probes @ gallery.T)
    gallery_face, probe_face = gallery_face.astype(np.float64), probe_face.astype(np.float64)
    union = (probe_face.sum(axis=1)[:, np.newaxis] + gallery_face.sum(axis=1)[np.newaxis, :]
             - probe_face @ gallery_face.T)
    # Rounding can leave a tiny negative sum where two faces are identical.
    return np.sqrt(np.maximum(squared, 0.0) / np.maximum(union, 1))


def rank1_rate(distances, gallery_ids, probe_ids):
    """Share of probes whose nearest gallery face has their id (a probe whose id is not in the gallery
    counts as a miss)."""
    if distances.size == 0:
        return math.nan
    nearest = np.asarray(gallery_ids, dtype=object)[np.argmin(distances, axis=1)]
    return float(np.mean(nearest == np.asarray(probe_ids, dtype=object)))


def equal_error_rate(genuine, impostor):
    """Verification EER: a pair is accepted when its distance <= threshold; sweeping the threshold over
    every observed distance, the false-accept rate (impostors accepted) rises and the false-reject rate
    (genuine pairs rejected) falls; the EER is where they cross, interpolated linearly between the two
    thresholds that bracket the crossing.  NaN without genuine or without impostor pairs."""
    genuine, impostor = np.sort(np.ravel(genuine)), np.sort(np.ravel(impostor))
    if genuine.size == 0 or impostor.size == 0:
        return math.nan
    # -inf first: accepting nothing gives FAR 0, FRR 1, so the sweep always starts below the crossing.
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([genuine, impostor]))])
    far = np.searchsorted(impostor, thresholds, side='right') / impostor.size
    frr = 1.0 - np.searchsorted(genuine, thresholds, side='right') / genuine.size
    gap = far - frr  # -1 at -inf, +1 at the largest threshold, never decreasing
    after = int(np.argmax(gap >= 0))
    before = after - 1
    # FAR and FRR move linearly from `before` to `after`; t in (0, 1] is where they meet.
    t = -gap[before] / (gap[after] - gap[before])
    return float(far[before] + t * (far[after] - far[before]))


def recognition(gallery_mm, gallery_ids, probes_mm, probe_ids):
    """Identification and verification of probe faces against a gallery (one or more faces per id).

    Returns {'rank1', 'eer', 'distance' (what was measured), 'n_gallery', 'n_probes'}: rank1 over the
    nearest gallery face of each probe; eer over all probe-gallery pairs (genuine = same id)."""
    distances = face_distances(gallery_mm, probes_mm)
    genuine = np.asarray(probe_ids, dtype=object)[:, np.newaxis] == np.asarray(gallery_ids, dtype=object)
    return {
        'rank1': rank1_rate(distances, gallery_ids, probe_ids),
        'eer': equal_error_rate(distances[genuine], distances[~genuine]),
        'distance': RECOGNITION_DISTANCE,
        'n_gallery': int(len(gallery_ids)),
        'n_probes': int(len(probe_ids)),
    }
