"""Reading and writing TEM images with their pixel size in nm/px."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None) -> Path:
    """Write a 2D image or (N, Y, X) stack as an ImageJ TIFF with the pixel size in nm.

    The file is written to a temporary name and moved into place, so a crash never leaves a
    half-written file. ImageJ/Fiji and :func:`read_image` both read the pixel size back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {"imagej": True}
    if pixel_size_nm:
        kwargs["resolution"] = (1.0 / pixel_size_nm, 1.0 / pixel_size_nm)
        kwargs["metadata"] = {"unit": "nm", "axes": "ZYX" if np.ndim(data) == 3 else "YX"}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        tifffile.imwrite(tmp, data, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
