"""The one owner of the mask conventions: what mask values mean, and checks on mask arrays.

- Training masks (painted strokes): 0 = not labelled (ignored by training), 1 = background,
  2.. = the foreground classes, so a few strokes are valid training data.
- Dense masks (predicted masks, ground truth, measurement input): 0 = background, 1.. = the
  foreground classes; mask class k of a model is dense value k.

Training uses class indices: background 0, class k at k, and :data:`IGNORE` where nothing is
labelled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import NanowireError

NOT_LABELLED = 0
"""Training-mask value of a pixel nobody labelled."""
BACKGROUND = 1
"""Training-mask value of background."""
IGNORE = -1
"""Class index of an unlabelled pixel in training targets (ignored by the loss)."""


def label_mask(mask: np.ndarray, floats: bool = True) -> np.ndarray:
    """The mask as a 2D non-negative integer array, or a NanowireError saying what is wrong.

    Booleans become 0/1. With ``floats``, floats are accepted if every value is a whole number
    (masks saved as float); a probability map is refused: threshold it first.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise NanowireError(
            f"A mask must be a non-empty 2D (Y, X) array; got shape {arr.shape}. "
            "Use a stack one plane at a time."
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    is_float = np.issubdtype(arr.dtype, np.floating)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr) or is_float and not floats:
        raise NanowireError(
            f"A mask must hold integer class values; got dtype {arr.dtype}. Save masks as "
            "integer label images."
        )
    if is_float:
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise NanowireError(
                "The mask holds fractional or non-finite values (a probability map?); "
                "threshold it into integer class values first."
            )
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise NanowireError(
            f"The mask holds negative values (minimum {arr.min()}); mask values are 0, 1, 2, ... "
            "(training masks: 0 = not labelled, 1 = background, 2.. = classes)."
        )
    return arr


def dense(mask: np.ndarray, training: bool) -> np.ndarray:
    """A dense mask (0 = background, k = class k); a training mask's unlabelled pixels become
    background. A dense mask is returned as it is."""
    mask = np.asarray(mask)
    if not training:
        return mask
    return np.where(mask > BACKGROUND, mask - BACKGROUND, 0).astype(mask.dtype)


def class_targets(mask: np.ndarray, dense_mask: bool = False) -> np.ndarray:
    """Training targets (int64): background 0, class k at k, :data:`IGNORE` where unlabelled.

    A dense mask labels every pixel; a training mask only its painted ones.
    """
    targets = label_mask(mask, floats=False).astype(np.int64)
    return targets if dense_mask else targets - BACKGROUND


def check_shape(
    mask_shape: Sequence[int],
    image_shape: Sequence[int],
    mask: str,
    image: str,
    what_to_do: str = "a mask must match its image pixel for pixel",
) -> None:
    """Refuse a mask that does not match its image pixel for pixel, naming both."""
    if tuple(mask_shape) != tuple(image_shape):
        raise NanowireError(
            f"{mask} is {tuple(mask_shape)} px but {image} is {tuple(image_shape)}; {what_to_do}."
        )
