"""Image classification from a few labels: a linear head on frozen encoder features.

The seed study's method: each image's features (mean over tiles of the pretrained encoder's
pooled output) are computed once, then a class-balanced logistic regression is fitted on them,
which takes seconds on a CPU and works from one labelled image per class. Optionally the
encoder is then fine-tuned end to end with a lower learning rate on random crops.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from torch import nn
from torch.nn import functional as F

from ..devices import resolve_device
from ..errors import NanowireError
from ..model.encoders import Encoder
from ..model.modelfile import ModelFile, load_model, save_model
from ..model.preprocess import median_known
from ..progress import Progress, Rate, stop_requested
from .calibrate import calibration_report, held_out_logits
from .features import (
    add_head,
    encoder_from,
    freeze_batchnorm,
    model_heads,
    multiscale_features,
    prepare_image,
    random_crop,
)
from .morph_features import MORPH_NAMES, mask_features

JOB = "classifier"


@dataclass
class ClassifierConfig:
    """Settings of a classifier training run (recorded in the model file)."""

    epochs: int = 300
    """Most L-BFGS iterations fitting the linear head."""
    weight_decay: float = 1e-3
    fine_tune: bool = False
    fine_tune_epochs: int = 20
    fine_tune_lr: float = 1e-3
    encoder_lr_factor: float = 0.1
    """Encoder learning rate as a fraction of ``fine_tune_lr``."""
    batch_size: int = 16
    tile: int | None = None
    """Tile size in pixels for features; default the encoder's pretraining image size."""
    max_tiles: int = 16
    """Tiles per image whose features are averaged (spread evenly over larger images)."""
    working_size: int | None = None
    """Long side in px that images without a pixel size are resized to; default 4 tiles."""
    scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    """Image scales whose pooled tile features are concatenated (1 = the working scale)."""
    measurements: bool = False
    """Append measurements of the base file's segmenter masks (see :mod:`.morph_features`)."""
    device: str = "auto"
    seed: int = 0


class LinearHead(nn.Module):
    """Standardise pooled features with stored statistics, then one linear layer."""

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (B, n_classes)."""
        return self.linear((features - self.mean) / self.scale)


def class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """Loss weights inversely proportional to class counts, so every class counts equally."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float32)
    weights = np.where(counts > 0, len(targets) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def fit_linear_head(
    features: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    epochs: int = 300,
    weight_decay: float = 1e-3,
) -> tuple[LinearHead, list[float]]:
    """Class-balanced L2-regularised logistic regression on (N, D) features.

    Minimises the class-weighted mean cross-entropy plus ``weight_decay`` times the squared
    weights (biases free) on standardised features with L-BFGS, at most ``epochs`` iterations,
    from zero weights: deterministic, and about 100x faster than first-order steps in torch on
    the few-label problems it serves, which matters when cross-validation refits it per image.
    Returns the head and the cross-entropy after each iteration (the first at zero weights).
    """
    x = np.asarray(features, np.float64)
    mean = x.mean(0)
    scale = np.maximum(x.std(0), 1e-6) if len(x) > 1 else np.ones(x.shape[1])
    z = (x - mean) / scale
    n_dim = z.shape[1]
    onehot = np.eye(n_classes)[targets]
    sample_w = class_weights(targets, n_classes).numpy().astype(np.float64)[targets]
    sample_w /= sample_w.sum()

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * n_dim].reshape(n_classes, n_dim)
        logp = log_softmax(z @ w.T + theta[n_classes * n_dim :], axis=1)
        ce = -float((sample_w * (onehot * logp).sum(1)).sum())
        residual = sample_w[:, None] * (np.exp(logp) - onehot)
        grad_w = residual.T @ z + 2 * weight_decay * w
        return ce + weight_decay * float((w * w).sum()), np.concatenate(
            [grad_w.ravel(), residual.sum(0)]
        )

    def cross_entropy(theta: np.ndarray) -> float:
        return loss_grad(theta)[0] - weight_decay * float(
            np.square(theta[: n_classes * n_dim]).sum()
        )

    theta = np.zeros(n_classes * (n_dim + 1))
    history = [cross_entropy(theta)]
    result = minimize(
        loss_grad,
        theta,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": epochs},
        callback=lambda t: history.append(cross_entropy(t)),
    )
    head = LinearHead(n_dim, n_classes)
    with torch.no_grad():
        head.mean.copy_(torch.as_tensor(mean))
        head.scale.copy_(torch.as_tensor(scale))
        head.linear.weight.copy_(torch.as_tensor(result.x[: n_classes * n_dim]).view(n_classes, -1))
        head.linear.bias.copy_(torch.as_tensor(result.x[n_classes * n_dim :]))
    return head.eval(), history


def head_logits(head: LinearHead, features: np.ndarray) -> np.ndarray:
    """(N, n_classes) logits of a fitted head on (N, D) features."""
    with torch.no_grad():
        return head.cpu()(torch.as_tensor(features, dtype=torch.float32)).numpy()


def cross_validate(features: np.ndarray, targets: np.ndarray, n_classes: int, **fit_kwargs) -> dict:
    """Held-out accuracy and temperature of the linear head (see :mod:`.calibrate`).

    Empty when no class has two labelled images: then nothing can be held out, the accuracy
    is unknown and the temperature stays 1.
    """

    def fit(x: np.ndarray, y: np.ndarray):
        head, _ = fit_linear_head(x, y, n_classes, **fit_kwargs)
        return lambda z: head_logits(head, z)

    held = held_out_logits(features, targets, fit)
    if held is None:
        return {}
    logits, index = held
    return calibration_report(logits, targets[index])


def cross_val_accuracy(
    features: np.ndarray, targets: np.ndarray, n_classes: int, **fit_kwargs
) -> float | None:
    """Held-out accuracy of the linear head; None when no class has two labelled images."""
    return cross_validate(features, targets, n_classes, **fit_kwargs).get("cv_accuracy")


def class_probabilities(
    head: LinearHead, features: np.ndarray, temperature: float = 1.0
) -> np.ndarray:
    """(N, n_classes) class probabilities: softmax of the head's logits / ``temperature``."""
    return softmax(head_logits(head, features) / temperature, 1)


def feature_zoom(meta: dict, tile: int) -> float:
    """Scale at which a classifier shows images to the encoder: as its SSL crops were seen.

    Pretraining resized crops of about ``ssl.crop_side_px_mean`` pixels to ``tile`` pixels, so
    features are most telling at that zoom (measured on synthetic data: 0.52 vs 0.47 linear-probe
    accuracy at 16 labels per class, SimCLR tiny encoder). 1 when the file does not say.
    """
    side = (meta.get("ssl") or {}).get("crop_side_px_mean")
    return float(tile) / float(side) if side else 1.0


def classifier_input(
    image: np.ndarray,
    pixel_size_nm: float | None,
    model_pixel_size_nm: float | None,
    zoom: float,
    working_size: int | None,
) -> np.ndarray:
    """An image as the classifier sees it, whatever its size (see :func:`prepare_image`).

    With both pixel sizes known, the image is rescaled to the model's pixel size times
    ``zoom``, so structures keep their size in nm. Otherwise it is resized so its long side is
    ``working_size`` px: a folder of uncalibrated images of different sizes (typical of PNG
    exports) then shows each field of view at one common working scale. ``working_size`` None
    keeps the older rule (``zoom`` alone), for model files that predate it.
    """
    if (pixel_size_nm and model_pixel_size_nm) or working_size is None:
        return prepare_image(image, pixel_size_nm, model_pixel_size_nm, zoom)
    return prepare_image(image, zoom=working_size / max(np.shape(image)))


def image_features(
    encoder: Encoder,
    prepared: list[np.ndarray],
    tile: int,
    max_tiles: int,
    scales: Sequence[float],
    device: torch.device | str,
    measured: list[np.ndarray] | None = None,
) -> np.ndarray:
    """The classifier's input: multi-scale pooled features, then mask measurements if given."""
    feats = multiscale_features(encoder, prepared, tile, max_tiles, tuple(scales), device)
    return feats if measured is None else np.concatenate([feats, np.stack(measured)], 1)


def measured_features(
    segment: Callable[[np.ndarray, float | None], np.ndarray],
    image: np.ndarray,
    pixel_size_nm: float | None,
    working_size: int,
) -> np.ndarray:
    """:func:`mask_features` of ``segment``'s mask of one image.

    Lengths are in nm for a calibrated image, else in px of the working scale, so that
    uncalibrated images of different sizes are measured alike.
    """
    px = pixel_size_nm or max(np.shape(image)) / working_size
    return mask_features(segment(image, pixel_size_nm), px)


def segmenter_for(
    model: ModelFile, path: str, config: ClassifierConfig
) -> Callable[[np.ndarray, float | None], np.ndarray] | None:
    """The base file's segmenter as image -> mask when measurements are asked for, else None."""
    if not config.measurements:
        return None
    if "segmenter" not in model_heads(model.meta):
        raise NanowireError(
            f"Measurement features need a segmenter, and {path or 'the base model'} has none: "
            "train one with train-segmenter on this encoder first, or leave measurements off."
        )
    if config.fine_tune:
        raise NanowireError(
            "Measurement features and fine-tuning exclude each other: fine-tuning changes the "
            "encoder the segmenter was trained on. Choose one."
        )
    from ..predict.predictor import Predictor  # predict builds on heads: import when used

    predictor = Predictor(model, path, config.device)
    return lambda image, px: predictor.segment(image, px).mask


def check_labels(labels: Sequence[str]) -> list[str]:
    """The sorted class names; refuses empty labels or a single class, saying what to add."""
    names = sorted({str(label) for label in labels})
    if not labels:
        raise NanowireError("No labelled images: label at least one image of each class.")
    if len(names) < 2:
        raise NanowireError(
            f"All labelled images are of class {names[0]!r}: label at least one image of "
            "another class too."
        )
    return names


def fine_tune_steps(n_images: int, config: ClassifierConfig) -> int:
    """Optimizer steps of the optional fine-tune (0 without it)."""
    if not config.fine_tune:
        return 0
    return config.fine_tune_epochs * max(1, math.ceil(n_images / config.batch_size))


def _fine_tune(
    encoder: Encoder,
    head: LinearHead,
    images: list[np.ndarray],
    targets: np.ndarray,
    config: ClassifierConfig,
    tile: int,
    device: torch.device,
    stop: threading.Event | None,
    done_before: int,
) -> Iterator[Progress]:
    """Train encoder and head end to end on class-balanced random crops.

    Progress steps continue from ``done_before`` (the feature pass) to the job's total.
    """
    rng = np.random.default_rng(config.seed)
    counts = np.bincount(targets)
    p = 1.0 / counts[targets]
    p /= p.sum()
    steps = fine_tune_steps(len(images), config)
    encoder.to(device).train()
    freeze_batchnorm(encoder)
    head.to(device).train()
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder.parameters(), "lr": config.fine_tune_lr * config.encoder_lr_factor},
            {"params": head.parameters(), "lr": config.fine_tune_lr},
        ],
        weight_decay=config.weight_decay,
    )
    rate = Rate(steps)
    try:
        for step in range(steps):
            if stop_requested(stop):
                return
            pick = rng.choice(len(images), size=config.batch_size, p=p)
            crops = np.stack([random_crop(rng, images[i], tile)[0] for i in pick])
            x = torch.from_numpy(crops[:, None]).to(device)
            y = torch.as_tensor(targets[pick], device=device)
            loss = F.cross_entropy(head(encoder(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            speed, eta = rate.update(len(pick))
            yield Progress(
                JOB,
                done_before + step + 1,
                done_before + steps,
                epoch=step * config.fine_tune_epochs // steps + 1,
                total_epochs=config.fine_tune_epochs,
                loss=loss.item(),
                images_per_s=speed,
                eta_s=eta,
            )
    finally:
        encoder.eval()
        head.eval()


def train_classifier(
    base: ModelFile | str | os.PathLike,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    out: str | os.PathLike,
    pixel_sizes_nm: Sequence[float | None] | None = None,
    config: ClassifierConfig | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Progress]:
    """Train a classifier on ``base``'s encoder from labelled 2D images; write it to ``out``.

    ``base`` is any model file with an encoder (an SSL encoder, or a segmenter file, whose
    segmenter head is kept when the encoder is not fine-tuned). Yields progress while computing
    features, fitting and fine-tuning; the last event has ``done=True`` and the metrics. A stop
    request before the head is fitted ends the job without writing; later it saves the model
    trained so far.
    """
    config = config or ClassifierConfig()
    class_names = check_labels(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    base_path = "" if isinstance(base, ModelFile) else str(base)
    model = base if isinstance(base, ModelFile) else load_model(base)
    encoder = encoder_from(model, base_path)
    device = resolve_device(config.device)
    targets = np.array([class_names.index(str(label)) for label in labels])
    sizes = list(pixel_sizes_nm) if pixel_sizes_nm is not None else [None] * len(images)
    model_px = model.meta.get("pixel_size_nm") or median_known(sizes)
    tile = int(config.tile or model.meta.get("image_size") or 64)
    zoom = feature_zoom(model.meta, tile)
    working = int(config.working_size or 4 * tile)
    start = time.perf_counter()

    segment = segmenter_for(model, base_path, config)
    n = len(images)
    total = n + fine_tune_steps(n, config)
    prepared, feats = [], []
    rate = Rate(n)
    for i, (image, px) in enumerate(zip(images, sizes, strict=True)):
        if stop_requested(stop):
            yield Progress(JOB, i, total, message="stopped; nothing saved", done=True)
            return
        prepared.append(classifier_input(image, px, model_px, zoom, working))
        measured = [measured_features(segment, image, px, working)] if segment else None
        feats.append(
            image_features(
                encoder, prepared[-1:], tile, config.max_tiles, config.scales, device, measured
            )
        )
        speed, eta = rate.update(1)
        yield Progress(JOB, i + 1, total, images_per_s=speed, eta_s=eta)
    features = np.concatenate(feats)

    history: list[float] = []
    if config.fine_tune:
        # Crops see one scale, so the encoder is tuned with a head of its own on that scale's
        # features; the classifier's head is then fitted on the tuned encoder's features.
        crop_head, _ = fit_linear_head(features[:, : encoder.out_dim], targets, len(class_names))
        for event in _fine_tune(
            encoder, crop_head, prepared, targets, config, tile, device, stop, n
        ):
            history.append(event.loss)
            yield event
        features = image_features(
            encoder, prepared, tile, config.max_tiles, config.scales, device, None
        )
    stopped = stop_requested(stop)
    fit = {"epochs": config.epochs, "weight_decay": config.weight_decay}
    head, fit_history = fit_linear_head(features, targets, len(class_names), **fit)
    history = fit_history + history
    metrics = cross_validate(features, targets, len(class_names), **fit)
    predicted = head_logits(head, features).argmax(1)
    metrics["train_accuracy"] = float((predicted == targets).mean())
    head_meta = {
        "settings": asdict(config),
        "tile": tile,
        "zoom": zoom,
        "working_size": working,
        "scales": list(config.scales),
        "measurements": segment is not None,
        "measurement_names": list(MORPH_NAMES) if segment is not None else [],
        "max_tiles": config.max_tiles,
        "n_images": len(images),
        "class_counts": np.bincount(targets, minlength=len(class_names)).tolist(),
        "temperature": metrics.get("temperature", 1.0),
        "metrics": metrics,
        "history": history,
        "stopped_early": stopped,
        "train_seconds": time.perf_counter() - start,
    }
    result, dropped = add_head(
        model, encoder, JOB, head, class_names, head_meta, encoder_changed=config.fine_tune
    )
    result.meta["pixel_size_nm"] = model_px
    save_model(result, Path(out))
    note = f"; dropped the {', '.join(dropped)} head (encoder changed)" if dropped else ""
    yield Progress(JOB, total, total, metrics=metrics, message=f"saved {out}{note}", done=True)
