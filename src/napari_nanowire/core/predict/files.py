"""Using a trained model file: classes, masks and their uncertainty, for one image or many files.

:class:`Predictor` loads a classifier and/or segmenter model file once and predicts images in
memory (GUI, scripts); :func:`predict_files` runs it over image files and writes the results
(CLI). Uncertainty, for choosing what to label next: per image, the normalised entropy of the
class probabilities (0 = certain, 1 = uniform) and the margin between the two most likely
classes; per pixel, the normalised entropy of the segmenter's class probabilities, and its
mean over the image.

Output of :func:`predict_files` in ``out_dir``:

- ``predictions.csv``: one row per image (a stack gives one row per frame, named
  ``path[i]``). With a classifier: ``class``, ``confidence``, ``prob_<class>`` for each class,
  ``entropy``, ``margin``. With a segmenter: ``mask`` (the mask file, relative to ``out_dir``)
  and ``mask_entropy`` (mean per-pixel entropy), and ``ignored``: the burned-in scale bars
  and databars set to background, as "kind x0,y0,x1,y1" (see :mod:`..heads.scalebar`).
- ``masks/<stem>.tif`` (segmenter): uint8, 0 = background, k = mask class k (the model's
  ``mask_classes``), the input's shape (a stack gives a stack) and pixel size; a zlib-compressed
  ImageJ TIFF marked as a mask with its class names (:mod:`~napari_nanowire.core.io.labels`).
- ``uncertainty/<stem>.tif`` with ``save_uncertainty``: float32 per-pixel entropy.

Memory: files are predicted frame by frame. Each frame is read alone (large inputs open
lazily, see :func:`~napari_nanowire.core.io.read_image`), classified, segmented, and its mask
appended to the output file, so peak memory is bounded by one frame, never the stack: about
25 bytes per pixel of the largest frame (numpy's share 20 B/px, tests/test_big_data.py; RSS
24 B/px at 8192 px, benchmarks/bench_inference.py), plus 8 B/px with ``save_uncertainty``,
plus the libraries and the model (about 0.8 GB with torch on a CPU). An 8k x 8k frame thus
needs about 1.6 GB over the libraries, whether the stack holds 1 or 1,000 frames; predicting
20 and 100 frames of 1024 px peaked at 983 and 1038 MiB of RSS, and 200 frames of 512 px
stayed at 950 MiB from frame 20 on. Mask files appear under their names only once complete:
a stopped or crashed run leaves no partial stack behind.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..errors import NanowireError
from ..io import read_image, tiff_frame_writer
from ..io.labels import LabelsInfo, labels_metadata
from ..names import unique_names
from ..progress import Progress, Rate, stop_requested
from .predictor import Predictor
from .table import PredictionTable

JOB = "predict"


def output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The output file stem of each input path: its stem, made unique."""
    return unique_names([Path(p).stem for p in paths])


def frame_count(path: str | os.PathLike) -> int:
    """How many 2D images ``path`` holds, from its headers (its pixels are not read)."""
    data = read_image(path, lazy=True).data
    return 1 if data.ndim == 2 else len(data)


def predict_frames(
    predictor: Predictor,
    path: str | os.PathLike,
    stem: str,
    out: Path,
    pixel_size_nm: float | None = None,
    tile: int | None = None,
    save_uncertainty: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[dict]:
    """Predict one image file frame by frame, yielding each frame's table row as it is done.

    Masks are appended to their files frame by frame; the files appear (atomically, under
    names made from ``stem`` only) after the last frame, so running this twice for the same
    file (a retried task) rewrites the same complete files. A stop request ends the file
    after the current frame without writing its masks, as does closing the generator early.
    """
    data = read_image(path, pixel_size_nm)
    image, px = data.data, data.pixel_size_nm
    with ExitStack() as files:
        masks = maps = None
        if "segmenter" in predictor.heads:
            marked = labels_metadata(LabelsInfo(predictor.mask_classes))  # reopen as Labels
            masks = files.enter_context(
                tiff_frame_writer(out / "masks" / f"{stem}.tif", image.shape, np.uint8, px, marked)
            )
            if save_uncertainty:
                maps = files.enter_context(
                    tiff_frame_writer(out / "uncertainty" / f"{stem}.tif", image.shape, "f4", px)
                )
        for i, result in predictor.predict_stack(
            image, px, entropy_map=save_uncertainty, tile=tile, stop=stop
        ):
            if result.mask is not None:
                masks.append(result.mask.mask)
                if maps is not None:
                    maps.append(result.mask.entropy_map)
            name = str(path) if image.ndim == 2 else f"{path}[{i}]"
            yield {"image": name, **result.row(f"masks/{stem}.tif")}


def predict_files(
    model_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    device: str = "auto",
    pixel_size_nm: float | None = None,
    tile: int | None = None,
    save_uncertainty: bool = False,
    stop: threading.Event | None = None,
    resume: bool = False,
    segment_options: dict | None = None,
) -> Iterator[Progress]:
    """Predict every image file with every head of a model file; write results to ``out_dir``.

    Yields one Progress per frame, out of the frames of all files (counted from their headers
    first); ``pixel_size_nm`` overrides the files' own, ``segment_options`` the segmenter
    settings of the model file (keywords of :meth:`Predictor.configure`). A stop request ends
    after the current frame, with predictions.csv holding the files done so far (a stack stopped
    part-way is left out, and its mask file not written). Frames are read one at a time, so
    memory does not grow with the stack (see the module docstring), and each output is written
    atomically. Each file's rows reach predictions.csv as soon as it is done (:mod:`.table`);
    ``resume`` skips the files a killed or stopped run into ``out_dir`` finished.
    """
    if not paths:
        raise NanowireError("No images given: pass at least one image file or folder.")
    predictor = Predictor.load(model_path, device)
    predictor.features_kept = None  # one pass: keeping features would only grow memory
    if segment_options:
        predictor.configure(**segment_options)
    out = Path(out_dir)
    stems = output_stems(paths)
    counts = [frame_count(path) for path in paths]
    with PredictionTable(out, paths, counts, resume) as table:
        total = sum(c for k, c in enumerate(counts) if k not in table.finished)
        rate = Rate(total)
        done = 0
        for k, (path, stem, count) in enumerate(zip(paths, stems, counts, strict=True)):
            if k in table.finished:
                continue
            file_rows = []
            for row in predict_frames(
                predictor, path, stem, out, pixel_size_nm, tile, save_uncertainty, stop
            ):
                file_rows.append(row)
                done += 1
                speed, eta = rate.update(1)
                yield Progress(JOB, done, total, images_per_s=speed, eta_s=eta)
            if len(file_rows) == count:  # not stopped part-way: its masks are written
                table.append(file_rows)
            if stop_requested(stop):
                break
        csv = table.finish()
    stopped = "stopped; " if stop_requested(stop) else ""
    yield Progress(JOB, done, total, message=f"{stopped}wrote {csv}", done=True)
