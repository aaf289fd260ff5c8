"""Atomic writers: a file appears under its name only when complete (TIFF, CSV, bytes).

Every file is first written to a temporary ``.NAME.XXXXXXXX.tmp`` beside it (``.HASH.`` for
names too long to extend), given the permissions the umask allows (``0o666 & ~umask``, not
mkstemp's 0600), and renamed over ``NAME`` when complete. Temporary files of our pattern left
by a killed process (older than this process) are removed on the first write into a folder.
A full disk, a name too long or a read-only folder become a :class:`WriteError` that names
the file and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import NanowireError


class WriteError(NanowireError):
    """An output that cannot be written (disk full, bad name, no permission), said plainly."""


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another output folder",
    errno.ENAMETOOLONG: "the file name is too long for the file system; use a shorter name",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another output path",
    errno.EEXIST: "a file is in the way of a folder there; choose another output path",
    errno.EISDIR: "a folder is in the way of the file; choose another output path",
}
_TMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp: prefix + 8 chars + suffix
_NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems
_PROCESS_START = time.time()
"""Temporaries last changed before this module was imported are not this process's. (psutil's
process start time is rounded to the boot time's whole second, so a file a killed run left a
moment before a rerun started could look newer than the rerun and stay.)"""
_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()


def write_error(err: OSError, path: str | os.PathLike) -> OSError | WriteError:
    """A WriteError for an OSError a user can fix (full disk, name, permission), else ``err``."""
    hint = _WRITE_HINTS.get(err.errno)
    if hint is None:
        return err
    return WriteError(f"Cannot write {path}: {hint} ({err.strerror or err}).")


def _temporary_prefix(name: str) -> str:
    """``.NAME.`` for mkstemp, or ``.HASH.`` when ``.NAME.XXXXXXXX.tmp`` would be too long."""
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + len("XXXXXXXX.tmp") > _NAME_MAX:
        prefix = f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}."
    return prefix


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.XXXXXXXX.tmp`` files left in ``folder`` by writers killed mid-write.

    Only files of our pattern last modified before this process started go: a writer that is
    still running keeps touching its file. Runs once per folder per process; returns what went.
    """
    folder = Path(folder).absolute()
    with _cleaned_lock:
        if folder in _cleaned:
            return []
        _cleaned.add(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TMP_PATTERN.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < _PROCESS_START:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends.

    If the block raises (or a generator holding it is closed early) the temporary file is
    removed instead, so ``path`` is always either the old file or a complete new one. The
    new file gets the umask's permissions; OSErrors a user can fix become a WriteError.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(
            prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent
        )
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        converted = write_error(err, path) if isinstance(err, OSError) else err
        if converted is not err:
            raise converted from err
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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""Cell starts that spreadsheets run as formulas (CSV injection, e.g. a file named =cmd|...)."""


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, quoted with a leading ``'``.

    Numbers (negative ones too) and other text pass unchanged; undo with :func:`csv_unsafe`.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_unsafe(value: Any) -> Any:
    """The text :func:`csv_safe` was given (for reading our own CSVs back)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def csv_bytes(table: Any, header: bool = True, escape: bool = True) -> bytes:
    """A DataFrame as CSV bytes (UTF-8, no index), text cells made :func:`csv_safe` if ``escape``.

    File names that are not valid UTF-8 are written with backslash escapes, so the file
    stays UTF-8 whatever the names.
    """
    if escape:
        table = table.copy()
        for column in table.select_dtypes(include=["object", "string"]).columns:
            table[column] = table[column].map(csv_safe)
    text = table.to_csv(index=False, header=header)
    return text.encode("utf-8", errors="backslashreplace")


def write_csv(path: str | os.PathLike, table: Any, escape: bool = True) -> Path:
    """Write a pandas DataFrame to ``path`` as CSV (:func:`csv_bytes`), atomically.

    ``escape=False`` is for tables read back from our own CSVs, whose cells are escaped.
    """
    path = Path(path)
    write_bytes_atomic(path, csv_bytes(table, escape=escape))
    return path


@contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``path`` while a run writes it; a second writer is refused.

    The lock is an OS file lock (released by the OS when the process ends, even by kill -9),
    so a lock file left by a killed run never blocks the next one. Where the OS has no
    ``fcntl`` (Windows) nothing is locked.
    """
    path = Path(path)
    lock = path.with_name(_temporary_prefix(path.name) + "lock")  # .NAME.lock, or .HASH.lock
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield lock
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+")  # noqa: SIM115 (held open for the whole block)
    except OSError as err:
        raise write_error(err, lock) from err
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise WriteError(
                f"{path} is being written by another run ({holder}); wait for it to end or "
                "choose another output."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield lock
        finally:
            lock.unlink(missing_ok=True)
    finally:
        fh.close()
