"""A whole collection classified frame by frame, and its slices ranked for labelling next.

One owner for what the Predict widget and the CLI's ``suggest`` both do: classify every frame
of a collection (read one at a time, each at its own pixel size) and turn the prediction into a
table with a "label next" rank (:func:`~.results.label_next`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from ..progress import Progress
from .predictor import Predictor
from .results import ClassPrediction, label_next

NEXT_MARK = "label next"
"""The table column holding each suggested image's rank (1 = label first; empty otherwise)."""


def classify_frames(
    predictor: Predictor,
    items: Iterable[tuple[int, np.ndarray, float | None]],
    count: int,
    stop: threading.Event | None = None,
) -> Iterator[Progress]:
    """Classify ``count`` frames of ``items`` ((index, 2D frame, pixel size)), one a step.

    Returns the :class:`ClassPrediction` with the classifier's features of every frame, or None
    when stopped before the last.
    """
    predictor.require("classifier")
    rows, features = [], []
    for _, result in predictor.predict_each(items, ["classifier"], stop=stop):
        rows.append(result.classes.probabilities[0])
        features.append(result.classes.features[0])
        yield Progress("predict", len(rows), count, message="classified")
    if len(rows) < count:  # stopped
        return None
    return ClassPrediction(predictor.class_names, np.stack(rows), np.stack(features))


def ranked_table(
    prediction: ClassPrediction, names: list[str], labels: list[str | None], suggest: int
) -> pd.DataFrame:
    """One row per image: prediction, confidence, "label next" rank, the user's label, and the
    probabilities and uncertainty (normalised entropy, margin) of the prediction.

    ``suggest`` unlabelled images get a "label next" rank (1 first, empty for the others): with
    the prediction's features, the most typical image of each part of the collection no
    labelled image covers yet, largest part first (with few labels these teach the classifier
    more than the least certain ones); without, the least certain first (:func:`label_next`).
    """
    table = prediction.table().rename(columns={"class": "predicted"})
    table.insert(0, "slice", np.arange(len(names)))
    table.insert(1, "image", names)
    labelled = [label is not None for label in labels]
    picked = label_next(prediction.entropy, suggest, labelled, prediction.features)
    rank = pd.array([pd.NA] * len(names), dtype="Int64")
    rank[picked] = np.arange(1, len(picked) + 1)
    table.insert(4, NEXT_MARK, rank)
    table.insert(5, "your label", [label or "" for label in labels])
    return table


def suggestions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`ranked_table` that have a "label next" rank, in rank order."""
    return table.dropna(subset=NEXT_MARK).sort_values(NEXT_MARK)
