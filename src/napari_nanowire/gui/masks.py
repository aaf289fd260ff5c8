"""The training-mask Labels layer: matched to its image, named classes, brush set for wires.

Mask values follow the project convention (owned by :mod:`napari_nanowire.core.masks`): 0 =
not labelled (ignored by training), 1 = background, 2.. = the mask classes after background. A
few strokes of each are valid training data, so the layer starts empty in paint mode with a
brush narrower than a typical wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from napari.utils.colormaps import DirectLabelColormap

from napari_nanowire.core.data.project import default_color

from .layers import shown_names
from .pixel_size import layer_pixel_size_nm

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

NOT_LABELLED = "not labelled"
BRUSH_NM = 6.0
"""Brush diameter in nm: inside the 5-20 nm wires TEM users measure, so strokes stay on a wire."""
BRUSH_PX_DEFAULT = 5
MASK_KEY = "mask_for"
BACKGROUND_COLOR = "#0072b2"


def brush_size_px(pixel_size_nm: float | None) -> int:
    """A brush about 6 nm wide in pixels (5 px when the pixel size is unknown), 2 to 25 px."""
    if not pixel_size_nm:
        return BRUSH_PX_DEFAULT
    return int(min(max(round(BRUSH_NM / pixel_size_nm), 2), 25))


def mask_colors(mask_classes: list[str]) -> dict[int | None, str]:
    """Colour per mask value: 0 transparent, 1 (background) blue, then orange, sky blue, ..."""
    colors: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    for i in range(len(mask_classes)):
        colors[i + 1] = BACKGROUND_COLOR if i == 0 else default_color(i - 1)
    return colors


def dense_colors(mask_classes: list[str]) -> dict[int | None, str]:
    """Colours of a dense mask (0 = background, transparent): class k as in training masks."""
    training = mask_colors(mask_classes)
    return {None: "transparent", 0: "transparent"} | {
        k - 1: color for k, color in training.items() if k is not None and k >= 2
    }


def mask_features(mask_classes: list[str]) -> pd.DataFrame:
    """The features table that names each mask value in napari's status bar."""
    return pd.DataFrame(
        {"index": range(len(mask_classes) + 1), "class": [NOT_LABELLED, *mask_classes]}
    )


def style_mask_layer(layer: Labels, mask_classes: list[str]) -> None:
    """Name and colour the mask values of ``layer`` after ``mask_classes``."""
    layer.colormap = DirectLabelColormap(color_dict=mask_colors(mask_classes))
    layer.features = mask_features(mask_classes)
    layer.metadata["mask_classes"] = list(mask_classes)


def add_mask_layer(
    viewer: napari.Viewer, image: Image, mask_classes: list[str], data: np.ndarray | None = None
) -> Labels:
    """Add a training-mask layer over ``image`` (empty unless ``data``), ready to paint."""
    shape = image.data.shape
    if data is None:
        data = np.zeros(shape, dtype=np.uint8)
    data = np.asarray(data, dtype=np.uint8).reshape(shape)
    layer = viewer.add_labels(
        data,
        name=f"{image.name} masks",
        scale=image.scale,
        translate=image.translate,
        opacity=0.6,
        units=image.units,
        metadata={MASK_KEY: image.name, "names": shown_names(image)},
    )
    style_mask_layer(layer, mask_classes)
    layer.brush_size = brush_size_px(layer_pixel_size_nm(image))
    layer.selected_label = 2 if len(mask_classes) > 1 else 1
    layer.mode = "paint"
    return layer


def dense_features(mask_classes: list[str]) -> pd.DataFrame:
    """The features table naming each value of a dense mask (0 = background, k = class k)."""
    return pd.DataFrame({"index": range(len(mask_classes)), "class": list(mask_classes)})


def write_slice(layer: Labels, index: int, mask: np.ndarray) -> None:
    """Write ``mask`` into slice ``index`` of ``layer`` through napari's edit history.

    Unlike ``layer.data[index] = mask``, the user can undo it, and the layer redraws.
    Call inside ``layer.block_history()`` to make several slices one undo step.
    """
    grid = tuple(np.indices(mask.shape).reshape(mask.ndim, -1))
    indices = grid if layer.ndim == 2 else (np.full(grid[0].shape, index), *grid)
    layer.data_setitem(indices, np.asarray(mask).reshape(-1).astype(layer.data.dtype))


def masks_of(viewer: napari.Viewer, image: Image) -> Labels | None:
    """The mask layer made for ``image``, if there is one."""
    from napari.layers import Labels

    for layer in viewer.layers:
        if isinstance(layer, Labels) and layer.metadata.get(MASK_KEY) == image.name:
            return layer
    return None


def is_training_mask(layer: Labels) -> bool:
    """True for a mask painted for training (1 = background), False for a dense mask."""
    return MASK_KEY in layer.metadata


def dense_class_names(layer: Labels) -> dict[int, str] | None:
    """Dense mask value -> class name from the layer's recorded mask classes, if any."""
    names = layer.metadata.get("mask_classes")
    return {i: str(n) for i, n in enumerate(names) if i > 0} if names else None


def history_sizes(layer: Labels) -> tuple[int, int]:
    """Depths of ``layer``'s undo and redo histories (napari keeps them on the layer)."""
    return len(getattr(layer, "_undo_history", ())), len(getattr(layer, "_redo_history", ()))


def undo_redo_slices(layer: Labels, before: tuple[int, int]) -> set[int] | None:
    """The slices an undo or redo touched, from the history item it moved; None if unknown.

    An undo moves the newest item of the undo history to the redo history and a redo moves
    it back, so the item that grew a history is the one just replayed.
    """
    undo, redo = getattr(layer, "_undo_history", None), getattr(layer, "_redo_history", None)
    if undo is None or redo is None:
        return None
    now = history_sizes(layer)
    if now[1] > before[1] and redo:
        return painted_slices(layer, redo[-1])
    if now[0] > before[0] and undo:
        return painted_slices(layer, undo[-1])
    return None


def painted_slices(layer: Labels, history: list) -> set[int] | None:
    """The slices a napari paint event's history item touched; None if it cannot be told.

    napari records an edit either as (indices, old values, new values), indices being one
    array per axis, or as an atom with a ``slice_key`` bounding box. None asks the caller to
    treat every slice as changed (always correct, only slower).
    """
    if layer.ndim == 2:
        return {0}
    touched: set[int] = set()
    count = layer.data.shape[0]
    try:
        for atom in history:
            first = atom.slice_key[0] if hasattr(atom, "slice_key") else atom[0][0]
            if isinstance(first, slice):
                touched.update(range(*first.indices(count)))
            else:
                touched.update(int(i) for i in np.unique(np.asarray(first)))
    except (TypeError, IndexError, ValueError):
        return None
    return touched
