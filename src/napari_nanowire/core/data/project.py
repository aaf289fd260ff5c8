"""A project folder: the images, their class labels, training masks, models and settings.

Everything a user makes while labelling and training lives in one folder, so closing napari (or a
crash) loses nothing and the work reopens where it stopped::

    project.json      classes, image list, slice names, labels, model paths, settings
    images.tif        the stack, when it did not come from files (e.g. napari sample data)
    masks/00007.tif   training mask of slice 7 (0 = not labelled, 1 = background, 2.. = mask
                      classes); one file per painted slice, so a stroke rewrites one small file
    models/           model files written by training

Every write goes to a temporary file that is then moved into place, so a crash mid-write leaves
the previous version intact. Qt-free: the GUI and scripts share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NanowireError
from ..io import read_image, write_bytes_atomic, write_tiff
from ..names import CLASSES, unique_names

PROJECT_FILE = "project.json"
FORMAT = "napari-nanowire-project"
FORMAT_VERSION = 1
IMAGES_FILE = "images.tif"
MASKS_DIR = "masks"
MODELS_DIR = "models"

PALETTE = ("#e69f00", "#56b4e9", "#009e73", "#cc79a7", "#f0e442", "#0072b2", "#d55e00")
"""Okabe-Ito colours: distinguishable with colour-blindness and on gray TEM images."""

DEFAULT_MASK_CLASSES = ("background", "nanowire")
"""Mask values 1, 2, ...: value 0 is 'not labelled' and has no entry."""


class ProjectError(NanowireError):
    """A project folder that cannot be used, naming the folder and what to do."""


def default_color(index: int) -> str:
    """The palette colour for the ``index``-th class, cycling when there are many classes."""
    return PALETTE[index % len(PALETTE)]


@dataclass
class Project:
    """The contents of ``project.json`` plus the folder it lives in.

    ``labels`` maps slice names to class names; unlabelled slices are absent. ``images`` are
    paths (relative to the folder when inside it) that :func:`read_image` reads into the stack.
    """

    folder: Path
    names: list[str]
    images: list[str] = field(default_factory=list)
    pixel_size_nm: float | None = None
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    colors: list[str] = field(default_factory=list)
    mask_classes: list[str] = field(default_factory=lambda: list(DEFAULT_MASK_CLASSES))
    labels: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.names = unique_names(self.names)
        self.colors = [
            self.colors[i] if i < len(self.colors) else default_color(i)
            for i in range(len(self.classes))
        ]

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        names: Sequence[str],
        pixel_size_nm: float | None,
        images: Sequence[str | os.PathLike] = (),
        stack: np.ndarray | None = None,
    ) -> Project:
        """Start a project in ``folder`` for the given slices and save it.

        Pass the files the stack was read from as ``images``; a stack with no files behind it
        (``stack``) is written into the folder as ``images.tif`` instead.
        """
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise ProjectError(
                f"{folder} already holds a project; open it instead, or pick an empty folder."
            )
        if not images and stack is None:
            raise ProjectError("A new project needs the image files or the image stack itself.")
        project = cls(folder=folder, names=list(names), pixel_size_nm=pixel_size_nm)
        if images:
            project.images = [project._relative(Path(p)) for p in images]
        else:
            write_tiff(folder / IMAGES_FILE, np.asarray(stack), pixel_size_nm)
            project.images = [IMAGES_FILE]
        project.save()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        """Read the project saved in ``folder``."""
        folder = Path(folder)
        path = folder / PROJECT_FILE
        if not path.is_file():
            raise ProjectError(f"{folder} is not a napari-nanowire project (no {PROJECT_FILE}).")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ProjectError(
                f"{path} cannot be read ({err}); restore it from a backup."
            ) from None
        if meta.pop("format", None) != FORMAT or meta.pop("format_version", 0) > FORMAT_VERSION:
            raise ProjectError(
                f"{path} is not a project file this version of napari-nanowire can read; "
                "update napari-nanowire."
            )
        try:
            return cls(folder=folder, **meta)
        except TypeError as err:
            raise ProjectError(f"{path} has unexpected content ({err}).") from None

    def save(self) -> Path:
        """Write ``project.json`` atomically and return its path."""
        meta = asdict(self)
        del meta["folder"]
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        path = self.folder / PROJECT_FILE
        write_bytes_atomic(path, json.dumps(meta, indent=1).encode("utf-8"))
        return path

    def _relative(self, path: Path) -> str:
        """``path`` relative to the project folder when inside it, else absolute."""
        path = path.resolve()
        try:
            return path.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, stored: str) -> Path:
        """The absolute path of a path stored in the project."""
        path = Path(stored)
        return path if path.is_absolute() else self.folder / path

    def slice_labels(self) -> list[str | None]:
        """The class of every slice in stack order, None where unlabelled."""
        return [self.labels.get(name) for name in self.names]

    def set_slice_labels(self, labels: Sequence[str | None]) -> None:
        """Replace the labels with one entry per slice (None = unlabelled) and save."""
        if len(labels) != len(self.names):
            raise ProjectError(
                f"Got {len(labels)} labels for a project of {len(self.names)} images."
            )
        unknown = sorted({lab for lab in labels if lab is not None} - set(self.classes))
        if unknown:
            raise ProjectError(f"Labels {unknown} are not among the classes {self.classes}.")
        self.labels = {n: lab for n, lab in zip(self.names, labels, strict=True) if lab}
        self.save()

    def set_classes(self, classes: Sequence[str], colors: Sequence[str]) -> None:
        """Replace the class list; labels of removed classes are dropped. Saves."""
        if len(set(classes)) != len(classes) or not all(classes):
            raise ProjectError(f"Class names must be unique and not empty, got {list(classes)}.")
        self.classes = list(classes)
        self.colors = list(colors)
        self.labels = {n: c for n, c in self.labels.items() if c in self.classes}
        self.save()

    def load_images(self):
        """The project's stack as :class:`~napari_nanowire.core.io.ImageData`."""
        if len(self.images) != 1:
            raise ProjectError(f"{self.folder}: expected one image source, got {self.images}.")
        path = self.resolve(self.images[0])
        if not path.exists():
            raise ProjectError(
                f"The project's images {path} are missing; move them back or recreate the project."
            )
        return read_image(path)

    def save_masks(self, masks: np.ndarray, slices: Iterable[int] | None = None) -> None:
        """Write the training masks (N, Y, X) of ``slices`` (default: all), one file each.

        A slice with nothing painted has no file (an old one is removed).
        """
        masks = np.asarray(masks)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.shape[0] != len(self.names):
            raise ProjectError(
                f"Got masks for {masks.shape[0]} images; the project has {len(self.names)}."
            )
        for index in range(len(masks)) if slices is None else slices:
            self.save_mask(index, masks[index])

    def mask_path(self, index: int) -> Path:
        """The file of slice ``index``'s training mask (it may not exist)."""
        return self.folder / MASKS_DIR / f"{index:05d}.tif"

    def save_mask(self, index: int, mask: np.ndarray, pixel_size_nm: float | None = None) -> None:
        """Write the training mask of slice ``index`` alone (its own size: images of a series
        differ); nothing painted removes its file. ``pixel_size_nm`` defaults to the
        project's."""
        if not 0 <= index < len(self.names):
            raise ProjectError(f"No image {index} in a project of {len(self.names)} images.")
        path = self.mask_path(index)
        mask = np.asarray(mask)
        if mask.any():
            write_tiff(path, mask.astype(np.uint8), pixel_size_nm or self.pixel_size_nm)
        else:
            path.unlink(missing_ok=True)

    def load_mask(self, index: int) -> np.ndarray | None:
        """The saved training mask of slice ``index`` (uint8), or None if none was painted."""
        path = self.mask_path(index)
        return np.asarray(read_image(path).data, dtype=np.uint8) if path.is_file() else None

    def load_masks(self) -> np.ndarray | None:
        """The saved training masks as (N, Y, X) uint8 (zeros where unpainted), or None."""
        files = sorted(p for p in (self.folder / MASKS_DIR).glob("*.tif") if p.stem.isdigit())
        if not files:
            return None
        masks = None
        for path in files:
            mask = np.asarray(read_image(path).data, dtype=np.uint8)
            if masks is None:
                masks = np.zeros((len(self.names), *mask.shape), np.uint8)
            index = int(path.stem)
            if not 0 <= index < len(masks) or mask.shape != masks.shape[1:]:
                raise ProjectError(
                    f"{path} does not fit the project's {len(masks)} images of "
                    f"{masks.shape[1:]} px; move it out of the masks folder."
                )
            masks[index] = mask
        return masks

    def model_path(self, kind: str) -> Path:
        """Where training writes the ``kind`` model (encoder, classifier, segmenter)."""
        return self.folder / MODELS_DIR / f"{kind}.nwmodel"

    def set_model(self, kind: str, path: str | os.PathLike) -> None:
        """Record the model file of ``kind`` and save."""
        self.models[kind] = self._relative(Path(path))
        self.save()

    def model(self, kind: str) -> Path | None:
        """The recorded model file of ``kind`` if it exists, else None."""
        stored = self.models.get(kind)
        if stored is None:
            return None
        path = self.resolve(stored)
        return path if path.is_file() else None
