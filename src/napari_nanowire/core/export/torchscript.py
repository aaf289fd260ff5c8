"""A model file's segmenter or classifier as one TorchScript file that needs only PyTorch to run.

The classifier's module is described in :mod:`.classifier`. The segmenter's module takes a (B,
1, Y, X) float32 batch of raw images at the model's pixel size and returns (B, C, Y, X) class
probabilities (softmax; the mask is their argmax). It does this package's per-image
normalisation itself (clip to the 0.5-99.5 percentiles, then zero mean and unit variance, as
:func:`~napari_nanowire.core.model.preprocess.normalize`), so results match
:meth:`~napari_nanowire.core.predict.predictor.Predictor.segment` on one tile. Class names, the
pixel size and the sizes it takes travel in the file as ``napari_nanowire.json``
(``torch.jit.load(path, _extra_files={"napari_nanowire.json": ""})``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import NanowireError
from ..heads.scale import working_from_meta
from ..heads.unet import UNet, load_segmenter
from ..io import atomic_path
from ..model.modelfile import ModelFile, load_model

EXTRA_FILE = "napari_nanowire.json"
MIN_SIDE, STEP = 64, 32
"""Input sides the export declares: 64 + 32 n px (the encoder's coarsest map is 1/32)."""


@torch.jit.script_if_tracing
def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """Each image of a (B, 1, Y, X) batch clipped to its 0.5-99.5 percentiles (numpy's linear
    interpolation), then to zero mean and unit variance; constant images become zeros.

    Scripted when traced, so the percentile positions follow the input's size.
    """
    flat = x.flatten(1).sort(1).values
    last = flat.shape[1] - 1
    bounds = []
    for q in [0.5, 99.5]:
        position = q / 100.0 * last
        low = int(position)
        high = min(low + 1, last)
        weight = position - low
        bounds.append((flat[:, low] * (1 - weight) + flat[:, high] * weight)[:, None, None, None])
    clipped = torch.minimum(torch.maximum(x, bounds[0]), bounds[1])
    mean = clipped.mean(dim=(1, 2, 3), keepdim=True)
    std = clipped.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return torch.where(std < 1e-12, torch.zeros_like(x), (clipped - mean) / std.clamp_min(1e-12))


class ExportedSegmenter(nn.Module):
    """Per-image normalisation, the U-Net and a softmax: raw images in, probabilities out."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, Y, X) raw images to (B, C, Y, X) class probabilities."""
        return torch.softmax(self.net(normalize_batch(x)), 1)


def example_side(model: ModelFile) -> int:
    """A valid input side near the segmenter's tile (64 + 32 n px, at most 512)."""
    tile = model.meta.segmenter.tile if model.meta.segmenter else 256
    return MIN_SIDE + STEP * max(0, (min(tile, 512) - MIN_SIDE) // STEP)


def trace_segmenter(model: ModelFile, path: str = "") -> torch.jit.ScriptModule:
    """The traced :class:`ExportedSegmenter` of a model file, checked against the eager module
    at a second input size (tracing records the shapes once; the U-Net resizes by them)."""
    module = ExportedSegmenter(load_segmenter(model, path)).eval()
    side = example_side(model)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 1, side, side, generator=generator)
    check = torch.rand(2, 1, side + STEP, side + 2 * STEP, generator=generator)
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
        difference = float((traced(check) - module(check)).abs().max())
    if difference > 1e-4:
        raise NanowireError(
            f"The TorchScript export of {path or 'the model'} differs from the model by "
            f"{difference:.2g} at another input size; please report this with the model file."
        )
    return traced


def network_pixel_size(model: ModelFile) -> float | None:
    """nm per pixel of the images the exported net expects: the segmenter's working scale
    (images are resampled to it before the net in napari-nanowire; an export does not)."""
    return working_from_meta(model.meta).pixel_size_nm


def export_metadata(model: ModelFile) -> dict:
    """What a user of the exported file needs: classes, pixel size, input sizes, provenance."""
    return {
        "format": "napari-nanowire segmenter (TorchScript)",
        "head": "segmenter",
        "input": "(B, 1, Y, X) float32 raw grayscale images resampled to pixel_size_nm (or, "
        "uncalibrated, shrunk by downsample); Y, X = 64 + 32 n",
        "output": "(B, C, Y, X) class probabilities; the mask is their argmax over C",
        "normalisation": "per image inside the module: clip to the 0.5-99.5 percentiles, then "
        "zero mean and unit variance",
        "mask_classes": list(model.meta.mask_classes or ()),
        "pixel_size_nm": network_pixel_size(model),
        "downsample": working_from_meta(model.meta).downsample,
        "encoder": model.meta.encoder,
        "min_side_px": MIN_SIDE,
        "step_px": STEP,
    }


def save_traced(traced: torch.jit.ScriptModule, out: Path, metadata: dict) -> Path:
    """Write the TorchScript file atomically, with ``metadata`` inside as :data:`EXTRA_FILE`."""
    extra = {EXTRA_FILE: json.dumps(metadata, indent=1)}
    with atomic_path(out) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    return out


def choose_head(model: ModelFile, head: str | None = None, path: str = "") -> str:
    """The head to export: ``head`` if the file has it, else the file's only head."""
    heads = list(model.meta.heads)
    if head is not None:
        if head not in heads:
            raise NanowireError(
                f"Model file {path or '(in memory)'} has no {head} head (it has: "
                f"{', '.join(heads) or 'none'})."
            )
        return head
    if not heads:
        raise NanowireError(
            f"Model file {path or '(in memory)'} holds no classifier or segmenter to export; "
            "train one with train-classifier or train-segmenter."
        )
    if len(heads) > 1:
        raise NanowireError(
            f"Model file {path or '(in memory)'} holds a {' and a '.join(heads)}: choose the "
            "one to export with --head (Python: head=...)."
        )
    return heads[0]


def trace_head(model: ModelFile, head: str, path: str = "") -> torch.jit.ScriptModule:
    """The traced export module of ``head`` (``"segmenter"`` or ``"classifier"``)."""
    if head == "classifier":
        from .classifier import trace_classifier

        return trace_classifier(model, path)
    return trace_segmenter(model, path)


def head_metadata(model: ModelFile, head: str) -> dict:
    """The ``napari_nanowire.json`` of an exported head."""
    if head == "classifier":
        from .classifier import classifier_metadata

        return classifier_metadata(model)
    return export_metadata(model)


def export_torchscript(
    model_path: str | os.PathLike, out: str | os.PathLike, head: str | None = None
) -> Path:
    """Export a head of a model file (``head``, or its only one) to a TorchScript file ``out``
    (``.pt``)."""
    model = load_model(model_path)
    out = Path(out)
    if out.suffix != ".pt":
        raise NanowireError(f"Name the TorchScript file with .pt (got {out}).")
    head = choose_head(model, head, str(model_path))
    traced = trace_head(model, head, str(model_path))
    return save_traced(traced, out, head_metadata(model, head))
