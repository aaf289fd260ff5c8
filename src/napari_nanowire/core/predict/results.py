"""What a prediction says, with its uncertainty, and which images to label next.

Per image, the normalised entropy of the class probabilities (0 = certain, 1 = uniform) and the
margin between the two most likely classes; per pixel, the normalised entropy of the
segmenter's class probabilities, and its mean over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..heads.scalebar import Annotation


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Entropy of probability vectors along ``axis``, divided by its maximum: in [0, 1]."""
    n = probs.shape[axis]
    if n < 2:
        return np.zeros_like(np.take(probs, 0, axis), dtype=np.float32)
    p = np.clip(probs, 1e-12, 1.0)
    return (-(p * np.log(p)).sum(axis) / np.log(n)).astype(np.float32)


def margin(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Difference between the largest and second-largest probability along ``axis``."""
    top = np.sort(probs, axis=axis)
    return np.take(top, -1, axis) - np.take(top, -2, axis)


def label_next(
    uncertainty: Sequence[float],
    n: int = 5,
    labelled: Sequence[bool] | None = None,
    features: np.ndarray | None = None,
    pool: int = 3,
) -> list[int]:
    """Indices of ``n`` unlabelled images worth labelling next, the most uncertain first.

    Without ``features``: the ``n`` most uncertain. With (N, D) ``features``: among the
    ``pool * n`` most uncertain, a greedy k-center pick, so the suggestions are spread over the
    feature space instead of being near-duplicates: each next pick is the candidate farthest
    (standardised Euclidean distance, weighted by its uncertainty) from the images already
    picked or labelled.
    """
    score = np.asarray(uncertainty, dtype=float)
    mask = np.zeros(len(score), bool) if labelled is None else np.asarray(labelled, bool)
    order = [i for i in np.argsort(-score, kind="stable") if not mask[i]]
    if features is None or n <= 0 or not order:
        return [int(i) for i in order[:n]]
    feats = np.asarray(features, np.float64)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    candidates = np.array(order[: max(n, pool * n)])
    anchors = [candidates[0], *np.flatnonzero(mask)]
    nearest = np.min(
        np.linalg.norm(feats[candidates, None] - feats[None, anchors], axis=-1), axis=1
    )
    picked = [int(candidates[0])]
    while len(picked) < min(n, len(candidates)):
        gain = nearest * score[candidates]
        gain[np.isin(candidates, picked)] = -np.inf
        best = int(candidates[int(np.argmax(gain))])
        picked.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(feats[candidates] - feats[best], axis=1))
    return picked


@dataclass
class ClassPrediction:
    """Class probabilities of N images and what follows from them."""

    class_names: list[str]
    probabilities: np.ndarray  # (N, n_classes), calibrated (see the README's Confidence)
    features: np.ndarray | None = None  # (N, D) the classifier's input, for label_next

    @property
    def classes(self) -> list[str]:
        """The most likely class of each image."""
        return [self.class_names[k] for k in self.probabilities.argmax(1)]

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the most likely class."""
        return self.probabilities.max(1)

    @property
    def entropy(self) -> np.ndarray:
        """Normalised entropy per image (higher = less sure)."""
        return entropy(self.probabilities, 1)

    @property
    def margin(self) -> np.ndarray:
        """Top-1 minus top-2 probability per image (lower = less sure)."""
        return margin(self.probabilities, 1)

    def table(self) -> pd.DataFrame:
        """class, confidence, prob_<class>..., entropy, margin: one row per image."""
        table = pd.DataFrame({"class": self.classes, "confidence": self.confidence})
        for k, name in enumerate(self.class_names):
            table[f"prob_{name}"] = self.probabilities[:, k]
        table["entropy"] = self.entropy
        table["margin"] = self.margin
        return table


@dataclass
class MaskPrediction:
    """A predicted mask with its uncertainty."""

    mask: np.ndarray  # uint8, the input's shape; 0 = background, k = class k
    mean_entropy: float
    entropy_map: np.ndarray | None = None  # float32, the input's shape, if asked for
    ignored: list[Annotation] = field(default_factory=list)  # scale bars etc. set to background


@dataclass
class FramePrediction:
    """What every asked-for head of a model says about one 2D image."""

    classes: ClassPrediction | None = None  # one row, with the classifier
    mask: MaskPrediction | None = None  # with the segmenter

    def row(self, mask_file: str | None = None) -> dict:
        """The frame's table columns: class, confidence, prob_<class>..., entropy, margin
        (classifier), then ``mask`` (``mask_file``, if given) and mask_entropy (segmenter)."""
        row = self.classes.table().to_dict("records")[0] if self.classes is not None else {}
        if self.mask is not None:
            row.update({"mask": mask_file} if mask_file else {})
            row["mask_entropy"] = self.mask.mean_entropy
            row["ignored"] = describe(self.mask.ignored)
        return row


def describe(annotations: Sequence[Annotation]) -> str:
    """Ignored regions for the table: "bar x0,y0,x1,y1; ..." (empty if none)."""
    return "; ".join(f"{a.kind} {a.x0},{a.y0},{a.x1},{a.y1}" for a in annotations)
