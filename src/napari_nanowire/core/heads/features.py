"""The encoder side shared by both heads: input preparation, crops, pooled features, model files.

Every head (classifier, segmenter) sees images the same way: normalised per image with
:func:`~..model.preprocess.normalize`, then rescaled to the model's pixel size when
both sizes are known, so a model trained at 1 nm/px still sees wires of the right width in an
image taken at 2 nm/px.

Model-file convention for heads: a classifier or segmenter file carries the encoder
(``encoder.*``) and one or both heads (``classifier.*``, ``segmenter.*``); its metadata
(:class:`~..model.metadata.ModelMeta`) lists them in ``heads`` and keeps each head's settings,
metrics and history in ``classifier`` / ``segmenter``, with the image classes in
``class_names`` and the mask classes in ``mask_classes``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from skimage.transform import resize

from ..errors import NanowireError
from ..model.encoders import Encoder, load_encoder
from ..model.metadata import CLASS_KEYS, HEADS, HeadMeta
from ..model.modelfile import ModelFile
from ..model.preprocess import normalize
from .tiling import pad_to, tile_grid

MAX_PIXELS = 2**28
"""Largest image (in pixels, after rescaling) that prediction accepts: 16k x 16k."""


def scale_factor(pixel_size_nm: float | None, model_pixel_size_nm: float | None) -> float:
    """How much to enlarge an image to bring it to the model's pixel size (1 if unknown)."""
    if not pixel_size_nm or not model_pixel_size_nm:
        return 1.0
    factor = float(pixel_size_nm) / float(model_pixel_size_nm)
    return 1.0 if abs(factor - 1.0) < 0.01 else factor


def prepare_image(
    image: np.ndarray,
    pixel_size_nm: float | None = None,
    model_pixel_size_nm: float | None = None,
    zoom: float = 1.0,
) -> np.ndarray:
    """Normalise a 2D image and rescale it to the model's pixel size, times ``zoom``; float32.

    Rescaling that would make the image absurdly large or tiny (a wrong pixel size, usually)
    is refused with a NanowireError naming both sizes.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise NanowireError(f"Expected a 2D grayscale image, got an array of shape {image.shape}.")
    factor = scale_factor(pixel_size_nm, model_pixel_size_nm) * zoom
    shape = tuple(max(1, round(n * factor)) for n in image.shape)
    if shape[0] * shape[1] > MAX_PIXELS or min(shape) < 8 <= min(image.shape):
        raise NanowireError(
            f"An image of {image.shape[1]} x {image.shape[0]} px at {pixel_size_nm} nm/px would "
            f"be {shape[1]} x {shape[0]} px at the model's {model_pixel_size_nm} nm/px; check the "
            "image's pixel size."
        )
    arr = normalize(image)
    if shape != image.shape:
        arr = resize(arr, shape, order=1, anti_aliasing=factor < 1, preserve_range=True)
    return arr.astype(np.float32, copy=False)


def resize_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of a label or mask image, keeping its dtype and values."""
    if labels.shape == tuple(shape):
        return labels
    return resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True).astype(
        labels.dtype
    )


@torch.inference_mode()
def pooled_features(
    encoder: Encoder,
    images: list[np.ndarray],
    tile: int,
    max_tiles: int = 16,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(N, out_dim) encoder features of prepared images, each the mean over its tiles.

    The encoder runs in eval mode; tiles of equal size are batched together.
    """
    encoder.eval().to(device)
    out = np.zeros((len(images), encoder.out_dim), np.float32)
    jobs = [
        (i, image[y : y + h, x : x + w])
        for i, image in enumerate(images)
        for y, x, h, w in tile_grid(image.shape, tile, max_tiles)
    ]
    counts = np.zeros(len(images), np.float32)
    by_shape: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for job in jobs:
        by_shape.setdefault(job[1].shape, []).append(job)
    for group in by_shape.values():
        for first in range(0, len(group), batch_size):
            chunk = group[first : first + batch_size]
            batch = torch.from_numpy(np.stack([crop for _, crop in chunk])[:, None]).to(device)
            feats = encoder(batch).float().cpu().numpy()
            for (i, _), f in zip(chunk, feats, strict=True):
                out[i] += f
                counts[i] += 1
    return out / counts[:, None]


def multiscale_features(
    encoder: Encoder,
    images: list[np.ndarray],
    tile: int,
    max_tiles: int = 16,
    scales: tuple[float, ...] = (1.0,),
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(N, out_dim * len(scales)) pooled features of prepared images at several scales.

    Each image is shrunk by each factor in ``scales`` and its :func:`pooled_features` (mean
    over up to ``max_tiles`` tiles) concatenated: at full scale the tiles see texture and
    edges, at the coarsest scale one tile may hold the whole field of view, so particle counts,
    sizes and arrangement enter the features too.
    """
    parts = []
    for scale in scales:
        scaled = [
            image
            if scale == 1
            else resize(
                image,
                tuple(max(1, round(n * scale)) for n in image.shape),
                order=1,
                anti_aliasing=scale < 1,
                preserve_range=True,
            ).astype(np.float32)
            for image in images
        ]
        parts.append(pooled_features(encoder, scaled, tile, max_tiles, device=device))
    return np.concatenate(parts, axis=1)


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (k in 0..7); same k, same transform."""
    out = np.rot90(arr, k % 4, axes=(-2, -1))
    return np.flip(out, axis=-1) if k >= 4 else out


def random_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    tile: int,
    targets: np.ndarray | None = None,
    anchors: np.ndarray | None = None,
    fill: int = -1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``tile`` x ``tile`` crop, randomly flipped/rotated, of an image and its targets.

    ``anchors`` (flat indices of labelled pixels) makes the crop contain one of them, so
    sparse strokes are always seen. Images smaller than a tile are mirror-padded and their
    targets padded with ``fill`` (not labelled).
    """
    height, width = image.shape
    if anchors is not None:
        cy, cx = np.unravel_index(rng.choice(anchors), (height, width))
        y = int(np.clip(cy - rng.integers(tile), 0, max(height - tile, 0)))
        x = int(np.clip(cx - rng.integers(tile), 0, max(width - tile, 0)))
    else:
        y = int(rng.integers(max(height - tile, 0) + 1))
        x = int(rng.integers(max(width - tile, 0) + 1))
    k = int(rng.integers(8))
    crop = dihedral(pad_to(image[y : y + tile, x : x + tile], tile, tile), k)
    if targets is None:
        return np.ascontiguousarray(crop), None
    part = targets[y : y + tile, x : x + tile]
    padded = np.full((tile, tile), fill, targets.dtype)
    padded[: part.shape[0], : part.shape[1]] = part
    return np.ascontiguousarray(crop), np.ascontiguousarray(dihedral(padded, k))


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Put every batch-norm layer in eval mode: few-label batches are too small for statistics."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def encoder_from(model: ModelFile, path: str = "") -> Encoder:
    """The encoder stored in any napari-nanowire model file, in eval mode; errors name ``path``."""
    return load_encoder(model, path or "(in memory)")[0]


def add_head(
    base: ModelFile,
    encoder: Encoder,
    head: str,
    module: torch.nn.Module,
    class_names: list[str],
    head_meta: HeadMeta,
    encoder_changed: bool,
) -> tuple[ModelFile, list[str]]:
    """A model file with ``base``'s metadata, ``encoder`` and the trained ``head``.

    Other heads in ``base`` are kept when the encoder is unchanged; when training changed the
    encoder they no longer fit it and are dropped (returned, so the caller can say so). The
    SSL projector and optimizer state are not carried over: predicting does not need them.
    """
    others = [h for h in base.meta.heads if h != head]
    dropped = others if encoder_changed else []
    kept = [h for h in others if h not in dropped]
    heads = [h for h in HEADS if h in (*kept, head)]
    changes = {h: None for h in HEADS if h not in heads}
    changes.update({CLASS_KEYS[h]: None for h in HEADS if h not in kept})
    changes.update({"heads": heads, head: head_meta, CLASS_KEYS[head]: list(class_names)})
    # only resuming pretraining needs the optimizer state
    meta = replace(base.meta, optimizer_groups=None, grad_scaler=None, **changes)
    model = ModelFile(meta=meta)
    model.set_part("encoder", encoder)
    for h in kept:
        model.tensors.update({f"{h}.{k}": v for k, v in base.part(h).items()})
    model.set_part(head, module)
    return model, dropped
