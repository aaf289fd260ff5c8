"""Using a trained model on images and files, locally or on a dask cluster.

- ``predictor``: :class:`Predictor`, a loaded model for frames and stacks in memory
- ``results``: what a prediction says, its uncertainty, and which images to label next
- ``collection``: a whole collection classified frame by frame and ranked for labelling
- ``files``: prediction over image files, written frame by frame (the CLI's ``predict``)
- ``table``: predictions.csv written as each file finishes, so a killed run keeps its rows
- ``cluster``: the same prediction as one dask task per file
"""

from .collection import NEXT_MARK, classify_frames, ranked_table, suggestions
from .files import predict_files, predict_frames
from .predictor import Predictor
from .results import (
    ClassPrediction,
    FramePrediction,
    MaskPrediction,
    describe,
    entropy,
    label_next,
    margin,
)

__all__ = [
    "NEXT_MARK",
    "ClassPrediction",
    "FramePrediction",
    "MaskPrediction",
    "Predictor",
    "classify_frames",
    "describe",
    "entropy",
    "label_next",
    "margin",
    "predict_files",
    "predict_frames",
    "ranked_table",
    "suggestions",
]
