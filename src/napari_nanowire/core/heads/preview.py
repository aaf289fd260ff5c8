"""A quick look at the segmenter on one slice: a short training, then that slice predicted.

After a few strokes a user wants to see what the segmenter makes of them, within seconds, the
way ilastik and napari-convpaint give instant feedback. :func:`preview_slice` trains the
segmenter for a few seconds (:func:`preview_config`: a small step budget and a time cap, no
validation split, no unlabelled frames) *from the current state*, then predicts that one slice
with :class:`~..predict.Predictor` exactly as a full prediction would (working scale, scale-bar
masking, post-processing). The current state is the newest model a preview can start from
(:func:`current_state`): the last preview, the last full segmenter training, or the encoder.
Starting from a segmenter continues its decoder (``SegmenterConfig.continue_head``) at its
working scale, so each preview refines the previous one instead of starting over.

The training loop is :func:`.segment.train_segmenter`'s; the preview writes its model to a file
the caller names (a temporary one, never the user's saved models).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import NanowireError
from ..model.modelfile import ModelFile, ModelFileError, load_model
from ..progress import Progress, stop_requested
from .scale import working_from_meta
from .segment import SegmenterConfig, check_pairs, train_segmenter

JOB = "preview"
PREVIEW_STEPS = 60
"""Most training steps of one preview (the time cap usually ends it sooner on a CPU)."""
PREVIEW_SECONDS = 4.0
"""Time cap of a preview's training loop, in seconds. With data preparation, saving and the
prediction of the slice a preview takes about 5-7 s with the tiny encoder on a 2-core CPU
(benchmarks/preview_time.py)."""
PREVIEW_BATCH = 4
"""Crops per preview step (the full training: 8). Crops are the full training's (at most
:data:`.scale.TRAIN_CROP` working px): a step on 4 crops of 128 px takes about 0.2 s with the
tiny encoder on one CPU thread, on 256 px crops 1.1 s, where 4 s would give 3 steps."""


def preview_config(config: SegmenterConfig | None = None, seed: int = 0) -> SegmenterConfig:
    """A preview's training settings: ``config`` (the full training's; default settings
    without) made short, with no validation split and no unlabelled frames.

    ``seed`` changes the crops, so that successive previews do not repeat the same ones.
    """
    config = config or SegmenterConfig()
    return replace(
        config,
        steps=min(config.steps, PREVIEW_STEPS),
        max_seconds=PREVIEW_SECONDS,
        batch_size=min(config.batch_size, PREVIEW_BATCH),
        validation=False,
        patience=0,
        semi_supervised=False,
        seed=seed,
    )


def continues(model: ModelFile, class_names: Sequence[str] | None) -> bool:
    """True when ``model`` holds a segmenter of the mask classes ``class_names`` (foreground
    names; None: any segmenter with one foreground class), which a preview can continue."""
    if "segmenter" not in model.meta.heads or model.meta.segmenter is None:
        return False
    found = list(model.meta.mask_classes or ())[1:]
    if class_names is None:
        return len(found) == 1
    return found == list(class_names)


def current_state(
    candidates: Sequence[str | os.PathLike | None], class_names: Sequence[str] | None
) -> Path | None:
    """The model a preview starts from: the newest readable file among ``candidates`` (the
    last preview, the last segmenter training, the encoder) that is an encoder or a segmenter
    of these classes. A new pretraining thus wins over segmenters trained on an older
    encoder, and a full training over the previews before it. None when there is none."""
    found = []
    for candidate in candidates:
        if candidate is None or not Path(candidate).is_file():
            continue
        path = Path(candidate)
        try:
            model = load_model(path)
        except ModelFileError:
            continue
        if model.meta.heads and not continues(model, class_names):
            continue  # a classifier, or a segmenter of other classes: its encoder is older
        found.append((path.stat().st_mtime_ns, path))
    return max(found)[1] if found else None


@dataclass
class SlicePreview:
    """What a preview shows: the slice's mask and how it was made."""

    mask: np.ndarray | None
    """(Y, X) uint8 classes of the slice (0 = background, k = class k); None when stopped."""
    mask_classes: list[str]
    uncertainty: float | None
    """Mean per-pixel entropy of the slice's class probabilities (nats); None when stopped."""
    model: Path
    """The preview's model file: where the next preview continues."""
    continued: bool
    """True when training went on from a segmenter's weights, False from the encoder."""
    steps: int
    train_seconds: float
    predict_seconds: float


def preview_slice(
    start: ModelFile | str | os.PathLike,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    frame: np.ndarray,
    out: str | os.PathLike,
    pixel_sizes_nm: Sequence[float | None] | None = None,
    frame_pixel_size_nm: float | None = None,
    class_names: Sequence[str] | None = None,
    config: SegmenterConfig | None = None,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, SlicePreview]:
    """Train briefly from ``start`` on the labelled ``images``/``masks``, then segment ``frame``.

    ``start`` is an encoder or a segmenter model (see :func:`current_state`); a segmenter of
    the same classes is continued at its working scale, anything else gets a new
    decoder. ``config`` defaults to :func:`preview_config`; the trained model is written to
    ``out`` (which may be ``start``: it is read first). Yields the training's progress (job
    ``"preview"``); returns a :class:`SlicePreview`. A stop request ends training early and
    skips the prediction (the weights trained so far are saved to ``out``).
    """
    check_pairs(images, masks)
    model = start if isinstance(start, ModelFile) else load_model(start)
    config = config or preview_config()
    names = list(class_names) if class_names is not None else None
    sizes = list(pixel_sizes_nm) if pixel_sizes_nm is not None else [None] * len(images)
    continued = continues(model, names)
    if continued:  # at the segmenter's working scale: its weights were trained at it
        working = working_from_meta(model.meta)
        config = replace(
            config,
            continue_head=True,
            working_pixel_size_nm=working.pixel_size_nm,
            working_downsample=working.downsample,
        )
    began = time.perf_counter()
    steps = 0
    for event in train_segmenter(
        model,
        images,
        masks,
        out,
        pixel_sizes_nm=sizes,
        class_names=names,
        config=config,
        stop=stop,
    ):
        steps = event.step
        if event.done:
            event = replace(event, message=f"{event.message.split(';')[0]}; predicting the slice")
        yield replace(event, job=JOB, done=False)
    train_seconds = time.perf_counter() - began
    predicted = time.perf_counter()
    mask = uncertainty = None
    trained = load_model(out)
    if not stop_requested(stop):
        from ..predict.predictor import Predictor  # the predictor imports the heads

        predictor = Predictor(trained, str(out), config.device)
        result = predictor.segment(np.asarray(frame), frame_pixel_size_nm)
        mask, uncertainty = result.mask, result.mean_entropy
    predict_seconds = time.perf_counter() - predicted
    message = (
        f"stopped after {steps} steps"
        if mask is None
        else f"{steps} steps in {train_seconds:.1f} s, slice predicted in {predict_seconds:.1f} s"
    )
    yield Progress(JOB, steps, steps, message=message, done=True)
    return SlicePreview(
        mask=mask,
        mask_classes=list(trained.meta.mask_classes or ()),
        uncertainty=uncertainty,
        model=Path(out),
        continued=continued,
        steps=steps,
        train_seconds=train_seconds,
        predict_seconds=predict_seconds,
    )


def check_strokes(masks: Sequence[np.ndarray], dense: bool = False) -> None:
    """Refuse masks a preview cannot learn from, saying what to paint.

    Cheap checks before any training starts: some painted pixels, and at least two classes
    among them (background and an object class).
    """
    painted = [np.unique(m) for m in masks]
    values = np.unique(np.concatenate(painted)) if painted else np.array([], np.uint8)
    values = values if dense else values[values > 0]
    if values.size == 0:
        raise NanowireError(
            "No strokes to preview from: paint a few strokes of background (label 1) and of "
            "wires (label 2) on this slice or another, then press Preview slice."
        )
    if values.size < 2:
        raise NanowireError(
            "The strokes hold only one class: paint both background (label 1) and at least "
            "one object class (label 2..), then press Preview slice."
        )
