"""Segmentation from a few strokes or dense masks: a U-Net decoder on the pretrained encoder.

Training masks follow the project convention: 0 = not labelled (no loss, no gradient),
1 = background, 2.. = foreground classes; with ``dense_masks`` 0 = background, 1.. = classes.
Internally targets are class indices (0 = background) with -1 for unlabelled pixels, which is
also what predicted masks hold (0 = background, k = foreground class k). The training loop
(:mod:`.seg_loop`): class-weighted cross-entropy plus soft Dice over labelled pixels, on
augmented crops (:mod:`.seg_augment`), plus FixMatch consistency on unlabelled frames; judged
on held-out labels, stopped when they stop improving (:mod:`.seg_validation`) or at a time cap.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import NanowireError
from ..masks import IGNORE, check_mask_values, check_shape, class_targets
from ..model.metadata import SegmenterMeta
from ..model.modelfile import ModelFile, load_model, save_model
from ..model.preprocess import median_known
from ..progress import Progress, stop_requested
from .classify import class_weights
from .features import add_head, encoder_from
from .postprocess import default_postprocess
from .refine import labelled_polarity, refine_probabilities
from .scale import TRAIN_CROP, WorkingScale, default_tile, default_working_scale, to_working
from .scalebar import find_annotations
from .seg_loop import JOB, fit_net
from .seg_validation import Split, fill_choice, holdout_split, iou_dice, refine_scores
from .tiling import assemble
from .unet import UNet, UNetDecoder, load_segmenter, predict_classes, probability_strips


@dataclass
class SegmenterConfig:
    """Settings of a segmenter training run (recorded in the model file)."""

    steps: int = 2000
    """Most training steps; validation (``patience``) or ``max_seconds`` usually stop sooner."""
    batch_size: int = 8
    tile: int | None = None
    """Prediction (and validation) tile in working pixels (a multiple of 32); default from
    the working-scale images (:func:`.scale.default_tile`)."""
    crop: int | None = None
    """Training crop in working pixels (a multiple of 32); default the tile, at most
    :data:`TRAIN_CROP`. The U-Net is fully convolutional, so it predicts at the larger tile."""
    overlap: int | None = None
    """Prediction tile overlap in pixels; default a quarter tile."""
    lr: float = 1e-3
    encoder_lr_factor: float = 0.1
    """Encoder learning rate as a fraction of ``lr``."""
    freeze_encoder: bool = False
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    dense_masks: bool = False
    device: str = "auto"
    seed: int = 0
    working_pixel_size_nm: float | None = None
    """Working pixel size (nm/px); default from the data (:mod:`.scale`)."""
    working_downsample: float | None = None
    """Original pixels per working pixel; default from the data (:mod:`.scale`)."""
    ignore_scale_bar: bool = True
    """Treat burned-in scale bars and databars as not labelled (:mod:`.scalebar`)."""
    augment: bool = True
    """Scale jitter and photometric changes on the labelled crops (flips/rotations always)."""
    scale_jitter: tuple[float, float] = (0.8, 1.25)
    validation: bool = True
    """Hold labels out (see :mod:`.seg_validation`), stop on them and keep the best weights."""
    validate_every: int = 25
    patience: int = 6
    """Validation checks without improvement before stopping; 0 runs all ``steps``."""
    max_seconds: float | None = 90.0
    """Hard cap on the training loop's time (3 frames at defaults: under 2 min in all)."""
    semi_supervised: bool = False
    """FixMatch consistency on the unlabelled frames given. Off by default: over 3 training
    seeds with 3 stroked images it lowered the mean of the per-seed median IoU on real EMPS
    particles (0.76 -> 0.68 dark, 0.80 -> 0.76 bright) and on hard synthetic wires (0.54 ->
    0.41), at 1.5-2x the training time (benchmarks/RESULTS.md, issue 11)."""
    unlabelled_batch: int = 4
    confidence: float = 0.9
    """Pseudo-labels only where the weak view's top probability reaches this."""
    unlabelled_weight: float = 1.0
    rampup_steps: int = 50
    """The consistency weight grows linearly to ``unlabelled_weight`` over these steps."""
    refine_intensity: bool = True
    """Refine the net's borders with each image's grey levels and a graph cut when predicting
    (:mod:`.refine`, stored in the model's post-processing). On: with 3 stroked images it raised
    the median test IoU of 26 of 28 models over the net alone (EMPS dark +0.10, bright +0.08,
    synthetic wires +0.15; benchmarks/RESULTS.md, "Graph cut and polarity check")."""
    continue_head: bool = False
    """Start from ``base``'s segmenter head (same mask classes) instead of a new decoder, as
    the GUI's slice preview does (:mod:`.preview`)."""


def check_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> None:
    """Refuse missing data or a mask whose shape differs from its image's."""
    if not images:
        raise NanowireError("No training images: give at least one image with its mask.")
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks.")
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        check_shape(np.shape(mask), np.shape(image), f"Mask {i}", "its image")


def working_frames(
    images: Sequence[np.ndarray],
    pixel_sizes_nm: Sequence[float | None],
    working: WorkingScale,
    masks: Sequence[np.ndarray] | None = None,
    dense: bool = False,
    ignore_scale_bar: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images (and masks as targets) brought to the working scale (:mod:`.scale`).

    The one place training applies the working scale: everything after it takes prepared
    frames. With ``ignore_scale_bar``, burned-in scale bars and databars count as not
    labelled. Without ``masks`` the second list is empty.
    """
    prepared, targets = [], []
    for i, (image, px) in enumerate(zip(images, pixel_sizes_nm, strict=True)):
        target = None
        if masks is not None:
            target = class_targets(masks[i], dense)
            if ignore_scale_bar:
                target[find_annotations(image)[0]] = IGNORE
        image, target = to_working(image, target, px, working, unlabelled=IGNORE)
        prepared.append(image)
        if target is not None:
            targets.append(target)
    return prepared, targets


def train_segmenter(
    base: ModelFile | str | os.PathLike,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    out: str | os.PathLike,
    pixel_sizes_nm: Sequence[float | None] | None = None,
    class_names: Sequence[str] | None = None,
    config: SegmenterConfig | None = None,
    stop: threading.Event | None = None,
    unlabelled: Sequence[np.ndarray] = (),
    unlabelled_pixel_sizes_nm: Sequence[float | None] | None = None,
) -> Iterator[Progress]:
    """Train a U-Net on ``base``'s encoder from images and masks; write it to ``out``.

    ``class_names`` names the foreground classes (mask values 2.., or 1.. when dense); by
    default "foreground" or "class_1", "class_2", ... A classifier head in ``base`` is kept
    only with ``freeze_encoder``. ``unlabelled`` frames (no masks) feed the semi-supervised
    consistency loss (:mod:`.seg_augment`) when ``config.semi_supervised``. Labels are held
    out for validation (:mod:`.seg_validation`): events carry ``val_iou`` when measured, and
    the last event (``done=True``) the validation and training IoU/Dice of the best weights,
    which are what is saved. A stop request saves the model trained so far.
    """
    config = config or SegmenterConfig()
    for name, size in (("Tile", config.tile), ("Training crop", config.crop)):
        if size is not None and size % 32:
            raise NanowireError(f"{name} size {size} must be a multiple of 32.")
    check_pairs(images, masks)
    for i, mask in enumerate(masks):
        check_mask_values(mask, f"{i + 1} of {len(masks)}", class_names, config.dense_masks)
    base_path = "" if isinstance(base, ModelFile) else str(base)
    model = base if isinstance(base, ModelFile) else load_model(base)
    encoder = encoder_from(model, base_path)
    device = resolve_device(config.device)
    sizes = list(pixel_sizes_nm) if pixel_sizes_nm is not None else [None] * len(images)
    model_px = model.meta.pixel_size_nm or median_known(sizes)
    working = default_working_scale(
        [np.shape(i) for i in images],
        sizes,
        config.working_pixel_size_nm,
        config.working_downsample,
    )
    prepared, targets = working_frames(
        images, sizes, working, masks, config.dense_masks, config.ignore_scale_bar
    )
    tile = config.tile or default_tile([p.shape for p in prepared])
    config = replace(config, tile=tile, crop=config.crop or min(tile, TRAIN_CROP))
    labelled = np.concatenate([t[t >= 0] for t in targets])
    if labelled.size == 0:
        raise NanowireError("The masks hold no labelled pixels: paint background and objects.")
    n_found = int(labelled.max()) + 1
    names = _mask_class_names(class_names, n_found)
    if n_found < 2 or len(np.unique(labelled)) < 2:
        raise NanowireError(
            "The masks label only one class: paint both background and at least one object class."
        )
    split = holdout_split(targets, config.seed) if config.validation else None
    split = split or Split(list(targets), None, None, False, "off")
    pool: list[np.ndarray] = []
    if config.semi_supervised and len(unlabelled):
        u_sizes = unlabelled_pixel_sizes_nm or [None] * len(unlabelled)
        pool = working_frames(unlabelled, u_sizes, working)[0]
        pool += [
            p for i, p in enumerate(prepared) if not split.held_out_image or i != split.val_image
        ]

    torch.manual_seed(config.seed)
    if config.continue_head:
        _check_head_classes(model, names)
        decoder = load_segmenter(model, base_path).decoder
    else:
        decoder = UNetDecoder(encoder.stage_channels, len(names))
    net = UNet(encoder, decoder).to(device)
    trained = np.concatenate([t[t >= 0] for t in split.train_targets])
    weights = class_weights(trained, len(names)).to(device)
    start = time.perf_counter()
    fit = yield from fit_net(net, prepared, split, pool, weights, config, device, stop)
    encoder.requires_grad_(True)

    overlap = config.overlap if config.overlap is not None else config.tile // 4
    metrics = dict(fit.pop("metrics"))
    train_images = [i for i, t in enumerate(split.train_targets) if (t >= 0).any()]
    preds = [predict_classes(net, prepared[i], config.tile, overlap, device) for i in train_images]
    truth = [split.train_targets[i] for i in train_images]
    metrics["train_iou"], metrics["train_dice"] = iou_dice(
        np.concatenate([p.ravel() for p in preds]),
        np.concatenate([t.ravel() for t in truth]),
        len(names),
        np.concatenate([(t >= 0).ravel() for t in truth]),
    )
    post = default_postprocess(working, median_known(sizes)).replace(
        refine_intensity=config.refine_intensity,
        object_polarity=labelled_polarity(prepared, targets),
    )
    if split.val_image is not None:
        image = prepared[split.val_image]
        probs = assemble(probability_strips(net, image, config.tile, overlap, device=device))
        refined = refine_probabilities(image, probs, post.object_polarity)
        metrics.update(refine_scores(probs, refined, split.val_targets))
        val = (refined if config.refine_intensity else probs).argmax(0)
        fill, scores = fill_choice(val, split.val_targets, len(names))
        post = post.replace(fill_holes=fill)
        metrics.update(scores)
    head_meta = SegmenterMeta(
        settings=asdict(config),
        tile=config.tile,
        overlap=overlap,
        working=working.to_meta(),
        postprocess=post.to_meta(),
        ignore_scale_bar=config.ignore_scale_bar,
        decoder_widths=decoder.widths,
        n_images=len(images),
        labelled_pixels=int(labelled.size),
        metrics=metrics,
        history=fit.pop("history"),
        stopped_early=stop_requested(stop),
        train_seconds=time.perf_counter() - start,
        extra={
            "n_unlabelled": len(unlabelled) if pool else 0,
            "validation": split.description,
            **fit,
        },
    )
    result, dropped = add_head(
        model, encoder, JOB, decoder, names, head_meta, encoder_changed=not config.freeze_encoder
    )
    result.meta.pixel_size_nm = model_px
    save_model(result, Path(out))
    note = f"; dropped the {', '.join(dropped)} head (encoder changed)" if dropped else ""
    yield Progress(
        JOB,
        fit["steps_run"],
        config.steps,
        metrics=metrics,
        message=f"{fit['stop_reason']}; saved {out}{note}",
        done=True,
    )


def _check_head_classes(model: ModelFile, names: list[str]) -> None:
    """Refuse to continue a segmenter head whose mask classes differ from ``names``."""
    if list(model.meta.mask_classes or ()) != names:
        raise NanowireError(
            f"Cannot continue the segmenter: it segments {model.meta.mask_classes}, the masks "
            f"{names}; train a new one from the encoder."
        )


def _mask_class_names(names: Sequence[str] | None, n_found: int) -> list[str]:
    """Background plus the foreground class names, checked against the classes in the masks."""
    if names is None:
        n_fg = max(n_found - 1, 1)
        names = ["foreground"] if n_fg == 1 else [f"class_{k}" for k in range(1, n_fg + 1)]
    elif len(names) < n_found - 1:
        raise NanowireError(
            f"The masks hold {n_found - 1} foreground classes but {len(names)} class names were "
            f"given ({', '.join(names)}); name every class."
        )
    return ["background", *names]
