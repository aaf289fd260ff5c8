"""The Python API: a trained model file in three lines, for scripts and notebooks.

>>> from napari_nanowire import load_model
>>> model = load_model("wires.nwmodel")
>>> masks = model.segment(images, pixel_size_nm=0.5)

``images`` is a 2D array, an (N, Y, X) stack, an image file or folder (read with its pixel
size), or a list of these; results come back in the same form. This is a thin layer over
:class:`~napari_nanowire.core.predict.predictor.Predictor`, which does the work for the GUI
and the CLI too. It holds every mask in memory: for stacks larger than memory use
:func:`~napari_nanowire.core.predict.files.predict_files`, which streams to files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import NanowireError
from .io import frames, read_image
from .predict import ClassPrediction, Predictor

ImageLike = np.ndarray | str | os.PathLike
Images = ImageLike | Sequence[ImageLike]
PixelSizes = float | None | Sequence[float | None]


@dataclass
class _Input:
    """One image or stack of the caller's input, as 2D frames with their pixel size."""

    data: np.ndarray
    pixel_size_nm: float | None

    @property
    def frames(self) -> list[np.ndarray]:
        """The 2D frames (one for a 2D image)."""
        return [np.asarray(f) for f in frames(self.data)]


class Model:
    """A loaded classifier and/or segmenter model file: ``classify`` and ``segment`` images."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def heads(self) -> list[str]:
        """What the model file can do: ``classifier`` and/or ``segmenter``."""
        return list(self.predictor.heads)

    @property
    def class_names(self) -> list[str]:
        """The image classes of the classifier (empty without one)."""
        return list(getattr(self.predictor, "class_names", []))

    @property
    def mask_classes(self) -> list[str]:
        """The mask classes of the segmenter: mask value k is ``mask_classes[k]``."""
        return list(getattr(self.predictor, "mask_classes", []))

    @property
    def pixel_size_nm(self) -> float | None:
        """The pixel size the model was trained at; inputs are rescaled to it."""
        return self.predictor.pixel_size_nm

    def __repr__(self) -> str:
        return f"Model({self.predictor.path!r}, heads={self.heads})"

    def segment(
        self, images: Images, pixel_size_nm: PixelSizes = None, tile: int | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Masks of ``images``: uint8, 0 = background, k = ``mask_classes[k]``.

        A 2D image gives a 2D mask, a stack a stack, a list a list. ``pixel_size_nm`` (nm/px,
        one value or one per list item) overrides the files' calibration; without any, images
        are taken to be at the model's pixel size.
        """
        self.predictor.require("segmenter")
        inputs, single = _inputs(images, pixel_size_nm)
        masks = []
        for item in inputs:
            stack = np.stack(
                [self.predictor.segment(f, item.pixel_size_nm, tile=tile).mask for f in item.frames]
            )
            masks.append(stack[0] if item.data.ndim == 2 else stack)
        return masks[0] if single else masks

    def classify(self, images: Images, pixel_size_nm: PixelSizes = None) -> ClassPrediction:
        """Class probabilities of every 2D frame of ``images``, in order (stacks flattened).

        The result has ``classes``, ``confidence``, ``entropy``, ``margin`` and ``table()``
        (a pandas DataFrame, one row per frame).
        """
        self.predictor.require("classifier")
        inputs, _ = _inputs(images, pixel_size_nm)
        flat = [(f, item.pixel_size_nm) for item in inputs for f in item.frames]
        return self.predictor.classify([f for f, _ in flat], [px for _, px in flat])


def load_model(path: str | os.PathLike, device: str = "auto") -> Model:
    """Load a classifier and/or segmenter model file (``.nwmodel``) for :class:`Model`.

    ``device``: ``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``mps``.
    """
    return Model(Predictor.load(path, device))


def _inputs(images: Images, pixel_size_nm: PixelSizes) -> tuple[list[_Input], bool]:
    """The caller's images as a list of inputs, and whether a single one was given."""
    single = isinstance(images, np.ndarray | str | os.PathLike)
    items = [images] if single else list(images)
    if not items:
        raise NanowireError("No images given: pass an array, a stack, a file or a list of them.")
    if pixel_size_nm is None or isinstance(pixel_size_nm, int | float):
        sizes = [pixel_size_nm] * len(items)
    else:
        sizes = list(pixel_size_nm)
        if len(sizes) != len(items):
            raise NanowireError(
                f"Got {len(sizes)} pixel sizes for {len(items)} images; give one value, or one "
                "per image."
            )
    return [_input(item, px) for item, px in zip(items, sizes, strict=True)], single


def _input(item: ImageLike, pixel_size_nm: float | None) -> _Input:
    """One array or file as an input; arrays must be 2D images or (N, Y, X) stacks."""
    if isinstance(item, str | os.PathLike):
        image = read_image(Path(item), pixel_size_nm)
        return _Input(image.data, image.pixel_size_nm)
    data = np.asarray(item)
    if data.ndim not in (2, 3) or min(data.shape) == 0:
        raise NanowireError(
            f"Expected a 2D grayscale image or an (N, Y, X) stack, got an array of shape "
            f"{data.shape}; convert colour images to gray first."
        )
    return _Input(data, pixel_size_nm)
