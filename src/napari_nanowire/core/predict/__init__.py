"""Using a trained model on images and files, locally or on a dask cluster.

- ``predictor``: :class:`Predictor` for frames and stacks in memory, and over image files
- ``cluster``: the same prediction as one dask task per file
- ``table``: predictions.csv written as each file finishes, so a killed run keeps its rows
"""

from .predictor import (
    ClassPrediction,
    FramePrediction,
    MaskPrediction,
    Predictor,
    label_next,
    predict_files,
    predict_frames,
)

__all__ = [
    "ClassPrediction",
    "FramePrediction",
    "MaskPrediction",
    "Predictor",
    "label_next",
    "predict_files",
    "predict_frames",
]
