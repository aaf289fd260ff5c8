"""Batch prediction over a dask.distributed cluster: one task per image file.

The model file's bytes are scattered to every worker once; each worker parses them into a
:class:`~napari_nanowire.core.predict.Predictor` on first use and keeps it for later tasks.
Each task predicts one file with :func:`~napari_nanowire.core.predict.predict_frames`, which
writes its masks atomically under names fixed by the client and yields its table rows; the
client writes ``predictions.csv`` once, in input order. A failed task is retried (``retries``)
and simply rewrites the same complete files, so retries neither lose nor duplicate outputs.
The outputs are the same as :func:`~napari_nanowire.core.predict.predictor.predict_files` writes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import NanowireError, import_extra
from ..model.modelfile import load_model, parse_model
from ..progress import Progress, Rate, stop_requested
from .predictor import JOB, Predictor, output_stems, predict_frames, write_table

_PREDICTORS: dict[str, Predictor] = {}
"""Predictors loaded in this (worker) process, by the SHA-256 of their model file's bytes."""


def _predictor(model_bytes: bytes, name: str) -> Predictor:
    """The Predictor for these model bytes, parsed once per process and then reused."""
    key = hashlib.sha256(model_bytes).hexdigest()
    if key not in _PREDICTORS:
        _PREDICTORS.clear()  # one model at a time: do not keep old ones in worker memory
        _PREDICTORS[key] = Predictor(parse_model(model_bytes, name), name)
    return _PREDICTORS[key]


def _predict_task(
    model_bytes: bytes, name: str, path: str, stem: str, out: str, options: dict[str, Any]
) -> list[dict]:
    """One task: predict one file on a worker, write its outputs, return its table rows."""
    return list(predict_frames(_predictor(model_bytes, name), path, stem, Path(out), **options))


def connect(scheduler: Any, timeout_s: float = 10.0) -> Any:
    """A dask Client for a scheduler address (or the Client itself); a clear error if down."""
    Client = import_extra("distributed", "cluster", "Prediction on a dask cluster").Client
    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(scheduler, timeout=timeout_s)
    except (OSError, TimeoutError) as err:
        raise NanowireError(
            f"Cannot reach the dask scheduler at {scheduler!r} ({err}); start one "
            "(dask scheduler / dask worker) or check the address."
        ) from None


def predict_distributed(
    model_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    scheduler: Any,
    pixel_size_nm: float | None = None,
    tile: int | None = None,
    save_uncertainty: bool = False,
    retries: int = 2,
    stop: threading.Event | None = None,
) -> Iterator[Progress]:
    """Predict every image file on a dask cluster; write the same outputs as a local run.

    ``scheduler`` is an address (``tcp://host:8786``) or a ``distributed.Client``. Workers must
    see the image files and ``out_dir`` at the same paths (a shared file system). Yields one
    Progress per finished file; a stop request cancels the tasks not yet finished and writes
    predictions.csv for the files done.
    """
    if not paths:
        raise NanowireError("No images given: pass at least one image file or folder.")
    load_model(model_path)  # refuse a bad model file here, before any task starts
    options = {"pixel_size_nm": pixel_size_nm, "tile": tile, "save_uncertainty": save_uncertainty}
    client = connect(scheduler)
    try:
        yield from _run(client, model_path, paths, out_dir, options, retries, stop)
    finally:
        if client is not scheduler:
            client.close()


def _run(
    client: Any,
    model_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: dict[str, Any],
    retries: int,
    stop: threading.Event | None,
) -> Iterator[Progress]:
    """Submit one task per file, collect rows as tasks finish, write the table once."""
    from distributed import as_completed

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    name = str(model_path)
    model = client.scatter(Path(model_path).read_bytes(), broadcast=True, hash=False)
    futures = {
        client.submit(
            _predict_task,
            model,
            name,
            str(Path(path).absolute()),
            stem,
            str(out),
            options,
            retries=retries,
            pure=False,
        ): i
        for i, (path, stem) in enumerate(zip(paths, output_stems(paths), strict=True))
    }
    rows: dict[int, list[dict]] = {}
    rate = Rate(len(paths))
    try:
        for future in as_completed(futures):
            i = futures[future]
            rows[i] = _as_given(_result(future, paths[i]), paths[i])
            speed, eta = rate.update(1)
            yield Progress(JOB, len(rows), len(paths), images_per_s=speed, eta_s=eta)
            if stop_requested(stop):
                break
    finally:
        client.cancel(list(futures))
    table = [row for i in sorted(rows) for row in rows[i]]
    csv = write_table(table, out)
    stopped = "stopped; " if len(rows) < len(paths) else ""
    yield Progress(JOB, len(table), len(table), message=f"{stopped}wrote {csv}", done=True)


def _as_given(rows: list[dict], path: str | os.PathLike) -> list[dict]:
    """Rows naming the image as the user gave its path (tasks get absolute paths)."""
    absolute = str(Path(path).absolute())
    for row in rows:
        row["image"] = str(path) + row["image"][len(absolute) :]
    return rows


def _result(future: Any, path: str | os.PathLike) -> list[dict]:
    """A task's rows; its NanowireError passes through, other failures name the file."""
    try:
        return future.result()
    except NanowireError:
        raise
    except Exception as err:
        raise NanowireError(
            f"Predicting {path} failed on the cluster after retries: {type(err).__name__}: {err}"
        ) from err
