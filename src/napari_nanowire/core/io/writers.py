"""Atomic writers: a file appears under its name only when complete (TIFF, CSV, bytes)."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
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


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    pixel_size_nm: float | None,
    metadata: dict | None = None,
    compression: str | None = None,
) -> Path:
    """Write a 2D image or (N, Y, X) stack as an ImageJ TIFF with the pixel size in nm.

    The file is written atomically (:func:`atomic_path`), so a crash never leaves a
    half-written file. ImageJ/Fiji and :func:`read_image` both read the pixel size back.
    ``metadata``: more ImageJ metadata; ``compression``: e.g. ``"zlib"``, which Fiji reads.
    """
    calibration = _imagej_calibration(pixel_size_nm, np.ndim(data), metadata)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, compression=compression, **calibration)
    return Path(path)


class TiffFrameWriter:
    """Writes a compressed ImageJ TIFF of a known (Y, X) or (N, Y, X) shape one frame at a time.

    tifffile writes a whole series from an iterator of frames, compressing page by page; here a
    writer thread runs :func:`tifffile.imwrite` over a generator fed by :meth:`append` through
    a queue of one frame, so the caller pushes frames as they are made (two files at once,
    too) and memory holds about two frames whatever the stack's length. Use
    :func:`tiff_frame_writer`, which makes the file appear only once every frame is in it.
    """

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        dtype: Any,
        pixel_size_nm: float | None,
        metadata: dict | None = None,
        compression: str | None = "zlib",
    ) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.count = 1 if len(shape) == 2 else shape[0]
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        kwargs = _imagej_calibration(pixel_size_nm, len(shape), metadata)
        kwargs.update(shape=self.shape, dtype=self.dtype, imagej=True, compression=compression)
        self._thread = threading.Thread(
            target=self._write, args=(path, kwargs), name=f"tiff-writer {path.name}", daemon=True
        )
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        """The frames :meth:`append` queues; None (from :meth:`close`) stops the file short."""
        for _ in range(self.count):
            frame = self._queue.get()
            if frame is None:
                raise _Incomplete
            yield frame

    def _write(self, path: Path, kwargs: dict) -> None:
        """The writer thread: tifffile pulls and compresses the frames as they come."""
        try:
            tifffile.imwrite(path, self._frames(), **kwargs)
        except BaseException as err:  # handed to the caller's thread by _put and close
            self._error = err

    def _put(self, item: np.ndarray | None) -> None:
        """Queue an item for the writer thread, unless that thread has ended."""
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise()

    def _raise(self) -> None:
        """Raise the writer thread's error (an incomplete file is not one)."""
        if self._error is not None and not isinstance(self._error, _Incomplete):
            raise OSError(f"Writing the TIFF failed: {self._error}") from self._error

    def append(self, frame: np.ndarray) -> None:
        """Queue the next frame (cast to the file's dtype); waits while one is being written."""
        if self.written == self.count or np.shape(frame) != self.shape[-2:]:
            raise ValueError(
                f"frame {self.written} of shape {np.shape(frame)} does not fit a TIFF of shape "
                f"{self.shape} with {self.written} of {self.count} frames written"
            )
        self._put(np.ascontiguousarray(frame, self.dtype))
        self.written += 1

    def close(self) -> bool:
        """Wait for the writer thread; whether the file holds every frame.

        With frames missing the thread is told to stop, and the file is left incomplete.
        """
        if self.written < self.count and self._thread.is_alive():
            self._put(None)
        self._thread.join()
        self._raise()
        return self.written == self.count and self._error is None


class _Incomplete(Exception):
    """Raised to drop a frame-by-frame TIFF that did not get all its frames."""


@contextmanager
def tiff_frame_writer(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype: Any,
    pixel_size_nm: float | None,
    metadata: dict | None = None,
) -> Iterator[TiffFrameWriter]:
    """A :class:`TiffFrameWriter` for ``path``; the file appears there only when complete.

    If the block ends (or raises) before every frame was appended, no file is left under
    ``path``: a stopped or crashed run never leaves a partial stack under the final name.
    ``metadata``: more ImageJ metadata (e.g. ``Properties``, see :mod:`.labels`).
    """
    try:
        with atomic_path(path) as tmp:
            writer = TiffFrameWriter(tmp, tuple(shape), dtype, pixel_size_nm, metadata)
            try:
                yield writer
            finally:
                complete = writer.close()
            if not complete:
                raise _Incomplete
    except _Incomplete:
        pass


def _imagej_calibration(
    pixel_size_nm: float | None, ndim: int, metadata: dict | None = None
) -> dict:
    """tifffile's ImageJ resolution and metadata for a pixel size in nm (none if None), with
    ``metadata`` added."""
    extra = dict(metadata or {})
    if not pixel_size_nm:
        return {"metadata": {"axes": "ZYX" if ndim == 3 else "YX", **extra}} if extra else {}
    return {
        "resolution": (1.0 / pixel_size_nm, 1.0 / pixel_size_nm),
        "metadata": {"unit": "nm", "axes": "ZYX" if ndim == 3 else "YX", **extra},
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
