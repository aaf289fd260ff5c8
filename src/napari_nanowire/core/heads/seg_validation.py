"""Honest validation for segmenter training: what to hold out, and when to stop.

IoU on the strokes a net was trained on reads about 1.0 while whole-frame IoU is far lower, so
training is judged on labels it never trained on. With two or more labelled images one whole
image is held out (the seed picks which, so runs with other seeds hold out others); with one,
a share of its strokes (whole connected strokes, or blocks of a dense mask) is held out and
the rest trained on. Training stops when the validation IoU has not improved for ``patience``
checks, and the best weights are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..masks import IGNORE
from .postprocess import MIN_WORKING_PX2, PostProcess, postprocess_mask

VAL_SHARE = 0.25
"""Share of one image's labelled pixels held out when it is the only labelled image."""


@dataclass
class Split:
    """Training targets per image (-1 where held out) and the validation labels."""

    train_targets: list[np.ndarray]
    val_image: int | None
    """Index of the image validated on (None: no validation possible)."""
    val_targets: np.ndarray | None
    held_out_image: bool
    """True when the whole validation image is kept out of training."""
    description: str


def holdout_split(targets: list[np.ndarray], seed: int = 0) -> Split:
    """Split training targets (class indices, -1 = unlabelled) into training and validation."""
    labelled = [i for i, t in enumerate(targets) if (t >= 0).any()]
    varied = [i for i in labelled if len(np.unique(targets[i][targets[i] >= 0])) > 1]
    if len(labelled) >= 2:
        pick = varied or labelled
        v = pick[seed % len(pick)]
        train = [np.full_like(t, IGNORE) if i == v else t for i, t in enumerate(targets)]
        return Split(train, v, targets[v], True, f"image {v} held out")
    if not labelled:
        return Split(list(targets), None, None, False, "no labels")
    i = labelled[0]
    held = stroke_holdout(targets[i], np.random.default_rng(seed))
    if held is None:
        return Split(list(targets), None, None, False, "too few strokes to hold any out")
    train = [t.copy() for t in targets]
    train[i][held] = IGNORE
    val = np.full_like(targets[i], IGNORE)
    val[held] = targets[i][held]
    share = held.sum() / (targets[i] >= 0).sum()
    return Split(train, i, val, False, f"{share:.0%} of the labels of image {i} held out")


def stroke_holdout(
    target: np.ndarray, rng: np.random.Generator, share: float = VAL_SHARE
) -> np.ndarray | None:
    """Pixels to hold out of one image's labels, every class in both parts; None if impossible.

    Whole connected strokes are held out per class until ``share`` of that class is reached,
    keeping at least one stroke for training; a class painted as one region (a dense mask)
    falls back to square blocks of the image.
    """
    held = np.zeros(target.shape, bool)
    for c in np.unique(target[target >= 0]):
        parts, n = ndimage.label(target == c)
        if n < 2:
            return block_holdout(target, rng, share)
        sizes = np.bincount(parts.ravel())[1:]
        taken = 0
        for k in rng.permutation(n)[: n - 1]:
            held |= parts == k + 1
            taken += sizes[k]
            if taken >= share * sizes.sum():
                break
    return held


def block_holdout(
    target: np.ndarray, rng: np.random.Generator, share: float = VAL_SHARE, grid: int = 4
) -> np.ndarray | None:
    """Blocks of a ``grid`` x ``grid`` partition holding about ``share`` of the labels."""
    classes = np.unique(target[target >= 0])
    rows = np.array_split(np.arange(target.shape[0]), grid)
    cols = np.array_split(np.arange(target.shape[1]), grid)
    total = (target >= 0).sum()
    for _ in range(20):
        held = np.zeros(target.shape, bool)
        for b in rng.permutation(grid * grid):
            r, c = rows[b // grid], cols[b % grid]
            held[r[0] : r[-1] + 1, c[0] : c[-1] + 1] = True
            if (target[held] >= 0).sum() >= share * total:
                break
        kept = target[~held]
        if all((target[held] == c).any() and (kept == c).any() for c in classes):
            return held & (target >= 0)
    return None


def iou_dice(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, valid: np.ndarray | None = None
) -> tuple[float, float]:
    """Mean IoU and Dice over foreground classes 1..n_classes-1 (only where ``valid``).

    Classes absent from both prediction and truth are skipped; (nan, nan) if all are.
    """
    if valid is not None:
        pred, truth = pred[valid], truth[valid]
    ious, dices = [], []
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        inter, union = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
        if union:
            ious.append(inter / union)
            dices.append(2 * inter / (p.sum() + t.sum()))
    return (float(np.mean(ious)), float(np.mean(dices))) if ious else (np.nan, np.nan)


def held_out_iou(
    pred: np.ndarray, targets: np.ndarray, n_classes: int, fill: bool = False
) -> float:
    """Mean foreground IoU of a working-scale class map on the held-out labels, after the
    clean-up prediction does by default (and filling every hole, with ``fill``)."""
    clean = PostProcess(
        min_object_px2=MIN_WORKING_PX2, min_hole_px2=MIN_WORKING_PX2, fill_holes=fill
    )
    return iou_dice(postprocess_mask(pred, clean), targets, n_classes, targets >= 0)[0]


def refine_scores(probs: np.ndarray, refined: np.ndarray, targets: np.ndarray) -> dict:
    """IoU on the held-out labels without and with the intensity refinement (:mod:`.refine`),
    for the record: held-out strokes lie inside objects and far out in the background, away
    from the borders the refinement moves, and on the EMPS and synthetic models of
    benchmarks/RESULTS.md their change did not tell whether the refinement helped. ``probs``
    and ``refined`` (C, H, W) at the working scale."""
    return {
        "val_iou_unrefined": held_out_iou(probs.argmax(0), targets, len(probs)),
        "val_iou_refined": held_out_iou(refined.argmax(0), targets, len(refined)),
    }


def fill_choice(pred: np.ndarray, targets: np.ndarray, n_classes: int) -> tuple[bool, dict]:
    """Whether filling every enclosed hole raises a mask's IoU on held-out labels; both IoUs.

    Nets leave particles whose rim is brighter than their inside as rings, and filling them is
    right there, wrong for a wire network that encloses background: the held-out labels say
    which the user's data is. ``pred`` and ``targets`` at the working scale. On EMPS dark
    particles filling raised the median IoU of every model by 0.02-0.04; on bright SEM spheres
    it changed it by -0.05 to +0.01.
    """
    plain = held_out_iou(pred, targets, n_classes)
    fill = held_out_iou(pred, targets, n_classes, fill=True)
    return bool(fill > plain), {"val_iou_clean": plain, "val_iou_filled": fill}


class EarlyStop:
    """Tracks the best validation score; ``done`` after ``patience`` checks without progress.

    A score equal to the best (within ``min_delta``) keeps the newer weights but is not
    progress: held-out strokes are easy and their IoU often saturates at 1.0 early, while the
    net still improves away from them. ``patience`` 0 never stops. A NaN score counts as no
    progress.
    """

    def __init__(self, patience: int, min_delta: float = 1e-3) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.best_step = 0
        self.bad = 0

    def update(self, step: int, score: float) -> bool:
        """Record a validation score; True when the weights should be kept as the best."""
        if math.isnan(score) or score < self.best - self.min_delta:
            self.bad += 1
            return False
        self.bad = 0 if score > self.best + self.min_delta else self.bad + 1
        self.best, self.best_step = max(score, self.best), step
        return True

    @property
    def done(self) -> bool:
        """True when the last ``patience`` checks brought no improvement."""
        return self.patience > 0 and self.bad >= self.patience
