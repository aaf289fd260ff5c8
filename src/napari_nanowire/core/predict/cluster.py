"""Batch prediction over a dask.distributed cluster: one task per image file.

Each task gets the model file's path and SHA-256; a worker reads the file on first use (the
SHA-256 guards against a file changed mid-run), keeps the :class:`Predictor` for later tasks
and predicts one file with :func:`~napari_nanowire.core.predict.predict_frames`, which writes
its masks atomically under names fixed by the client and yields its table rows. Nothing lives
only in a worker's memory, so a worker that dies takes no input of other tasks with it: dask
reruns its tasks elsewhere, and a task that still fails (an error, or workers dying under it)
is run again up to ``retries`` times, rewriting the same complete files. The client appends
each finished file's rows to ``predictions.csv`` at once (:mod:`.table`) and puts them in input
order at the end: the outputs are those of :func:`~.predictor.predict_files`.
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
from .files import JOB, output_stems, predict_frames
from .predictor import Predictor
from .table import PredictionTable

WORKER_WAIT_S = 30.0
"""How long a run waits for the scheduler to have at least one worker."""

_PREDICTORS: dict[str, Predictor] = {}
"""Predictors loaded in this (worker) process, by the SHA-256 of their model file's bytes."""


def _predictor(model_path: str, sha256: str, segment_options: dict | None = None) -> Predictor:
    """The Predictor of this model file and settings, read once per process and then reused."""
    key = sha256 + repr(sorted((segment_options or {}).items()))
    if key not in _PREDICTORS:
        data = Path(model_path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise NanowireError(
                f"Model file {model_path} changed while predicting on the cluster; run again "
                "with a model file that stays unchanged."
            )
        _PREDICTORS.clear()  # one model at a time: do not keep old ones in worker memory
        predictor = Predictor(parse_model(data, model_path), model_path)
        predictor.features_kept = None  # each frame once: keeping features only grows memory
        if segment_options:
            predictor.configure(**segment_options)
        _PREDICTORS[key] = predictor
    return _PREDICTORS[key]


def _predict_task(
    model_path: str, sha256: str, path: str, stem: str, out: str, options: dict[str, Any]
) -> list[dict]:
    """One task: predict one file on a worker, write its outputs, return its table rows."""
    options = dict(options)
    predictor = _predictor(model_path, sha256, options.pop("segment_options", None))
    return list(predict_frames(predictor, path, stem, Path(out), **options))


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
    resume: bool = False,
    segment_options: dict | None = None,
) -> Iterator[Progress]:
    """Predict every image file on a dask cluster; write the same outputs as a local run.

    ``scheduler`` is an address (``tcp://host:8786``) or a ``distributed.Client``. Workers must
    see the model file, the image files and ``out_dir`` at the same paths (a shared file
    system). Yields one Progress per finished file; a stop request cancels the tasks not yet
    finished; predictions.csv holds the files done. ``resume`` skips the files a previous run
    into ``out_dir`` finished. ``segment_options`` as for ``predict_files``.
    """
    if not paths:
        raise NanowireError("No images given: pass at least one image file or folder.")
    load_model(model_path)  # refuse a bad model file here, before any task starts
    options = {
        "pixel_size_nm": pixel_size_nm,
        "tile": tile,
        "save_uncertainty": save_uncertainty,
        "segment_options": segment_options,
    }
    client = connect(scheduler)
    try:
        _wait_for_workers(client)
        yield from _run(client, model_path, paths, out_dir, options, retries, stop, resume)
    finally:
        if client is not scheduler:
            client.close()


def _wait_for_workers(client: Any) -> None:
    """Wait for the scheduler to have a worker; a clear error if none comes."""
    timeout_s = WORKER_WAIT_S
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except (OSError, TimeoutError):
        raise NanowireError(
            f"The dask scheduler at {client.scheduler.address} has no workers (waited "
            f"{timeout_s:g} s); start some with 'dask worker {client.scheduler.address}'."
        ) from None


def _run(
    client: Any,
    model_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: dict[str, Any],
    retries: int,
    stop: threading.Event | None,
    resume: bool = False,
) -> Iterator[Progress]:
    """Predict the files on the cluster into ``out_dir`` holding its predictions.csv's lock."""
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with PredictionTable(out, paths, resume=resume) as table:
        yield from _collect(client, table, model_path, paths, out, options, retries, stop)


def _collect(
    client: Any,
    table: PredictionTable,
    model_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out: Path,
    options: dict[str, Any],
    retries: int,
    stop: threading.Event | None,
) -> Iterator[Progress]:
    """Submit one task per file ``table`` lacks; append each file's rows as its task finishes.

    A task that fails (an error, or ``KilledWorker`` when workers keep dying under it; dask
    moves the tasks of one dead worker by itself) is submitted again while its file has
    ``retries`` left; a NanowireError (bad input) is not retried.
    """
    from distributed import as_completed

    model = str(Path(model_path).absolute())
    sha256 = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    stems = output_stems(paths)
    todo = [i for i in range(len(paths)) if i not in table.finished]

    def submit(i: int) -> Any:
        path = str(Path(paths[i]).absolute())
        task = (_predict_task, model, sha256, path, stems[i], str(out), options)
        return client.submit(*task, pure=False)

    futures = {submit(i): i for i in todo}
    left = dict.fromkeys(todo, retries)
    done, rate = 0, Rate(len(todo))
    tasks = as_completed(futures)
    try:
        for future in tasks:
            i = futures.pop(future)
            if future.status != "finished" and left[i] > 0 and not _user_error(future):
                left[i] -= 1
                again = submit(i)
                futures[again] = i
                tasks.add(again)
                continue
            table.append(_as_given(_result(future, paths[i]), paths[i]))
            done += 1
            speed, eta = rate.update(1)
            yield Progress(JOB, done, len(todo), images_per_s=speed, eta_s=eta)
            if stop_requested(stop):
                break
    finally:
        client.cancel(list(futures))
    csv = table.finish()
    stopped = "stopped; " if done < len(todo) else ""
    yield Progress(JOB, done, len(todo), message=f"{stopped}wrote {csv}", done=True)


def _user_error(future: Any) -> bool:
    """Whether a failed task failed on the input (a NanowireError): running it again is futile."""
    return future.status == "error" and isinstance(future.exception(), NanowireError)


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
