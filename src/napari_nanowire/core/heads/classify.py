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
from torch.nn import functional as F

from ..devices import resolve_device
from ..errors import NanowireError
from ..model.encoders import Encoder
from ..model.metadata import ClassifierMeta, ModelMeta
from ..model.modelfile import ModelFile, load_model, save_model
from ..model.preprocess import median_known
from ..progress import Progress, Rate, stop_requested
from .feature_cache import FEATURES, FeatureCache, extractor_digest
from .features import (
    add_head,
    encoder_from,
    freeze_batchnorm,
    multiscale_features,
    prepare_image,
    random_crop,
)
from .linear import (
    LinearHead,
    block_weights,
    class_weights,  # noqa: F401 (the segmenter imports it from here)
    cross_validate,
    fit_linear_head,
    head_logits,
)
from .morph_features import (
    DESCRIPTOR_SIZE,
    MORPH_NAMES,
    SPECTRUM_SIZE,
    image_descriptors,
    mask_features,
    scale_spectrum,
)
from .scalebar import fill_annotations

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
    descriptors: bool = True
    """Append hand-made descriptors: texture and shape, and the scale spectrum (two blocks, see
    :mod:`.morph_features`)."""
    descriptor_weight: float = 2.0
    """Each descriptor block's weight relative to the encoder's (see :func:`column_weights`)."""
    measurements: bool = False
    """Append measurements of the base file's segmenter masks (see :mod:`.morph_features`)."""
    ignore_annotations: bool = True
    """Paint over burned-in scale bars, databars and label boxes before features are computed
    (see :func:`.scalebar.fill_annotations`)."""
    device: str = "auto"
    seed: int = 0


def feature_zoom(meta: ModelMeta, tile: int) -> float:
    """Scale at which a classifier shows images to the encoder: as its SSL crops were seen.

    Pretraining resized crops of about ``ssl.crop_side_px_mean`` pixels to ``tile`` pixels, so
    features are most telling at that zoom (measured on synthetic data: 0.52 vs 0.47 linear-probe
    accuracy at 16 labels per class, SimCLR tiny encoder). 1 when the file does not say.
    """
    side = meta.ssl.crop_side_px_mean if meta.ssl else None
    return float(tile) / float(side) if side else 1.0


def classifier_input(
    image: np.ndarray,
    pixel_size_nm: float | None,
    model_pixel_size_nm: float | None,
    zoom: float,
    working_size: int | None,
    ignore_annotations: bool = False,
) -> np.ndarray:
    """An image as the classifier sees it, whatever its size (see :func:`prepare_image`),
    with burned-in scale bars and labels painted over if ``ignore_annotations``.

    With both pixel sizes known, the image is rescaled to the model's pixel size times
    ``zoom``, so structures keep their size in nm. Otherwise it is resized so its long side is
    ``working_size`` px: a folder of uncalibrated images of different sizes (typical of PNG
    exports) then shows each field of view at one common working scale. ``working_size`` None
    keeps the older rule (``zoom`` alone), for model files that predate it.
    """
    if ignore_annotations and np.ndim(image) == 2:  # else prepare_image says what is wrong
        image = fill_annotations(image)
    if (pixel_size_nm and model_pixel_size_nm) or working_size is None:
        return prepare_image(image, pixel_size_nm, model_pixel_size_nm, zoom)
    return prepare_image(image, zoom=working_size / max(np.shape(image)))


@dataclass(frozen=True)
class FeatureRecipe:
    """How a classifier turns an image into features, mask measurements aside: the input's
    scale (:func:`classifier_input`), then multi-scale pooled encoder features, and (if asked)
    the image descriptors and the scale spectrum. Training and prediction take it from one
    place, so an image gets the same features in both, which :mod:`.feature_cache` relies on.
    """

    model_pixel_size_nm: float | None
    zoom: float
    working_size: int | None
    tile: int
    max_tiles: int
    scales: tuple[float, ...]
    descriptors: bool
    spectrum: bool
    ignore_annotations: bool

    @classmethod
    def for_training(
        cls, config: ClassifierConfig, meta: ModelMeta, model_pixel_size_nm: float | None
    ) -> FeatureRecipe:
        """The recipe of a new classifier trained under ``config`` on a file with ``meta``:
        tiles of the encoder's pretraining size (:func:`feature_zoom`), working size 4 tiles."""
        tile = int(config.tile or meta.image_size or 64)
        return cls(
            model_pixel_size_nm,
            feature_zoom(meta, tile),
            int(config.working_size or 4 * tile),
            tile,
            config.max_tiles,
            tuple(config.scales),
            config.descriptors,
            config.descriptors,
            config.ignore_annotations,
        )

    @classmethod
    def of(cls, settings: ClassifierMeta, model_pixel_size_nm: float | None) -> FeatureRecipe:
        """The recipe of a model file's classifier."""
        return cls(
            model_pixel_size_nm,
            settings.zoom,
            settings.working_size,
            settings.tile,
            settings.max_tiles,
            tuple(settings.scales),
            settings.descriptors,
            settings.spectrum,
            settings.ignore_annotations,
        )

    def stored(self) -> dict:
        """The recipe as :class:`ClassifierMeta` fields (the inverse of :meth:`of`; the model's
        pixel size is the file's own)."""
        fields = asdict(self)
        del fields["model_pixel_size_nm"]
        return {**fields, "scales": list(self.scales)}

    def prepare(self, image: np.ndarray, pixel_size_nm: float | None) -> np.ndarray:
        """The image as the encoder and the descriptors see it."""
        return classifier_input(
            image,
            pixel_size_nm,
            self.model_pixel_size_nm,
            self.zoom,
            self.working_size,
            self.ignore_annotations,
        )

    def compute(
        self, encoder: Encoder, prepared: list[np.ndarray], device: torch.device | str
    ) -> np.ndarray:
        """(N, D) float32 features of prepared images."""
        scales = self.scales
        blocks = [multiscale_features(encoder, prepared, self.tile, self.max_tiles, scales, device)]
        if self.descriptors:
            blocks.append(np.stack([image_descriptors(image) for image in prepared]))
        if self.spectrum:
            blocks.append(np.stack([scale_spectrum(image) for image in prepared]))
        return np.concatenate(blocks, 1).astype(np.float32)

    def features(
        self,
        encoder: Encoder,
        images: Sequence[np.ndarray],
        pixel_sizes_nm: Sequence[float | None],
        device: torch.device | str,
        extractor: bytes,
        kept: FeatureCache | None = FEATURES,
    ) -> np.ndarray:
        """(N, D) features of raw images, kept in ``kept`` (None: not kept) under ``extractor``
        (:func:`.feature_cache.extractor_digest` of ``encoder`` and this recipe)."""

        def compute(raw: list[np.ndarray], sizes: list[float | None]) -> np.ndarray:
            prepared = [self.prepare(image, px) for image, px in zip(raw, sizes, strict=True)]
            return self.compute(encoder, prepared, device)

        if kept is None:
            return compute(list(images), list(pixel_sizes_nm))
        return kept.features(extractor, images, pixel_sizes_nm, compute)

    def blocks(self, encoder_dim: int) -> list[int]:
        """The size of each block of :meth:`compute`'s features, in order."""
        sizes = [encoder_dim * len(self.scales)]
        return sizes + [DESCRIPTOR_SIZE] * self.descriptors + [SPECTRUM_SIZE] * self.spectrum


def measured_features(
    segment: Callable[[np.ndarray, float | None], np.ndarray],
    image: np.ndarray,
    pixel_size_nm: float | None,
    working_size: int,
    names: Sequence[str] = MORPH_NAMES,
) -> np.ndarray:
    """:func:`mask_features` (columns ``names``) of ``segment``'s mask of one image, at
    :func:`measurement_pixel_size`."""
    px = measurement_pixel_size(image, pixel_size_nm, working_size)
    return mask_features(segment(image, pixel_size_nm), px, names)


def measurement_pixel_size(
    image: np.ndarray, pixel_size_nm: float | None, working_size: int
) -> float:
    """The pixel size mask measurements are given in: nm for a calibrated image, else px of
    the working scale, so that uncalibrated images of different sizes are measured alike."""
    return pixel_size_nm or max(np.shape(image)) / working_size


def segmenter_for(
    model: ModelFile, path: str, config: ClassifierConfig
) -> Callable[[np.ndarray, float | None], np.ndarray] | None:
    """The base file's segmenter as image -> mask when measurements are asked for, else None."""
    if not config.measurements:
        return None
    if "segmenter" not in model.meta.heads:
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


def column_weights(blocks: Sequence[int], config: ClassifierConfig) -> np.ndarray:
    """The head's column weights for the feature blocks (:meth:`FeatureRecipe.blocks`, then
    measurements): equal say per block, the two descriptor blocks' (texture and shape, scale
    spectrum) times ``config.descriptor_weight``.

    2 by default: with the tiny SimCLR encoder the 57 descriptors carry more of the morphology
    than 768 encoder features. On synthetic data (4 data and encoder seeds, 1-16 labels a
    class) weight 1 was 0.03 below the descriptors alone at 8 labels a class, weight 2 at or
    above them at every count on average (+0.01 to +0.03); on EMPS level within 0.03
    (benchmarks/RESULTS.md, issue 12).
    """
    weight = config.descriptor_weight if config.descriptors else 1.0
    emphasis = [1.0, weight, weight] + [1.0] * len(blocks)
    return block_weights(blocks, emphasis[: len(blocks)])


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
    model_px = model.meta.pixel_size_nm or median_known(sizes)
    start = time.perf_counter()

    segment = segmenter_for(model, base_path, config)
    recipe = FeatureRecipe.for_training(config, model.meta, model_px)
    extractor = extractor_digest(encoder, recipe)
    blocks = recipe.blocks(encoder.out_dim) + [len(MORPH_NAMES)] * (segment is not None)
    n = len(images)
    total = n + fine_tune_steps(n, config)
    feats = []
    rate = Rate(n)
    for i, (image, px) in enumerate(zip(images, sizes, strict=True)):
        if stop_requested(stop):
            yield Progress(JOB, i, total, message="stopped; nothing saved", done=True)
            return
        row = recipe.features(encoder, [image], [px], device, extractor)
        if segment:
            measured = measured_features(segment, image, px, recipe.working_size, MORPH_NAMES)
            row = np.concatenate([row, measured[None].astype(np.float32)], 1)
        feats.append(row)
        speed, eta = rate.update(1)
        yield Progress(JOB, i + 1, total, images_per_s=speed, eta_s=eta)
    features = np.concatenate(feats)

    history: list[float] = []
    if config.fine_tune:
        # Crops see one scale, so the encoder is tuned with a head of its own on that scale's
        # features; the classifier's head is then fitted on the tuned encoder's features.
        prepared = [recipe.prepare(image, px) for image, px in zip(images, sizes, strict=True)]
        crop_head, _ = fit_linear_head(features[:, : encoder.out_dim], targets, len(class_names))
        for event in _fine_tune(
            encoder, crop_head, prepared, targets, config, recipe.tile, device, stop, n
        ):
            history.append(event.loss)
            yield event
        features = recipe.compute(encoder, prepared, device)
    stopped = stop_requested(stop)
    fit = {
        "epochs": config.epochs,
        "weight_decay": config.weight_decay,
        "column_weights": column_weights(blocks, config),
    }
    head, fit_history = fit_linear_head(features, targets, len(class_names), **fit)
    history = fit_history + history
    metrics = cross_validate(features, targets, len(class_names), **fit)
    predicted = head_logits(head, features).argmax(1)
    metrics["train_accuracy"] = float((predicted == targets).mean())
    head_meta = ClassifierMeta(
        settings=asdict(config),
        **recipe.stored(),
        blocks=blocks,
        measurements=segment is not None,
        measurement_names=list(MORPH_NAMES) if segment is not None else [],
        n_images=len(images),
        class_counts=np.bincount(targets, minlength=len(class_names)).tolist(),
        temperature=metrics["temperature"],
        metrics=metrics,
        history=history,
        stopped_early=stopped,
        train_seconds=time.perf_counter() - start,
    )
    result, dropped = add_head(
        model, encoder, JOB, head, class_names, head_meta, encoder_changed=config.fine_tune
    )
    result.meta.pixel_size_nm = model_px
    save_model(result, Path(out))
    note = f"; dropped the {', '.join(dropped)} head (encoder changed)" if dropped else ""
    yield Progress(JOB, total, total, metrics=metrics, message=f"saved {out}{note}", done=True)
