"""``predictions.csv`` written as each file finishes, so an aborted run keeps what it finished.

Rows of a finished file are appended in one write and flushed to disk at once (after its
masks are in place; a failed write is cut back off), so a killed run, a full disk or a lost
worker leaves every finished file's rows and never part of a file's. A run
with ``resume`` keeps the rows of files it finished before (a file counts only with all its
frames' rows) and skips those files; any other run starts the table afresh before writing
anything, so an old table never sits beside new masks. At the end the table is rewritten,
atomically, in input order (cluster tasks finish in any order). While a run writes the table
it holds ``.predictions.csv.lock``: a second run into the same folder is refused.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from ..io import csv_bytes, csv_unsafe, output_lock, write_csv, write_error

TABLE = "predictions.csv"


class PredictionTable:
    """``out/predictions.csv`` for the input files ``paths``.

    ``counts``, the frames of each file where known, lets a resumed run also check that a
    file has every frame's row. Use it as a context manager: entering takes the folder's lock
    and starts (or resumes) the table.
    """

    def __init__(
        self,
        out: Path,
        paths: Sequence[str | os.PathLike],
        counts: Sequence[int] | None = None,
        resume: bool = False,
    ) -> None:
        self.path = Path(out) / TABLE
        self.index = {str(path): k for k, path in enumerate(paths)}
        self.counts = list(counts) if counts is not None else None
        self.columns: list[str] | None = None
        self.finished: set[int] = set()
        self.resume = resume
        self._lock = ExitStack()

    def __enter__(self) -> PredictionTable:
        self._lock.enter_context(output_lock(self.path))
        previous = self._read() if self.resume else None
        if previous is not None:
            self._keep_finished(previous)
        else:
            self.path.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.close()

    def append(self, rows: list[dict]) -> None:
        """Add the rows of one finished file and flush them to disk."""
        if not rows:
            return
        table = pd.DataFrame(rows)
        header = self.columns is None
        if header:
            self.columns = list(table.columns)
        else:
            table = table.reindex(columns=self.columns)
        data = csv_bytes(table, header=header)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if header else os.O_APPEND)
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            raise write_error(err, self.path) from err
        try:
            size = os.fstat(fd).st_size
            written = os.write(fd, data)  # one call: a kill leaves all of it or none
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as err:
            os.ftruncate(fd, size)  # no part of this file's rows stays behind
            raise write_error(err, self.path) from err
        finally:
            os.close(fd)

    def finish(self) -> Path:
        """Rewrite the table in input order, atomically; an empty table if nothing finished."""
        table = self._read()
        if table is None:
            return write_csv(self.path, pd.DataFrame())
        end = (len(self.index), 0)
        keys = [self._key(name) or end for name in table["image"]]
        position = sorted(range(len(table)), key=lambda j: (keys[j], j))
        return write_csv(self.path, table.iloc[position], escape=False)

    def _read(self) -> pd.DataFrame | None:
        """The table so far as text cells; a last row cut short by a kill is dropped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        raw = raw[: raw.rfind(b"\n") + 1]
        if not raw.strip():
            return None
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)

    def _keep_finished(self, table: pd.DataFrame) -> None:
        """Keep the rows of files with every frame's row; files cut short are predicted again."""
        files = [(self._key(name) or (-1, 0))[0] for name in table["image"]]
        rows_per_file = pd.Series(files, dtype=int).value_counts().to_dict()
        self.finished = {
            k
            for k, n in rows_per_file.items()
            if k >= 0 and (self.counts is None or n == self.counts[k])
        }
        keep = [k < 0 or k in self.finished for k in files]
        self.columns = list(table.columns)
        write_csv(self.path, table[keep], escape=False)

    def _key(self, name: str) -> tuple[int, int] | None:
        """(input file, frame) of a row's image name (``path`` or ``path[i]``), None if unknown."""
        name = csv_unsafe(name)
        if name in self.index:
            return self.index[name], 0
        base, bracket, rest = name.rpartition("[")
        if bracket and rest[:-1].isdigit() and rest.endswith("]") and base in self.index:
            return self.index[base], int(rest[:-1])
        return None
