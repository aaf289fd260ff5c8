"""Limits on what an input may decode to, checked from file headers before any pixel is read.

A compressed file can be tiny on disk and huge in memory (a 0.9 MB TIFF can hold 30000 x 30000
pixels, 5.4 GB as float64 after reading): such a "decompression bomb" is refused with a clear
error instead of exhausting memory. The limit is on one 2D frame, since every reader and
predictor works frame by frame: stacks of any length stay readable (lazily, when large).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import NanowireError

LAZY_BYTES = 1 << 30
"""Inputs (a file, or a folder's files together) larger than this, on disk or decoded, are read
lazily (see :func:`~napari_nanowire.core.io.read_image`)."""

MAX_FRAME_PIXELS = 16384 * 16384
"""Default largest frame, in pixels: 268 M px, 16k x 16k (TEM cameras give up to 8k x 8k)."""

MAX_FRAME_PIXELS_ENV = "NANOWIRE_MAX_FRAME_PIXELS"
"""Environment variable overriding :data:`MAX_FRAME_PIXELS` (a whole number of pixels)."""


class ImageTooLargeError(NanowireError):
    """A file whose headers promise a frame larger than the limit allows."""


def max_frame_pixels() -> int:
    """The largest frame allowed: ``$NANOWIRE_MAX_FRAME_PIXELS`` if set, else the default."""
    text = os.environ.get(MAX_FRAME_PIXELS_ENV)
    if text is None:
        return MAX_FRAME_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise NanowireError(
            f"{MAX_FRAME_PIXELS_ENV}={text!r} is not a positive whole number of pixels; unset "
            f"it (default {MAX_FRAME_PIXELS}) or give e.g. {MAX_FRAME_PIXELS}."
        )
    return value


def check_decoded_size(path: str | os.PathLike, frame: tuple[int, int], decoded_bytes: int) -> None:
    """Refuse a file whose header says its 2D ``frame`` (Y, X) exceeds :func:`max_frame_pixels`.

    ``decoded_bytes`` (the whole file, decoded) goes into the message so that the user can
    judge whether to raise the limit.
    """
    pixels = math.prod(frame)
    limit = max_frame_pixels()
    if pixels > limit:
        raise ImageTooLargeError(
            f"Cannot read {Path(path)}: its header says frames of {frame[0]} x {frame[1]} px "
            f"({pixels:,} px, {decoded_bytes / 2**30:.1f} GiB decoded), over the limit of "
            f"{limit:,} px per frame that guards against files decompressing to more than "
            f"memory holds. If the file is genuine, raise the limit (set {MAX_FRAME_PIXELS_ENV} "
            "to a larger number of pixels), or crop or bin the image first."
        )
