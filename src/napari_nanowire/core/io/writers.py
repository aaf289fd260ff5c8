"""Atomic writers: a file appears under its name only when complete (TIFF, CSV, bytes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends.

    If the block raises (or a generator holding it is closed early) the temporary file is
    removed instead, so ``path`` is always either the old file or a complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None) -> Path:
    """Write a 2D image or (N, Y, X) stack as an ImageJ TIFF with the pixel size in nm.

    The file is written atomically (:func:`atomic_path`), so a crash never leaves a
    half-written file. ImageJ/Fiji and :func:`read_image` both read the pixel size back.
    """
    calibration = _imagej_calibration(pixel_size_nm, np.ndim(data))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, **calibration)
    return Path(path)


class TiffFrameWriter:
    """Writes an ImageJ TIFF of a known (Y, X) or (N, Y, X) shape one 2D frame at a time.

    The header goes first, with the whole shape, then each frame into its place in the
    file's one contiguous block of pixels, so a stack of any length is written holding one
    frame in memory. Use :func:`tiff_frame_writer`, which makes the file appear only once
    every frame is in it.
    """

    def __init__(self, fh: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.fh, self.shape, self.dtype = fh, shape, dtype
        self.count = 1 if len(shape) == 2 else shape[0]
        self.written = 0

    def append(self, frame: np.ndarray) -> None:
        """Write the next frame (cast to the file's dtype)."""
        if self.written == self.count or np.shape(frame) != self.shape[-2:]:
            raise ValueError(
                f"frame {self.written} of shape {np.shape(frame)} does not fit a TIFF of shape "
                f"{self.shape} with {self.written} of {self.count} frames written"
            )
        self.fh.write(np.ascontiguousarray(frame, self.dtype).data)
        self.written += 1


class _Incomplete(Exception):
    """Raised to drop a frame-by-frame TIFF that did not get all its frames."""


@contextmanager
def tiff_frame_writer(
    path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, pixel_size_nm: float | None
) -> Iterator[TiffFrameWriter]:
    """A :class:`TiffFrameWriter` for ``path``; the file appears there only when complete.

    If the block ends (or raises) before every frame was appended, no file is left under
    ``path``: a stopped or crashed run never leaves a partial stack under the final name.
    """
    dtype = np.dtype(dtype).newbyteorder("<")
    calibration = _imagej_calibration(pixel_size_nm, len(shape))
    try:
        with atomic_path(path) as tmp:
            with tifffile.TiffWriter(tmp, imagej=True) as tif:
                offset, _ = tif.write(
                    None, shape=shape, dtype=dtype, returnoffset=True, **calibration
                )
            with open(tmp, "r+b") as fh:
                fh.seek(offset)
                writer = TiffFrameWriter(fh, tuple(shape), dtype)
                yield writer
            if writer.written < writer.count:
                raise _Incomplete
    except _Incomplete:
        pass


def _imagej_calibration(pixel_size_nm: float | None, ndim: int) -> dict:
    """tifffile's ImageJ resolution and metadata for a pixel size in nm (none if None)."""
    if not pixel_size_nm:
        return {}
    return {
        "resolution": (1.0 / pixel_size_nm, 1.0 / pixel_size_nm),
        "metadata": {"unit": "nm", "axes": "ZYX" if ndim == 3 else "YX"},
    }


def write_bytes_atomic(path: Path, *chunks: bytes | memoryview) -> None:
    """Replace ``path`` with the ``chunks`` written one after another, so readers see either the
    old or the new file, never half. Chunks are written as given: large buffers go to the disk
    without a copy and without holding the GIL."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.writelines(chunks)
        fh.flush()
        os.fsync(fh.fileno())


def write_csv(path: str | os.PathLike, table: Any) -> Path:
    """Write a pandas DataFrame to ``path`` as CSV (UTF-8, no index), atomically."""
    path = Path(path)
    write_bytes_atomic(path, table.to_csv(index=False).encode("utf-8"))
    return path
