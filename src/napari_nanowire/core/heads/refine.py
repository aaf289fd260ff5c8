"""Per-image intensity refinement of a segmenter's class probabilities.

A net trained on strokes of three images knows which structures are objects, but on a new
image it draws their borders loosely (rings, halos, light background beside dark spheres), and
now and then it swaps object and background on an image unlike its training images. Within one
image, the classes usually differ in grey level: after the slowly varying illumination is
subtracted, each class's grey values are modelled by a Gaussian fitted to the pixels the net
assigns to it, and the net's probabilities are combined with those likelihoods, refitting a few
times (an EM loop, as GrabCut refines its colour models from a rough segmentation; Rother et
al., SIGGRAPH 2004). The border between objects and background is then cut where the image has
edges: a graph cut (PyMaxflow) with the refined probabilities as data term and a
contrast-sensitive Potts term (Boykov and Jolly, ICCV 2001), which removes specks and ragged
borders. Where the classes do not differ in grey level the Gaussians overlap and the net decides.

A model trained on labelled images knows on which side of the grey levels its objects lie
there (:func:`object_polarity`, stored in the model file). Where its answer on a new image does
not put the objects clearly on that side (:data:`MIN_SEPARATION`), it has confused the classes
there (objects on the other side) or called almost everything one class, and the refinement
starts from a threshold of the image (Otsu, the labelled images' polarity) instead of the net.

The settings were chosen on 18 saved models (EMPS and synthetic) and checked on models trained
afresh (benchmarks/RESULTS.md, "Graph cut and polarity check").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

INTENSITY_WEIGHT = 2.0
"""Weight of the grey-level log-likelihoods against the net's log-probabilities: the net's
probabilities count as twice too sure, as nets trained on a few strokes are."""
REFITS = 3
"""Gaussian refits (EM iterations)."""
SMOOTH_PX = 1.0
"""Gaussian blur (working pixels) of the image before its grey levels are modelled: noise."""
FLATTEN_PX = 128
"""Scale (Gaussian sigma, working pixels) of the uneven illumination subtracted before grey
levels are modelled: one Gaussian per class cannot follow a background that darkens across
the field. Large against particles and wires (a 384 px working side)."""
SMOOTH_RESULT_PX = 2.0
"""Gaussian blur (working pixels) of the refined probabilities before the cut."""
SMOOTHNESS = 3.0
"""Weight of the graph cut's pairwise term (per neighbour pair, where the image is flat) against
the data term -log p: larger gives smoother borders and removes larger specks. 1, 2 and 3 were
compared; 3 was best on EMPS and on synthetic wires."""
MIN_SEPARATION = 0.25
"""Least grey-level difference (standard deviations of the flattened image) between the net's
objects and its background, on the labelled images' side, for the net's answer to be kept when
the model knows its polarity. Below it the answer is replaced by a threshold: objects on the
other side (a swap), or no contrast at all (a net that calls nearly every pixel object). 0 (a
sign check) and 0.25 and 0.5 were compared: 0.25 and 0.5 raised the bright EMPS models from
0.758 to 0.788 and 0.785 and left dark ones at 0.816 (0.818) (benchmarks/RESULTS.md)."""
THRESHOLD_CONFIDENCE = 0.8
"""Probability given to the threshold's side when the net's answer is replaced by it."""
CUT_SHARE = 0.55
"""Share of the cut's one-hot decision in the returned probabilities: enough that the argmax
follows the cut, while the rest keeps the refined probabilities' uncertainty."""


def refine_probabilities(
    image: np.ndarray,
    probs: np.ndarray,
    polarity: int = 0,
    weight: float = INTENSITY_WEIGHT,
    refits: int = REFITS,
    flatten_px: float = FLATTEN_PX,
    smoothness: float = SMOOTHNESS,
) -> np.ndarray:
    """(C, H, W) class probabilities (class 0 background) of a (H, W) image combined with
    per-class grey-level Gaussians, then cut between objects and background along the image's
    edges; float32, same shape. ``polarity`` (+1 objects brighter, -1 darker, 0 unknown) is the
    labelled images' (:func:`object_polarity`); an answer not clearly on that side is replaced
    by a threshold. ``image`` and ``probs`` on one grid (the working scale)."""
    grey = ndimage.gaussian_filter(np.asarray(image, np.float32), SMOOTH_PX)
    if flatten_px:
        grey = grey - illumination(grey, flatten_px)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6)
    probs = np.asarray(probs, np.float32)
    if polarity and polarity * separation(grey, 1.0 - probs[0]) < MIN_SEPARATION:
        probs = threshold_probabilities(grey, probs, polarity)
    log_net = np.log(np.clip(probs, 1e-6, 1.0))
    refined = probs
    for _ in range(refits):
        weights = refined.reshape(len(refined), -1).sum(1) + 1e-6
        mean = (refined * grey).reshape(len(refined), -1).sum(1) / weights
        var = (refined * (grey - mean[:, None, None]) ** 2).reshape(len(refined), -1).sum(1)
        var = var / weights + 1e-4
        log_like = -0.5 * (grey - mean[:, None, None]) ** 2 / var[:, None, None]
        log_like -= 0.5 * np.log(var)[:, None, None]
        score = log_net + weight * log_like
        score -= score.max(0, keepdims=True)
        refined = np.exp(score)
        refined /= refined.sum(0, keepdims=True)
    if SMOOTH_RESULT_PX:
        refined = ndimage.gaussian_filter(refined, (0, SMOOTH_RESULT_PX, SMOOTH_RESULT_PX))
    if smoothness:
        objects = cut_objects(grey, 1.0 - refined[0], smoothness)
        classes = np.where(objects, refined[1:].argmax(0) + 1, 0)  # the net picks the class
        onehot = np.eye(len(refined), dtype=np.float32)[classes].transpose(2, 0, 1)
        refined = (1 - CUT_SHARE) * refined + CUT_SHARE * onehot
    return refined.astype(np.float32)


def separation(image: np.ndarray, objects: np.ndarray) -> float:
    """Mean grey level of the objects (a mask, or each pixel's object probability) minus that
    of the rest of ``image``; 0 if either is empty."""
    grey = np.asarray(image, np.float64)
    objects = np.asarray(objects, np.float64)
    if objects.sum() < 1 or (1 - objects).sum() < 1:
        return 0.0
    inside = (objects * grey).sum() / objects.sum()
    outside = ((1 - objects) * grey).sum() / (1 - objects).sum()
    return float(inside - outside)


def object_polarity(image: np.ndarray, objects: np.ndarray) -> int:
    """+1 if the objects are brighter on average than the rest of ``image``, -1 if darker, 0 if
    either is empty (see :func:`separation`)."""
    return int(np.sign(separation(image, objects)))


def labelled_polarity(images: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> int:
    """On which side of the grey levels the labelled objects lie (+1 brighter, -1 darker than
    the labelled background), if every image with both kinds of labels agrees; 0 if they
    disagree (a mixed-contrast collection, or textured objects whose painted parts are darker
    on some images) or none has both. From the labels, not the net's answers: a net that
    confused the classes would confirm itself."""
    votes = set()
    for image, target in zip(images, targets, strict=True):
        if (target == 0).any() and (target > 0).any():
            labelled = target >= 0
            votes.add(object_polarity(image[labelled], target[labelled] > 0))
    votes.discard(0)
    return votes.pop() if len(votes) == 1 else 0


def threshold_probabilities(grey: np.ndarray, probs: np.ndarray, polarity: int) -> np.ndarray:
    """Probabilities from an Otsu threshold of ``grey`` with objects on the ``polarity`` side;
    objects split between the object classes as ``probs`` splits them."""
    from skimage.filters import threshold_otsu

    above = grey > threshold_otsu(grey)
    objects = np.where(above if polarity > 0 else ~above, THRESHOLD_CONFIDENCE, 0.0)
    objects = np.maximum(objects, 1.0 - THRESHOLD_CONFIDENCE)
    share = probs[1:] / np.clip(probs[1:].sum(0, keepdims=True), 1e-6, None)
    return np.concatenate([(1.0 - objects)[None], objects * share]).astype(np.float32)


def cut_objects(grey: np.ndarray, p_object: np.ndarray, smoothness: float) -> np.ndarray:
    """Object pixels (bool) of a binary graph cut: data term -log p, pairwise term
    ``smoothness`` exp(-beta d^2) between 4-neighbours of grey difference d (beta from the mean
    d^2, as in GrabCut), so borders follow edges and isolated pixels join their surroundings."""
    import maxflow

    p = np.clip(p_object, 1e-4, 1 - 1e-4).astype(np.float64)
    dy = np.diff(grey, axis=0, append=grey[-1:]) ** 2
    dx = np.diff(grey, axis=1, append=grey[:, -1:]) ** 2
    beta = 1.0 / (2.0 * np.mean(np.concatenate([dx.ravel(), dy.ravel()])) + 1e-9)
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(p.shape)
    right = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    down = right.T
    graph.add_grid_edges(nodes, smoothness * np.exp(-beta * dx), right, symmetric=True)
    graph.add_grid_edges(nodes, smoothness * np.exp(-beta * dy), down, symmetric=True)
    graph.add_grid_tedges(nodes, -np.log(1 - p), -np.log(p))
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)


def illumination(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """The slowly varying part of an image (a Gaussian blur of ``sigma_px``), computed on a
    copy shrunk so the blur is about 8 px wide, then enlarged back: a fraction of the cost.
    The edges are padded by point reflection, which continues a gradient across them: a
    mirror (or a constant) would bend it back, and a background darkening towards one side
    would be left bright at that side."""
    from skimage.transform import resize

    step = max(1, int(sigma_px // 8))
    small = resize(image, [max(1, n // step) for n in image.shape], anti_aliasing=True)
    pad = min(int(3 * sigma_px / step), min(small.shape) - 1)
    padded = np.pad(small, pad, mode="reflect", reflect_type="odd")
    inner = tuple(slice(pad, pad + n) for n in small.shape)
    blurred = ndimage.gaussian_filter(padded, sigma_px / step)[inner]
    return resize(blurred, image.shape, order=1).astype(np.float32)
