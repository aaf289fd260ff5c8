"""What a prediction says, with its uncertainty, and which images to label next.

Per image, the normalised entropy of the class probabilities (0 = certain, 1 = uniform) and the
margin between the two most likely classes; per pixel, the normalised entropy of the
segmenter's class probabilities, and its mean over the image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

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
) -> list[int]:
    """Indices of ``n`` unlabelled images worth labelling next.

    With (N, D) ``features`` (the classifier's input): images that stand for the parts of the
    collection no labelled image covers yet. The standardised features are split into as many
    k-means clusters as there are labelled and suggested images; from the largest clusters
    without a labelled image (then the others, largest first), the unlabelled image nearest
    the cluster's centre. This is TypiClust's rule (Hacohen et al., ICML 2022): with few
    labels, typical images of uncovered regions teach a classifier more than the most
    uncertain ones, which are often odd ones. From one label a class plus three rounds of
    suggestions it reached 0.66 on synthetic data where the most uncertain images (spread over
    the features) gave 0.62 and random picks 0.63; on the EMPS images 0.45 against 0.43
    (random 0.47; benchmarks/RESULTS.md, issue 12). Without ``features``: the ``n`` images of
    highest ``uncertainty``, most uncertain first.
    """
    score = np.asarray(uncertainty, dtype=float)
    mask = np.zeros(len(score), bool) if labelled is None else np.asarray(labelled, bool)
    free = np.flatnonzero(~mask)
    by_uncertainty = [int(i) for i in free[np.argsort(-score[free], kind="stable")]]
    if features is None or n <= 0 or not len(free):
        return by_uncertainty[:n]
    feats = np.asarray(features, np.float64)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    k = min(int(mask.sum()) + n, len(feats))
    with warnings.catch_warnings():  # an empty cluster (repeated images) is filled below
        warnings.simplefilter("ignore", UserWarning)
        centres, cluster = kmeans2(feats, k, seed=0, minit="++")
    sizes = np.bincount(cluster, minlength=k)
    covered = np.isin(np.arange(k), cluster[mask])
    picked = []
    for c in np.lexsort((-sizes, covered)):
        if len(picked) == n:
            break
        members = free[cluster[free] == c]
        if len(members):
            distance = np.linalg.norm(feats[members] - centres[c], axis=1)
            picked.append(int(members[np.argmin(distance)]))
    return picked + [i for i in by_uncertainty if i not in picked][: n - len(picked)]


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
