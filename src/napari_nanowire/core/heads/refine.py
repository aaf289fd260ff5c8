"""Per-image intensity refinement of a segmenter's class probabilities.

A net trained on strokes of three images knows which structures are objects, but on a new
image it draws their borders loosely (rings, halos, light background beside dark spheres).
Within one image, the classes usually differ in grey level: after the slowly varying
illumination is subtracted, each class's grey values are modelled by a Gaussian fitted to the
pixels the net assigns to it, and the net's probabilities are combined with those likelihoods
in a band along the net's class borders, refitting a few times (an EM loop, as GrabCut refines
its colour models from a rough segmentation; Rother et al., SIGGRAPH 2004), then lightly
blurred so that neighbours agree. Where the classes do not differ in grey level the Gaussians
overlap and the probabilities hardly change.

The weight, band, illumination scale and blur were chosen on 16 saved models (EMPS and synthetic)
and checked on models trained afresh, partly on other labelled images (benchmarks/RESULTS.md,
"Intensity refinement").
"""

from __future__ import annotations

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
"""Gaussian blur (working pixels) of the refined probabilities: per-pixel grey-level decisions
leave ragged borders and specks on textured surfaces; neighbours should mostly agree (what the
smoothness term of GrabCut's graph cut asks, approximated)."""
BAND_PX = 8
"""Only pixels within this many working pixels of a border between the net's classes change:
the net's borders are what is loose, and far from them grey levels shared by object and
background (shading, a support film, noise) would otherwise flip whole regions. 0: all."""


def refine_probabilities(
    image: np.ndarray,
    probs: np.ndarray,
    weight: float = INTENSITY_WEIGHT,
    refits: int = REFITS,
    band_px: float = BAND_PX,
    flatten_px: float = FLATTEN_PX,
) -> np.ndarray:
    """(C, H, W) class probabilities of a (H, W) image combined with per-class grey-level
    Gaussians fitted to them, near the net's class borders; float32, same shape. ``image`` and
    ``probs`` on one grid (the working scale)."""
    grey = ndimage.gaussian_filter(np.asarray(image, np.float32), SMOOTH_PX)
    if flatten_px:
        grey = grey - illumination(grey, flatten_px)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6)
    log_net = np.log(np.clip(probs, 1e-6, 1.0))
    refined = np.asarray(probs, np.float32)
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
    if band_px:
        classes = probs.argmax(0)
        border = ndimage.grey_dilation(classes, 3) != ndimage.grey_erosion(classes, 3)
        far = ndimage.distance_transform_edt(~border) > band_px
        refined[:, far] = probs[:, far]
    if SMOOTH_RESULT_PX:
        refined = ndimage.gaussian_filter(refined, (0, SMOOTH_RESULT_PX, SMOOTH_RESULT_PX))
    return refined.astype(np.float32)


def illumination(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """The slowly varying part of an image (a Gaussian blur of ``sigma_px``), computed on a
    copy shrunk so the blur is about 8 px wide, then enlarged back: a fraction of the cost."""
    from skimage.transform import resize

    step = max(1, int(sigma_px // 8))
    small = resize(image, [max(1, n // step) for n in image.shape], anti_aliasing=True)
    blurred = ndimage.gaussian_filter(small, sigma_px / step, mode="reflect")
    return resize(blurred, image.shape, order=1).astype(np.float32)
