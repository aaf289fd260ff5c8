"""Using a trained model on images and files, locally or on a dask cluster."""

from .predictor import (
    ClassPrediction,
    MaskPrediction,
    Predictor,
    label_next,
    predict_files,
    predict_frames,
)

__all__ = [
    "ClassPrediction",
    "MaskPrediction",
    "Predictor",
    "label_next",
    "predict_files",
    "predict_frames",
]
