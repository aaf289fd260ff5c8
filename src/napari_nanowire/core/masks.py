"""The one owner of the mask conventions: what mask values mean, and checks on mask arrays.

- Training masks (painted strokes): 0 = not labelled (ignored by training), 1 = background,
  2.. = the foreground classes, so a few strokes are valid training data.
- Dense masks (predicted masks, ground truth, measurement input): 0 = background, 1.. = the
  foreground classes; mask class k of a model is dense value k.

Training uses class indices: background 0, class k at k, and :data:`IGNORE` where nothing is
labelled. Without class names, at most :data:`~.names.MAX_CLASSES` foreground classes are
accepted: a mask saved as 0/255 or an instance mask would otherwise train one class per value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import NanowireError
from .names import MAX_CLASSES

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
    if arr.min() < 0:
        raise NanowireError(
            f"The mask holds negative values (minimum {arr.min():g}); mask values are 0, 1, 2, "
            "... (training masks: 0 = not labelled, 1 = background, 2.. = classes)."
        )
    if is_float:
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise NanowireError(
                "The mask holds fractional or non-finite values (a probability map?); "
                "threshold it into integer class values first."
            )
        if arr.max() > np.iinfo(np.int32).max:
            raise NanowireError(
                f"The mask holds the value {arr.max():g}, too large for a class value "
                "(a float image rather than a mask?); class values are 0, 1, 2, ..."
            )
        arr = arr.astype(np.int64)
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


def check_mask_values(
    mask: np.ndarray,
    source: str,
    class_names: Sequence[str] | None = None,
    dense: bool = False,
) -> None:
    """Refuse a training mask holding a value that is not a class, naming ``source`` and value.

    With ``class_names`` the allowed values are 0 to the last named class; without them, up
    to :data:`MAX_CLASSES` foreground classes.
    """
    mask = np.asarray(mask)
    if mask.size == 0 or mask.dtype == bool:
        return
    low, high = mask.min(), mask.max()
    first = 1 if dense else 2  # mask value of the first foreground class
    n_classes = len(class_names) if class_names is not None else MAX_CLASSES
    top = first + n_classes - 1
    if low >= 0 and high <= top:
        return
    value = low if low < 0 else high
    meaning = (
        "0 = background, 1.. = classes"
        if dense
        else "0 = not labelled, 1 = background, 2.. = classes"
    )
    if class_names is not None:
        allowed = f"0 to {top} ({meaning}; {n_classes} class name(s) given)"
        fix = "give a name for every class, or fix the mask"
    else:
        allowed = f"0 to {top} ({meaning}; at most {MAX_CLASSES} classes)"
        fix = "fix the mask"
    hint = ""
    if value == 255:
        hint = " A 0/255 mask is a binary image saved for display: save it with 0 and 1 instead."
    elif value > top:
        hint = " Many distinct values suggest an instance mask: give each class one value."
    raise NanowireError(
        f"Mask {source} holds the value {value}, outside the allowed range {allowed}; {fix}." + hint
    )
