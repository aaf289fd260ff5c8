"""Segmentation from a few strokes or dense masks: a U-Net decoder on the pretrained encoder.

Training masks follow the project convention: 0 = not labelled (no loss, no gradient),
1 = background, 2.. = foreground classes; with ``dense_masks`` 0 = background, 1.. = classes.
Internally targets are class indices (0 = background) with -1 for unlabelled pixels, which is
also what predicted masks hold (0 = background, k = foreground class k). The loss is
cross-entropy plus soft Dice, both over labelled pixels only. Prediction slides overlapping
tiles over the image with smooth blending (:mod:`.tiling`), strip by strip.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..devices import resolve_device
from ..errors import NanowireError
from ..masks import IGNORE, check_mask_values, check_shape, class_targets
from ..model.metadata import SegmenterMeta
from ..model.modelfile import ModelFile, load_model, save_model
from ..model.preprocess import median_known
from ..progress import Progress, Rate, stop_requested
from .classify import class_weights
from .features import add_head, encoder_from, freeze_batchnorm, random_crop
from .postprocess import default_postprocess
from .scale import default_tile, default_working_scale, to_working
from .scalebar import find_annotations
from .unet import UNet, UNetDecoder, predict_classes

JOB = "segmenter"


@dataclass
class SegmenterConfig:
    """Settings of a segmenter training run (recorded in the model file)."""

    steps: int = 400
    batch_size: int = 8
    tile: int | None = None
    """Training crop and prediction tile in working pixels (a multiple of 32); default from
    the working-scale images (:func:`.scale.default_tile`)."""
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


def segmentation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted cross-entropy plus soft Dice over labelled pixels (target -1 is ignored).

    Dice is averaged over the classes labelled in the batch. Unlabelled pixels get exactly
    zero gradient from both terms.
    """
    n_classes = logits.shape[1]
    ce = F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE)
    valid = (targets != IGNORE).unsqueeze(1)
    probs = torch.softmax(logits, 1) * valid
    onehot = F.one_hot(targets.clamp_min(0), n_classes).permute(0, 3, 1, 2) * valid
    inter = (probs * onehot).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = 1 - (2 * inter[present] + 1.0) / (total[present] + 1.0)
    return ce + dice_weight * dice.mean()


def iou_dice(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, valid: np.ndarray | None = None
) -> tuple[float, float]:
    """Mean IoU and Dice over foreground classes 1..n_classes-1 (only where ``valid``).

    Classes absent from both prediction and truth are skipped; (nan, nan) if all are.
    """
    if valid is not None:
        pred, truth = pred[valid], truth[valid]
    ious, dices = [], []
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        inter, union = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
        if union:
            ious.append(inter / union)
            dices.append(2 * inter / (p.sum() + t.sum()))
    return (float(np.mean(ious)), float(np.mean(dices))) if ious else (np.nan, np.nan)


def check_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> None:
    """Refuse missing data or a mask whose shape differs from its image's."""
    if not images:
        raise NanowireError("No training images: give at least one image with its mask.")
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks.")
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        check_shape(np.shape(mask), np.shape(image), f"Mask {i}", "its image")


def train_segmenter(
    base: ModelFile | str | os.PathLike,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    out: str | os.PathLike,
    pixel_sizes_nm: Sequence[float | None] | None = None,
    class_names: Sequence[str] | None = None,
    config: SegmenterConfig | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Progress]:
    """Train a U-Net on ``base``'s encoder from images and masks; write it to ``out``.

    ``class_names`` names the foreground classes (mask values 2.., or 1.. when dense); by
    default "foreground" or "class_1", "class_2", ... A classifier head in ``base`` is kept
    only with ``freeze_encoder``. The last event has ``done=True`` and the training IoU/Dice
    over labelled pixels; a stop request saves the model trained so far.
    """
    config = config or SegmenterConfig()
    if config.tile is not None and config.tile % 32:
        raise NanowireError(f"Tile size {config.tile} must be a multiple of 32.")
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
    prepared, targets = [], []
    for image, mask, px in zip(images, masks, sizes, strict=True):
        target = class_targets(mask, config.dense_masks)
        if config.ignore_scale_bar:
            target[find_annotations(image)[0]] = IGNORE
        image, target = to_working(image, target, px, working, unlabelled=IGNORE)
        prepared.append(image)
        targets.append(target)
    tile = config.tile or default_tile([p.shape for p in prepared])
    labelled = np.concatenate([t[t >= 0] for t in targets])
    if labelled.size == 0:
        raise NanowireError("The masks hold no labelled pixels: paint background and objects.")
    n_found = int(labelled.max()) + 1
    names = _mask_class_names(class_names, n_found)
    if n_found < 2 or len(np.unique(labelled)) < 2:
        raise NanowireError(
            "The masks label only one class: paint both background and at least one object class."
        )

    torch.manual_seed(config.seed)
    decoder = UNetDecoder(encoder.stage_channels, len(names))
    net = UNet(encoder, decoder).to(device)
    weights = class_weights(labelled, len(names)).to(device)
    groups = [{"params": decoder.parameters(), "lr": config.lr}]
    if config.freeze_encoder:
        encoder.requires_grad_(False)
    else:
        groups.append({"params": encoder.parameters(), "lr": config.lr * config.encoder_lr_factor})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(config.steps, 1))
    rng = np.random.default_rng(config.seed)
    usable = [i for i, t in enumerate(targets) if (t >= 0).any()]
    anchors = [np.flatnonzero(t >= 0) if (t < 0).any() else None for t in targets]
    history: list[float] = []
    rate = Rate(config.steps)
    start = time.perf_counter()
    for step in range(config.steps):
        if stop_requested(stop):
            break
        net.train()
        freeze_batchnorm(encoder)
        crops = [
            random_crop(rng, prepared[i], tile, targets[i], anchors[i], IGNORE)
            for i in rng.choice(usable, size=config.batch_size)
        ]
        x = torch.from_numpy(np.stack([c for c, _ in crops])[:, None]).to(device)
        y = torch.from_numpy(np.stack([t for _, t in crops])).to(device)
        loss = segmentation_loss(net(x), y, weights, config.dice_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(loss.item())
        speed, eta = rate.update(config.batch_size)
        yield Progress(JOB, step + 1, config.steps, loss=history[-1], images_per_s=speed, eta_s=eta)
    encoder.requires_grad_(True)

    overlap = config.overlap if config.overlap is not None else tile // 4
    preds = [predict_classes(net, p, tile, overlap, device) for p in prepared]
    valid = np.concatenate([(t >= 0).ravel() for t in targets])
    iou, dice = iou_dice(
        np.concatenate([p.ravel() for p in preds]),
        np.concatenate([t.ravel() for t in targets]),
        len(names),
        valid,
    )
    metrics = {"train_iou": iou, "train_dice": dice}
    head_meta = SegmenterMeta(
        settings=asdict(config),
        tile=tile,
        overlap=overlap,
        working=working.to_meta(),
        postprocess=default_postprocess(working, median_known(sizes)).to_meta(),
        ignore_scale_bar=config.ignore_scale_bar,
        decoder_widths=decoder.widths,
        n_images=len(images),
        labelled_pixels=int(labelled.size),
        metrics=metrics,
        history=history,
        stopped_early=stop_requested(stop),
        train_seconds=time.perf_counter() - start,
    )
    result, dropped = add_head(
        model, encoder, JOB, decoder, names, head_meta, encoder_changed=not config.freeze_encoder
    )
    result.meta.pixel_size_nm = model_px
    save_model(result, Path(out))
    note = f"; dropped the {', '.join(dropped)} head (encoder changed)" if dropped else ""
    yield Progress(
        JOB,
        len(history),
        config.steps,
        metrics=metrics,
        message=f"saved {out}{note}",
        done=True,
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
