"""Augmentation of segmentation batches, and the FixMatch consistency loss on unlabelled frames.

Geometry that needs no resampling (the crop, flips and 90-degree rotations) is done on the
numpy side by :func:`.features.random_crop`. Here, on a torch batch: a small scale jitter per
crop (magnification and wire width differ a little between frames), applied to image and
targets through one sampling grid so they stay aligned, then the photometric changes a
microscope session produces (defocus blur, exposure and gamma, shot and read noise) from
:func:`..ssl.augment.photometric`. Targets are resampled nearest-neighbour, so they stay class
indices, and pixels brought in from outside the crop are unlabelled (-1).

Semi-supervised training is FixMatch-style (Sohn et al. 2020), not a mean teacher: the
prediction on a weakly augmented crop (geometry only) becomes a pseudo-label where the network
is confident, and the same crop strongly augmented (photometric changes) is trained to match
it. It needs no second network (a mean teacher keeps an EMA copy and its forward pass: double
the memory and a slower step on a CPU), and the confidence threshold keeps wrong guesses out
of the loss early on, when a few strokes are all the net has seen. The confident pixels of
each pseudo-class weigh equally (as class-balanced self-training does, Zou et al. 2018), so
that the background's many confident pixels cannot train the objects away.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..ssl.augment import AugmentConfig, photometric

LABELLED = AugmentConfig(
    blur_p=0.3,
    blur_sigma=(0.1, 1.0),
    intensity_p=0.8,
    brightness=0.2,
    contrast=0.2,
    gamma=(0.8, 1.25),
    noise_p=0.3,
    dose=(100.0, 1000.0),
    read_noise=(0.0, 0.1),
)
"""Mild changes for the labelled crops: the labels must stay right for the changed image."""

STRONG = AugmentConfig(
    blur_p=0.6,
    blur_sigma=(0.3, 2.0),
    intensity_p=1.0,
    brightness=0.4,
    contrast=0.4,
    gamma=(0.6, 1.6),
    noise_p=0.8,
    dose=(20.0, 500.0),
    read_noise=(0.0, 0.3),
)
"""The strong view of FixMatch: harder than anything the labelled crops see."""


def scale_jitter(
    images: torch.Tensor,
    targets: torch.Tensor,
    scale: tuple[float, float],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom each (image, targets) pair of a batch by its own factor, log-uniform in ``scale``.

    ``images`` is (N, 1, H, W) float, ``targets`` (N, H, W) int64 with -1 = unlabelled. The
    image is sampled bilinearly (mirrored at the border), the targets nearest-neighbour at
    the same points; where zooming out reaches past the crop, targets are -1.
    """
    n = len(images)
    lo, hi = math.log(scale[0]), math.log(scale[1])
    factor = torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device))
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, "bilinear", "reflection", align_corners=False)
    shifted = (targets + 1).unsqueeze(1).to(images.dtype)  # 0 = unlabelled, also the padding
    labels = F.grid_sample(shifted, grid, "nearest", "zeros", align_corners=False)
    return out, labels[:, 0].round().long() - 1


def augment_labelled(
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.8, 1.25),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale jitter plus mild photometric changes for a batch of labelled crops."""
    images, targets = scale_jitter(images, targets, scale, generator)
    return photometric(images, LABELLED, generator), targets


def strong_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The strongly augmented view of a batch: photometric only, so pixels stay aligned."""
    return photometric(images, STRONG, generator)


def consistency_loss(
    strong_logits: torch.Tensor, weak_probs: torch.Tensor, threshold: float
) -> torch.Tensor:
    """FixMatch loss: cross-entropy of the strong view against the weak view's confident argmax,
    every pseudo-class weighted equally.

    ``weak_probs`` (N, C, H, W) carries no gradient. Pixels whose top probability is below
    ``threshold`` contribute nothing (zero gradient). The mean cross-entropy of each class's
    confident pixels is averaged over the classes present and scaled by the share of confident
    pixels, so the loss grows with that share, as in FixMatch. Without the class balance the
    most common confident class (usually background) took over: on EMPS particles a net fell
    from 0.78 to 0.14 IoU as its own background guesses trained out the particles.
    """
    confidence, pseudo = weak_probs.detach().max(1)
    keep = confidence >= threshold
    per_pixel = F.cross_entropy(strong_logits, pseudo, reduction="none")
    if not keep.any():
        return (per_pixel * 0).sum()
    n_classes = weak_probs.shape[1]
    kept = pseudo[keep]
    sums = torch.zeros(n_classes, dtype=per_pixel.dtype, device=per_pixel.device)
    sums = sums.index_add(0, kept, per_pixel[keep])
    counts = torch.bincount(kept, minlength=n_classes).to(per_pixel.dtype)
    present = counts > 0
    class_means = sums[present] / counts[present]
    return class_means.mean() * keep.sum() / per_pixel.numel()
