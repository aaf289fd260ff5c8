"""The segmenter's training loop: supervised (+ FixMatch) steps, validation, early stop.

What :func:`.segment.train_segmenter` runs once its frames, targets and net are ready; the
loss is class-weighted cross-entropy plus soft Dice over labelled pixels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from ..masks import IGNORE
from ..progress import Progress, Rate, stop_requested
from .features import freeze_batchnorm, random_crop
from .seg_augment import augment_labelled, consistency_loss, strong_view
from .seg_validation import EarlyStop, Split, iou_dice
from .unet import UNet, predict_classes

if TYPE_CHECKING:
    from .segment import SegmenterConfig

JOB = "segmenter"


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


def fit_net(
    net: UNet,
    frames: list[np.ndarray],
    split: Split,
    pool: list[np.ndarray],
    weights: torch.Tensor,
    config: SegmenterConfig,
    device: torch.device,
    stop: threading.Event | None,
) -> Generator[Progress, None, dict]:
    """The training loop: supervised (+ FixMatch) steps, validation, early stop, time cap.

    Yields a Progress per step; returns what the model file records about the run. The net
    ends with the weights that scored best on validation (the last ones without validation).
    """
    encoder = net.encoder
    groups = [{"params": net.decoder.parameters(), "lr": config.lr}]
    if config.freeze_encoder:
        encoder.requires_grad_(False)
    else:
        groups.append({"params": encoder.parameters(), "lr": config.lr * config.encoder_lr_factor})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=max(config.patience // 2, 1)
    )
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    targets = split.train_targets
    usable = [i for i, t in enumerate(targets) if (t >= 0).any()]
    anchors = [np.flatnonzero(t >= 0) if (t < 0).any() else None for t in targets]
    overlap = config.overlap if config.overlap is not None else config.tile // 4
    early = EarlyStop(config.patience)
    n_classes = len(weights)
    history: list[float] = []
    val_history: list[list[float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    rate = Rate(config.steps)
    start = time.perf_counter()
    reason = "max steps"
    for step in range(1, config.steps + 1):
        if stop_requested(stop):
            reason = "stopped"
            break
        net.train()
        freeze_batchnorm(encoder)
        crops = [
            random_crop(rng, frames[i], config.crop, targets[i], anchors[i], IGNORE)
            for i in rng.choice(usable, size=config.batch_size)
        ]
        x = torch.from_numpy(np.stack([c for c, _ in crops])[:, None]).to(device)
        y = torch.from_numpy(np.stack([t for _, t in crops])).to(device)
        if config.augment:
            x, y = augment_labelled(x, y, generator, config.scale_jitter)
        if pool:
            picks = rng.integers(len(pool), size=config.unlabelled_batch)
            weak = np.stack([random_crop(rng, pool[j], config.crop)[0] for j in picks])
            weak = torch.from_numpy(weak[:, None]).to(device)
            with torch.no_grad():
                weak_probs = torch.softmax(net(weak), 1)
            logits = net(torch.cat([x, strong_view(weak, generator)]))
            ramp = config.unlabelled_weight * min(1.0, step / max(config.rampup_steps, 1))
            loss = segmentation_loss(logits[: len(x)], y, weights, config.dice_weight)
            loss = loss + ramp * consistency_loss(logits[len(x) :], weak_probs, config.confidence)
        else:
            loss = segmentation_loss(net(x), y, weights, config.dice_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        metrics, message = {}, ""
        if split.val_image is not None and step % config.validate_every == 0:
            pred = predict_classes(net, frames[split.val_image], config.tile, overlap, device)
            iou, dice = iou_dice(pred, split.val_targets, n_classes, split.val_targets >= 0)
            val_history.append([step, iou, dice])
            if early.update(step, iou):
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            plateau.step(0.0 if np.isnan(iou) else iou)
            metrics = {"val_iou": iou}
            message = f"validation IoU {iou:.3f} (best {early.best:.3f} at step {early.best_step})"
        speed, eta = rate.update(config.batch_size)
        yield Progress(
            JOB,
            step,
            config.steps,
            loss=history[-1],
            images_per_s=speed,
            eta_s=eta,
            metrics=metrics,
            message=message,
        )
        if early.done:
            reason = f"validation IoU did not improve for {config.patience} checks"
            break
        if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
            reason = f"time cap of {config.max_seconds:g} s"
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    best = [row for row in val_history if row[0] == early.best_step]
    metrics = {"val_iou": best[0][1], "val_dice": best[0][2]} if best else {}
    return {
        "metrics": metrics,
        "history": history,
        "val_history": val_history,
        "best_step": early.best_step if best else len(history),
        "steps_run": len(history),
        "stop_reason": reason,
        "fit_seconds": time.perf_counter() - start,
    }
