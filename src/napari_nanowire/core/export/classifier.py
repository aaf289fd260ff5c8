"""A model file's classifier as one TorchScript module: a raw square image in, calibrated class
probabilities out.

napari-nanowire classifies an image by (1) normalising it (clip to the 0.5-99.5 percentiles,
zero mean, unit variance), (2) resampling it to its working scale, (3) shrinking it by each of
the classifier's feature scales (Gaussian anti-aliasing, then bilinear resampling, as
``skimage.transform.resize``), (4) averaging the encoder's pooled features over up to
``max_tiles`` tiles of each scale, (5) appending hand-made descriptors and mask measurements
when the classifier uses them, (6) the linear head and (7) a softmax at the calibrated
temperature.

The exported module does (1), (3), (4), (6) and (7) exactly, for one fixed input size: an image
of ``side`` x ``side`` px that needs no resampling in (2), which is what napari-nanowire does
with a square image of that size and no pixel size (it is the classifier's working size), or
with an image at ``pixel_size_nm`` of the export. Step (5) has no exact TorchScript form (grey-
level co-occurrence, local binary patterns, Otsu thresholds and connected components; the
measurements need the segmenter and the measuring code), so a classifier that uses descriptors
or measurements is refused rather than exported without them. Painting over burned-in scale
bars and labels before (1) is not exported either: it changes only images that carry them, and
the metadata says to crop those off (as the segmenter's export leaves them to the user).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NanowireError
from ..heads.features import encoder_from
from ..heads.linear import LinearHead
from ..heads.tiling import tile_grid
from ..model.modelfile import ModelFile
from .torchscript import normalize_batch

TRUNCATE = 4.0
"""Gaussian kernel radius in sigmas, as scipy.ndimage.gaussian_filter (which skimage uses)."""


def check_classifier_exportable(model: ModelFile, path: str = "") -> None:
    """Refuse a classifier whose prediction the exported module could not reproduce exactly."""
    settings = model.meta.classifier
    if "classifier" not in model.meta.heads or settings is None:
        raise NanowireError(f"Model file {path or '(in memory)'} has no classifier head.")
    missing, fixes = [], []
    if settings.descriptors or settings.spectrum:
        missing.append(
            "hand-made image descriptors (grey-level co-occurrence, local binary patterns, "
            "Otsu threshold and connected components, Hessian scale spectrum)"
        )
        fixes.append(
            "retrain with `train-classifier --no-descriptors` (or untick 'classifier with "
            "hand-made descriptors' in the Train widget)"
        )
    if settings.measurements:
        missing.append("measurements of the segmenter's masks")
        fixes.append("leave out --measurements")
    if missing:
        raise NanowireError(
            f"The classifier of {path or 'this model'} uses {' and '.join(missing)}, which have "
            "no exact TorchScript form: an export without them would give other probabilities. "
            f"To export a classifier, {' and '.join(fixes)}, so it uses the encoder's features "
            "alone (Python API: ClassifierConfig(descriptors=False, measurements=False)); or "
            "export the segmenter."
        )
    if settings.working_size is None and settings.zoom != 1 and not model.meta.pixel_size_nm:
        raise NanowireError(
            f"The classifier of {path or 'this model'} predates working sizes and resamples "
            "every image by its zoom: it has no input size that the export could take as is. "
            "Train it again to export it."
        )


def input_side(model: ModelFile) -> int:
    """The exported classifier's input side: its working size (4 tiles for older files)."""
    settings = model.meta.classifier
    return int(settings.working_size or 4 * (settings.tile or 64))


def input_pixel_size(model: ModelFile) -> float | None:
    """nm per pixel at which napari-nanowire takes an image as is (model pixel size / zoom)."""
    px = model.meta.pixel_size_nm
    return float(px) / float(model.meta.classifier.zoom or 1.0) if px else None


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """scipy.ndimage's 1D Gaussian kernel (radius ``int(4 sigma + 0.5)``, summing to 1)."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * x * x / (sigma * sigma))
    return torch.from_numpy(kernel / kernel.sum()).float()


class Shrink(nn.Module):
    """``skimage.transform.resize(image, shape, order=1, anti_aliasing=True)`` of a batch of
    (B, 1, Y, X) images to a smaller fixed shape: a Gaussian of sigma (factor - 1) / 2 per axis
    (mirrored edges), bilinear resampling at pixel centres, clipped to the input's range."""

    def __init__(self, in_shape: tuple[int, int], out_shape: tuple[int, int]) -> None:
        super().__init__()
        self.out_shape = out_shape
        sigmas = [max(0.0, (i / o - 1) / 2) for i, o in zip(in_shape, out_shape, strict=True)]
        kernels = [gaussian_kernel(s) if s > 0 else torch.ones(1) for s in sigmas]
        for n, radius in zip(in_shape, [(len(k) - 1) // 2 for k in kernels], strict=True):
            if radius >= n:
                raise NanowireError(
                    f"The export cannot shrink a {n} px side with a {radius} px blur radius; "
                    "train the classifier with a larger working size."
                )
        self.register_buffer("kernel_y", kernels[0].view(1, 1, -1, 1))
        self.register_buffer("kernel_x", kernels[1].view(1, 1, 1, -1))
        self.ry, self.rx = ((len(k) - 1) // 2 for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, Y, X) to (B, 1, *out_shape)."""
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        ry, rx = self.ry, self.rx
        if ry:
            x = F.conv2d(F.pad(x, (0, 0, ry, ry), mode="reflect"), self.kernel_y)
        if rx:
            x = F.conv2d(F.pad(x, (rx, rx, 0, 0), mode="reflect"), self.kernel_x)
        x = F.interpolate(x, size=self.out_shape, mode="bilinear", align_corners=False)
        return torch.minimum(torch.maximum(x, low), high)


class ExportedClassifier(nn.Module):
    """Normalisation, multi-scale tile features, the linear head and the calibrated softmax for
    (B, 1, side, side) raw images; returns (B, n_classes) probabilities."""

    def __init__(
        self,
        encoder: nn.Module,
        head: LinearHead,
        side: int,
        tile: int,
        max_tiles: int,
        scales: list[float],
        temperature: float,
    ) -> None:
        super().__init__()
        self.encoder, self.head = encoder.eval(), head.eval()
        self.temperature = float(temperature)
        self.side = side
        self.shrinks = nn.ModuleList()
        self.tiles: list[list[tuple[int, int, int, int]]] = []
        for scale in scales:
            shape = (side, side) if scale == 1 else (max(1, round(side * scale)),) * 2
            self.shrinks.append(nn.Identity() if scale == 1 else Shrink((side, side), shape))
            self.tiles.append(tile_grid(shape, tile, max_tiles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, side, side) raw images to (B, n_classes) class probabilities."""
        logits = self.head(self.features(x))
        return torch.softmax(logits / self.temperature, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, side, side) raw images to the (B, D) features the linear head takes."""
        x = normalize_batch(x)
        parts = []
        for shrink, tiles in zip(self.shrinks, self.tiles, strict=True):
            scaled = shrink(x)
            by_shape: dict[tuple[int, int], list[torch.Tensor]] = {}
            for y, x0, h, w in tiles:
                by_shape.setdefault((h, w), []).append(scaled[:, :, y : y + h, x0 : x0 + w])
            total = torch.zeros(())
            for crops in by_shape.values():  # (tiles, B, D) per tile size, summed over tiles
                feats = self.encoder(torch.cat(crops, 0)).float()
                total = total + feats.view(len(crops), -1, feats.shape[1]).sum(0)
            parts.append(total / len(tiles))
        return torch.cat(parts, 1)


def build_classifier(model: ModelFile, path: str = "") -> ExportedClassifier:
    """The eager :class:`ExportedClassifier` of a model file (refused where it would differ)."""
    check_classifier_exportable(model, path)
    settings = model.meta.classifier
    encoder = encoder_from(model, path)
    weight = model.part("classifier").get("linear.weight")
    in_dim = encoder.out_dim * len(settings.scales) if weight is None else weight.shape[1]
    if in_dim != encoder.out_dim * len(settings.scales):
        raise NanowireError(
            f"The classifier of {path or 'this model'} takes {in_dim} features, not the "
            f"{encoder.out_dim} x {len(settings.scales)} of its encoder scales; cannot export it."
        )
    head = LinearHead(in_dim, len(model.meta.class_names or ()))
    model.load_part("classifier", head, path)
    tile = int(settings.tile or model.meta.image_size or 64)
    return ExportedClassifier(
        encoder,
        head,
        input_side(model),
        tile,
        settings.max_tiles,
        list(settings.scales),
        settings.temperature,
    ).eval()


def trace_classifier(model: ModelFile, path: str = "") -> torch.jit.ScriptModule:
    """The traced :class:`ExportedClassifier`, checked against the eager one on a batch of 2."""
    module = build_classifier(model, path)
    side = module.side
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 1, side, side, generator=generator)
    check = torch.rand(2, 1, side, side, generator=generator) * 100
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
        difference = float((traced(check) - module(check)).abs().max())
    if not math.isfinite(difference) or difference > 1e-5:
        raise NanowireError(
            f"The TorchScript export of {path or 'the model'}'s classifier differs from the "
            f"model by {difference:.2g} on a batch of 2; please report this with the model file."
        )
    return traced


def classifier_metadata(model: ModelFile) -> dict:
    """What a user of the exported classifier needs: classes, input size and scale, limits."""
    settings = model.meta.classifier
    side = input_side(model)
    return {
        "format": "napari-nanowire classifier (TorchScript)",
        "head": "classifier",
        "input": f"(B, 1, {side}, {side}) float32 raw grayscale images: square images of "
        f"{side} px, or images at pixel_size_nm cropped or padded to {side} px",
        "output": "(B, C) class probabilities (softmax of the linear head's logits divided by "
        "the calibrated temperature)",
        "normalisation": "per image inside the module: clip to the 0.5-99.5 percentiles, then "
        "zero mean and unit variance",
        "class_names": list(model.meta.class_names or ()),
        "pixel_size_nm": input_pixel_size(model),
        "input_side_px": side,
        "feature_scales": list(settings.scales),
        "tile_px": settings.tile,
        "max_tiles": settings.max_tiles,
        "temperature": settings.temperature,
        "encoder": model.meta.encoder,
        "not_included": "resampling images of other sizes or pixel sizes to the input size"
        + (
            "; painting over burned-in scale bars, databars and label boxes, which "
            "napari-nanowire does before classifying: crop them off first, or the "
            "probabilities of such images differ"
            if settings.ignore_annotations
            else ""
        ),
    }
