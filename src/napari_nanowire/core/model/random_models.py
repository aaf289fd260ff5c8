"""Model files with untrained (random) weights, for measuring speed and testing the plumbing.

Prediction cost and memory do not depend on what the weights are, so benchmarks and tests of
batch, distributed and fault handling use these instead of training a model first. Never use
one for analysis: its classes and masks are meaningless.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..heads.classify import LinearHead
from ..heads.features import add_head
from ..heads.unet import UNetDecoder
from .encoders import build_encoder
from .metadata import ClassifierMeta, ModelMeta, SegmenterMeta
from .modelfile import ModelFile, save_model


def random_model(
    encoder: str = "tiny",
    class_names: tuple[str, ...] = ("bundle", "network"),
    mask_classes: tuple[str, ...] = ("background", "wire"),
    tile: int = 64,
    pixel_size_nm: float | None = None,
    seed: int = 0,
) -> ModelFile:
    """A classifier+segmenter model file with random weights (seeded, so reproducible)."""
    torch.manual_seed(seed)
    net = build_encoder(encoder).eval()
    base = ModelFile(ModelMeta(encoder=encoder, image_size=tile, pixel_size_nm=pixel_size_nm))
    classifier = ClassifierMeta(tile=tile, max_tiles=16)
    model, _ = add_head(
        base,
        net,
        "classifier",
        LinearHead(net.out_dim, len(class_names)),
        class_names,
        classifier,
        encoder_changed=False,
    )
    decoder = UNetDecoder(net.stage_channels, len(mask_classes))
    segmenter = SegmenterMeta(tile=tile, overlap=tile // 4, decoder_widths=decoder.widths)
    model, _ = add_head(
        model, net, "segmenter", decoder, mask_classes, segmenter, encoder_changed=False
    )
    return model


def save_random_model(path: str | os.PathLike, **settings) -> Path:
    """Write :func:`random_model` (``settings`` are its arguments) to ``path``."""
    return save_model(random_model(**settings), path)
