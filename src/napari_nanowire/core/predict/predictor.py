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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..devices import resolve_device
from ..errors import NanowireError
from ..heads.classify import classifier_input, image_features, measured_features
from ..heads.features import encoder_from
from ..heads.linear import LinearHead, class_probabilities
from ..heads.postprocess import PostProcess, postprocess_from_meta, postprocess_mask
from ..heads.scale import WorkingScale, to_working, upsampled_rows, working_from_meta
from ..heads.scalebar import Annotation, find_annotations
from ..heads.unet import load_segmenter, probability_strips
from ..io import frames, read_image, tiff_frame_writer
from ..io.labels import LabelsInfo, labels_metadata
from ..model.modelfile import ModelFile, load_model
from ..names import unique_names
from ..progress import Progress, Rate, stop_requested
from .table import PredictionTable

JOB = "predict"


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Entropy of probability vectors along ``axis``, divided by its maximum: in [0, 1]."""
    n = probs.shape[axis]
    if n < 2:
        return np.zeros_like(np.take(probs, 0, axis), dtype=np.float32)
    p = np.clip(probs, 1e-12, 1.0)
    return (-(p * np.log(p)).sum(axis) / np.log(n)).astype(np.float32)


def margin(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Difference between the largest and second-largest probability along ``axis``."""
    top = np.sort(probs, axis=axis)
    return np.take(top, -1, axis) - np.take(top, -2, axis)


def label_next(
    uncertainty: Sequence[float],
    n: int = 5,
    labelled: Sequence[bool] | None = None,
    features: np.ndarray | None = None,
    pool: int = 3,
) -> list[int]:
    """Indices of ``n`` unlabelled images worth labelling next, the most uncertain first.

    Without ``features``: the ``n`` most uncertain. With (N, D) ``features``: among the
    ``pool * n`` most uncertain, a greedy k-center pick, so the suggestions are spread over the
    feature space instead of being near-duplicates: each next pick is the candidate farthest
    (standardised Euclidean distance, weighted by its uncertainty) from the images already
    picked or labelled.
    """
    score = np.asarray(uncertainty, dtype=float)
    mask = np.zeros(len(score), bool) if labelled is None else np.asarray(labelled, bool)
    order = [i for i in np.argsort(-score, kind="stable") if not mask[i]]
    if features is None or n <= 0 or not order:
        return [int(i) for i in order[:n]]
    feats = np.asarray(features, np.float64)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    candidates = np.array(order[: max(n, pool * n)])
    anchors = [candidates[0], *np.flatnonzero(mask)]
    nearest = np.min(
        np.linalg.norm(feats[candidates, None] - feats[None, anchors], axis=-1), axis=1
    )
    picked = [int(candidates[0])]
    while len(picked) < min(n, len(candidates)):
        gain = nearest * score[candidates]
        gain[np.isin(candidates, picked)] = -np.inf
        best = int(candidates[int(np.argmax(gain))])
        picked.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(feats[candidates] - feats[best], axis=1))
    return picked


@dataclass
class ClassPrediction:
    """Class probabilities of N images and what follows from them."""

    class_names: list[str]
    probabilities: np.ndarray  # (N, n_classes), calibrated (see the README's Confidence)
    features: np.ndarray | None = None  # (N, D) the classifier's input, for label_next

    @property
    def classes(self) -> list[str]:
        """The most likely class of each image."""
        return [self.class_names[k] for k in self.probabilities.argmax(1)]

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the most likely class."""
        return self.probabilities.max(1)

    @property
    def entropy(self) -> np.ndarray:
        """Normalised entropy per image (higher = less sure)."""
        return entropy(self.probabilities, 1)

    @property
    def margin(self) -> np.ndarray:
        """Top-1 minus top-2 probability per image (lower = less sure)."""
        return margin(self.probabilities, 1)

    def table(self) -> pd.DataFrame:
        """class, confidence, prob_<class>..., entropy, margin: one row per image."""
        table = pd.DataFrame({"class": self.classes, "confidence": self.confidence})
        for k, name in enumerate(self.class_names):
            table[f"prob_{name}"] = self.probabilities[:, k]
        table["entropy"] = self.entropy
        table["margin"] = self.margin
        return table


@dataclass
class MaskPrediction:
    """A predicted mask with its uncertainty."""

    mask: np.ndarray  # uint8, the input's shape; 0 = background, k = class k
    mean_entropy: float
    entropy_map: np.ndarray | None = None  # float32, the input's shape, if asked for
    ignored: list[Annotation] = field(default_factory=list)  # scale bars etc. set to background


@dataclass
class FramePrediction:
    """What every asked-for head of a model says about one 2D image."""

    classes: ClassPrediction | None = None  # one row, with the classifier
    mask: MaskPrediction | None = None  # with the segmenter

    def row(self, mask_file: str | None = None) -> dict:
        """The frame's table columns: class, confidence, prob_<class>..., entropy, margin
        (classifier), then ``mask`` (``mask_file``, if given) and mask_entropy (segmenter)."""
        row = self.classes.table().to_dict("records")[0] if self.classes is not None else {}
        if self.mask is not None:
            row.update({"mask": mask_file} if mask_file else {})
            row["mask_entropy"] = self.mask.mean_entropy
            row["ignored"] = describe(self.mask.ignored)
        return row


class Predictor:
    """A loaded model file, ready to classify and/or segment images of any size."""

    def __init__(self, model: ModelFile, path: str = "", device: str = "auto") -> None:
        self.model, self.path = model, path
        self.meta = model.meta
        self.heads = list(self.meta.heads)
        if not self.heads:
            raise NanowireError(
                f"Model file {path} holds no classifier or segmenter (kind "
                f"{self.meta.kind!r}); train one with train-classifier or train-segmenter."
            )
        _check_finite_weights(model, path)
        self.device = resolve_device(device)
        self.pixel_size_nm = self.meta.pixel_size_nm
        self.encoder = encoder_from(model, path)
        self.head: LinearHead | None = None
        if "classifier" in self.heads:
            self.class_names = list(self.meta.class_names or ())
            weight = model.part("classifier").get("linear.weight")
            in_dim = self.encoder.out_dim if weight is None else weight.shape[1]
            self.head = LinearHead(in_dim, len(self.class_names))
            model.load_part("classifier", self.head, path)
            self.head.eval()
        self.net = load_segmenter(model, path) if "segmenter" in self.heads else None
        if self.net is not None:
            self.mask_classes = list(self.meta.mask_classes or ())
            self.net.encoder = self.encoder  # one encoder serves both heads
            self.working: WorkingScale = working_from_meta(self.meta)
            self.postprocess: PostProcess = postprocess_from_meta(self.meta)
            self.ignore_scale_bar = self.meta.segmenter.ignore_scale_bar

    def configure(
        self,
        working_pixel_size_nm: float | None = None,
        working_downsample: float | None = None,
        postprocess: bool | None = None,
        min_object_nm2: float | None = None,
        min_hole_nm2: float | None = None,
        min_object_px2: float | None = None,
        min_hole_px2: float | None = None,
        ignore_scale_bar: bool | None = None,
    ) -> Predictor:
        """Override the segmenter settings stored in the model file (None keeps them).

        The working scale changes what the net sees: the stored one is what it was trained at.
        """
        self.require("segmenter")
        if working_pixel_size_nm is not None or working_downsample is not None:
            self.working = WorkingScale(
                working_pixel_size_nm or self.working.pixel_size_nm,
                working_downsample or self.working.downsample,
            )
        sizes = (min_object_nm2, min_hole_nm2, min_object_px2, min_hole_px2)
        if postprocess is None and any(v is not None for v in sizes):
            postprocess = True  # sizes given: post-process even if the model file says no
        self.postprocess = self.postprocess.replace(
            enabled=postprocess,
            min_object_nm2=min_object_nm2,
            min_hole_nm2=min_hole_nm2,
            min_object_px2=min_object_px2,
            min_hole_px2=min_hole_px2,
        )
        if ignore_scale_bar is not None:
            self.ignore_scale_bar = ignore_scale_bar
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> Predictor:
        """Load a model file from disk."""
        return cls(load_model(path), str(path), device)

    def require(self, head: str) -> None:
        """Refuse a task whose head the model file lacks, saying how to get one."""
        if head not in self.heads:
            raise NanowireError(
                f"Model file {self.path} has no {head} head (it has: {', '.join(self.heads)}); "
                f"train one with train-{head}."
            )

    def classify(
        self, images: Sequence[np.ndarray], pixel_sizes_nm: Sequence[float | None] | None = None
    ) -> ClassPrediction:
        """Class probabilities of 2D images (features pooled over tiles, as in training)."""
        self.require("classifier")
        settings = self.meta.classifier
        sizes = list(pixel_sizes_nm) if pixel_sizes_nm is not None else [None] * len(images)
        working = settings.working_size
        prepared = [
            classifier_input(image, px, self.pixel_size_nm, settings.zoom, working)
            for image, px in zip(images, sizes, strict=True)
        ]
        measured = None
        if settings.measurements:
            self.require("segmenter")
            segment = lambda image, px: self.segment(image, px).mask  # noqa: E731
            measured = [
                measured_features(segment, image, px, working)
                for image, px in zip(images, sizes, strict=True)
            ]
        feats, _ = image_features(
            self.encoder,
            prepared,
            settings.tile,
            settings.max_tiles,
            settings.scales,
            self.device,
            settings.descriptors,
            measured,
        )
        probs = class_probabilities(self.head, feats, settings.temperature)
        _check_finite_output(probs, self.path)
        return ClassPrediction(self.class_names, probs, feats)

    def predict_frame(
        self,
        frame: np.ndarray,
        pixel_size_nm: float | None = None,
        heads: Sequence[str] | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
    ) -> FramePrediction:
        """Class and/or mask, with their uncertainty, of one 2D image, by ``heads`` (default:
        every head of the model); ``entropy_map`` and ``tile`` as in :meth:`segment`."""
        heads = self.heads if heads is None else heads
        for head in heads:
            self.require(head)
        image = np.asarray(frame)
        result = FramePrediction()
        if "classifier" in heads:
            result.classes = self.classify([image], [pixel_size_nm])
        if "segmenter" in heads:
            result.mask = self.segment(image, pixel_size_nm, entropy_map, tile)
        return result

    def predict_stack(
        self,
        data,
        pixel_size_nm: float | None = None,
        indices: Sequence[int] | None = None,
        heads: Sequence[str] | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[int, FramePrediction]]:
        """(index, prediction) of each frame of (Y, X) or (N, Y, X) ``data`` (those at
        ``indices``, or all), one frame at a time, so a lazy stack is never read whole.

        A stop request ends the iteration before the next frame.
        """
        if indices is None:
            indices = range(1 if np.ndim(data) == 2 else len(data))
        for index, plane in zip(indices, frames(data, indices), strict=True):
            if stop_requested(stop):
                return
            yield index, self.predict_frame(plane, pixel_size_nm, heads, entropy_map, tile)

    def segment(
        self,
        image: np.ndarray,
        pixel_size_nm: float | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int = 8,
    ) -> MaskPrediction:
        """Mask of a 2D image: resampled to the working scale, predicted there by blended
        sliding windows, probabilities resampled back to the image's grid and argmaxed; then
        burned-in scale bars are set to background and the mask post-processed (the model's
        settings, see :meth:`configure`). Memory: the working-scale probabilities (when
        resampled) and blocks or strips of the full-size ones, never the full-size map.
        """
        self.require("segmenter")
        settings = self.meta.segmenter
        tile = tile or settings.tile
        overlap = settings.overlap if overlap is None else overlap
        prepared, _ = to_working(image, None, pixel_size_nm, self.working)
        strips = probability_strips(self.net, prepared, tile, overlap, batch_size, self.device)
        shape = np.shape(image)
        if prepared.shape != shape:  # keep the (smaller) working map, upsample it in blocks
            probs = np.empty((len(self.mask_classes), *prepared.shape), np.float32)
            for row, block in strips:
                probs[:, row : row + block.shape[1]] = block
            strips = upsampled_rows(probs, shape)
        del prepared
        mask = np.empty(shape, np.uint8)
        ent = np.empty(shape, np.float32) if entropy_map else None
        total = 0.0
        for row, block in strips:
            _check_finite_output(block, self.path)
            rows = slice(row, row + block.shape[1])
            mask[rows] = block.argmax(0)
            block_entropy = entropy(block, 0)
            total += float(block_entropy.sum(dtype=np.float64))
            if ent is not None:
                ent[rows] = block_entropy
        ignored: list[Annotation] = []
        if self.ignore_scale_bar:
            region, ignored = find_annotations(image)
            mask[region] = 0
        mask = postprocess_mask(mask, self.postprocess, pixel_size_nm)
        return MaskPrediction(mask, total / mask.size, ent, ignored)


def describe(annotations: Sequence[Annotation]) -> str:
    """Ignored regions for the table: "bar x0,y0,x1,y1; ..." (empty if none)."""
    return "; ".join(f"{a.kind} {a.x0},{a.y0},{a.x1},{a.y1}" for a in annotations)


def _check_finite_weights(model: ModelFile, path: str) -> None:
    """Refuse a model whose weights hold NaN or infinity (a diverged training): it predicts junk."""
    bad = [
        name
        for name, t in model.tensors.items()
        if t.is_floating_point() and not t.isfinite().all()
    ]
    if bad:
        raise NanowireError(
            f"Model file {path} has NaN or infinite weights (in {len(bad)} tensor(s), e.g. "
            f"{bad[0]}): its training diverged or the file is damaged. Train it again, with a "
            "lower learning rate if its loss became NaN."
        )


def _check_finite_output(probs: np.ndarray, path: str) -> None:
    """Refuse NaN probabilities instead of reporting a class with an empty confidence."""
    if not np.isfinite(probs).all():
        raise NanowireError(
            f"Model file {path} gave NaN or infinite probabilities for this image; check the "
            "image's values, or train the model again."
        )


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
