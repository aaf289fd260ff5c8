"""TEM augmentations as batched tensor operations on the training device.

Two views of the same image are two independent random resized crops (with flips and 90-degree
rotations, see :mod:`.crops`) followed by photometric changes a microscope session produces:
defocus blur, exposure (brightness, contrast, gamma), shot noise (Poisson, in its Gaussian
approximation) and read noise, and optionally bright-/dark-field contrast inversion. There is no
colour: images are grayscale. Every random number comes from the ``torch.Generator`` passed in,
so views are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import NanowireError
from .crops import CropSampler


@dataclass
class AugmentConfig:
    """What the views of an image may differ in; probabilities are per view."""

    crop_scale: tuple[float, float] = (0.2, 1.0)  # crop area / smaller image side squared
    crop_fov_nm: tuple[float, float] | None = None  # crop side in nm where pixel size is known
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio range
    symmetries: bool = True  # random flips and 90-degree rotations
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # defocus blur, px of the network input
    intensity_p: float = 0.8
    brightness: float = 0.3  # shift, in units of the image's standard deviation
    contrast: float = 0.3  # relative scaling around the mean
    gamma: tuple[float, float] = (0.7, 1.4)
    noise_p: float = 0.5
    dose: tuple[float, float] = (20.0, 500.0)  # electrons per brightest pixel (log-uniform)
    read_noise: tuple[float, float] = (0.0, 0.2)  # Gaussian noise std, image std units
    invert_p: float = 0.0  # contrast inversion (mixed bright- and dark-field data)

    def check(self) -> None:
        """Raise NanowireError naming the first setting that is out of range."""
        for name in ("blur_p", "intensity_p", "noise_p", "invert_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise NanowireError(f"Augmentation {name}={getattr(self, name)} must be in [0, 1].")
        for name in ("blur_sigma", "gamma", "dose", "read_noise", "crop_ratio"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise NanowireError(
                    f"Augmentation {name}={(lo, hi)} must satisfy 0 <= low <= high."
                )
        if self.gamma[0] <= 0 or self.dose[0] <= 0 or self.crop_ratio[0] <= 0:
            raise NanowireError("Augmentation gamma, dose and crop_ratio must be positive.")
        if not (0 <= self.contrast < 1 and self.brightness >= 0):
            raise NanowireError(
                f"Augmentation contrast={self.contrast} must be in [0, 1) and brightness="
                f"{self.brightness} at least 0."
            )


def _uniform(
    n: int, lo: float, hi: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``n`` uniform samples in [lo, hi], shaped (n, 1, 1, 1) to broadcast over images."""
    return (lo + (hi - lo) * torch.rand(n, generator=generator, device=device)).view(n, 1, 1, 1)


def _chance(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A boolean (n, 1, 1, 1) mask, True with probability ``p``."""
    return (torch.rand(n, generator=generator, device=device) < p).view(n, 1, 1, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (N, 1, H, W) with its own Gaussian std ``sigma`` (N,) in px.

    A separable depthwise convolution with reflected borders; sigma 0 leaves an image unchanged.
    """
    n, _, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(n, 1)
    kernel = torch.where(
        s > 1e-3, torch.exp(-0.5 * (taps / s.clamp_min(1e-3)) ** 2), (taps == 0).to(x.dtype)
    )
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    y = F.pad(x.reshape(1, n, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, kernel.view(n, 1, -1, 1), groups=n)
    return y.view(n, 1, h, w)


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The images ``index`` of a batch (selected through a 2D view: several times faster)."""
    return x.reshape(len(x), -1).index_select(0, index).view(len(index), *x.shape[1:])


def photometric(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply blur, exposure changes, inversion and noise to a (N, 1, H, W) batch of views.

    Each view's intensities are mapped to t in [0, 1], gamma-corrected, and mapped back with
    one affine map that also applies contrast, brightness and inversion; then shot noise (in
    its Gaussian approximation: variance proportional to t, ``dose`` electrons at t = 1; exact
    Poisson sampling costs more than all the rest on a CPU) and read noise are added. Few
    full-batch passes, in place where possible: on a shared CPU every pass can stall, and a
    new large tensor costs page faults. ``x`` itself is left unchanged.
    """
    n, dev = x.shape[0], x.device

    def draw(lo: float, hi: float) -> torch.Tensor:
        return _uniform(n, lo, hi, generator, dev)

    def pick(p: float) -> torch.Tensor:
        return _chance(n, p, generator, dev).view(n).nonzero().view(-1)

    sigma, blurred = draw(*config.blur_sigma).view(n), pick(config.blur_p)
    if len(blurred):
        new = gaussian_blur(_rows(x, blurred), sigma[blurred]).view(len(blurred), -1)
        x = x.reshape(n, -1).index_copy(0, blurred, new).view_as(x)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-6)
    adjust = _chance(n, config.intensity_p, generator, dev)
    gamma = torch.where(adjust, draw(*config.gamma), 1.0)
    t = (x - lo).div_(span).clamp_(1e-6, 1).log_().mul_(gamma).exp_()
    # y = (lo + span * t - mean) * contrast + mean + brightness, mirrored about mean +
    # brightness where inverted: one multiply-add per pixel.
    mean = lo + span * t.mean(dim=(1, 2, 3), keepdim=True)
    contrast = torch.where(adjust, draw(1 - config.contrast, 1 + config.contrast), 1.0)
    contrast = torch.where(_chance(n, config.invert_p, generator, dev), -contrast, contrast)
    brightness = torch.where(adjust, draw(-config.brightness, config.brightness), 0.0)
    scale, dose = span * contrast, torch.exp(draw(*(math.log(d) for d in config.dose)))
    shift = (lo - mean) * contrast + mean + brightness
    read, noisy = draw(*config.read_noise), pick(config.noise_p)
    std = torch.addcmul(read[noisy] ** 2, _rows(t, noisy), scale[noisy] ** 2 / dose[noisy])
    noise = torch.randn(std.shape, generator=generator, device=dev, dtype=x.dtype)
    y = t.mul_(scale).add_(shift)
    y.view(n, -1).index_add_(0, noisy, noise.mul_(std.sqrt_()).view(len(noisy), y[0].numel()))
    return y


def make_views(
    sampler: CropSampler, n: int, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """``n`` pairs of augmented views, (2n, 1, S, S): rows i and n + i show the same image."""
    index = sampler.draw_images(n, generator)
    crops = sampler.random_crops(torch.cat([index, index]), generator, symmetries=config.symmetries)
    return photometric(crops, config, generator)
