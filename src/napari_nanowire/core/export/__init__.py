"""Model files for other software: TorchScript (PyTorch, QuPath) and BioImage.IO packages
(deepImageJ, Fiji, ilastik, bioimageio.core)."""

from .torchscript import ExportedSegmenter, export_torchscript, trace_segmenter

__all__ = ["ExportedSegmenter", "export_torchscript", "trace_segmenter"]
