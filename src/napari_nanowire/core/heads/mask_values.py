"""Checks of the values in training masks, before any work: each value must be a known class.

Stroke masks hold 0 = not labelled, 1 = background, 2.. = foreground classes; dense masks
0 = background, 1.. = classes. Without class names, at most :data:`MAX_CLASSES` foreground
classes are accepted: a mask saved as 0/255 or an instance mask would otherwise train one
class per value (and a value of 2^40 would allocate 2^40 class names).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import NanowireError
from ..names import MAX_CLASSES


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
