"""Helpers shared by test modules: small model files, edits of a model file's metadata, and
reading what a prediction run wrote."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from napari_nanowire.core.io import read_image
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import META_KEY, ModelFile

PX = 2.0
"""Pixel size (nm/px) of the small synthetic images the segmenter tests train on."""


def encoder_file(
    seed: int = 0, pixel_size_nm: float | None = None, image_size: int = 48
) -> ModelFile:
    """An encoder model file with a randomly initialised (seeded) tiny encoder."""
    torch.manual_seed(seed)
    model = ModelFile(ModelMeta(encoder="tiny", image_size=image_size, pixel_size_nm=pixel_size_nm))
    model.set_part("encoder", build_encoder("tiny"))
    return model


def rewrite_meta(source: Path, target: Path, edit: Callable[[str], str]) -> Path:
    """Copy model file ``source`` to ``target`` with its metadata JSON text replaced by
    ``edit(text)``; the tensors are copied byte for byte."""
    data = source.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"][META_KEY] = edit(header["__metadata__"][META_KEY])
    raw = json.dumps(header).encode()
    target.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    return target


def run(events) -> None:
    """Drive a prediction generator to its end."""
    for _ in events:
        pass


def read_outputs(out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """predictions.csv and every mask, by file name."""
    masks = {p.name: read_image(p).data for p in sorted((out / "masks").glob("*.tif"))}
    return pd.read_csv(out / "predictions.csv"), masks


def train_segmenter_args(encoder: Path, folder: Path, *extra: str) -> list[str]:
    """``train-segmenter`` argv on ``folder``/images and ``folder``/masks, writing
    ``folder``/s.nwmodel."""
    return [
        "train-segmenter",
        "--encoder",
        str(encoder),
        "--images",
        str(folder / "images"),
        "--masks",
        str(folder / "masks"),
        "--out",
        str(folder / "s.nwmodel"),
        *extra,
    ]
