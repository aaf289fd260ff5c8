"""Model files for other software: TorchScript (PyTorch, QuPath) and BioImage.IO packages
(deepImageJ, Fiji, ilastik, bioimageio.core), of a segmenter or a classifier."""

from .classifier import ExportedClassifier, trace_classifier
from .torchscript import ExportedSegmenter, export_torchscript, trace_segmenter

__all__ = [
    "ExportedClassifier",
    "ExportedSegmenter",
    "export_torchscript",
    "trace_classifier",
    "trace_segmenter",
]
