"""Bright-field image formation for synthetic micrographs: stain, film, illumination, noise."""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from .scenes import _lerp, _Scene, _walk


def _stain(rng: np.random.Generator, scene: _Scene, difficulty: float) -> np.ndarray:
    """Projected thickness (nm) of a few roundish stain blobs, placed anywhere, not in the mask."""
    stain = np.zeros_like(scene.thickness_nm)
    mean = _lerp(difficulty, 0.4, 2.0) * (scene.field_nm / 200.0) ** 2
    for _ in range(rng.poisson(mean)):
        radius = rng.uniform(3, 12)
        points = _walk(rng, rng.uniform(0.01, 0.6) * radius, radius, 1e6)
        points += rng.uniform(0, scene.field_nm, 2)
        rows, cols, dist = scene.footprint(points, radius)
        stain[rows, cols] += rng.uniform(1.0, 2.0) * np.sqrt(radius**2 - dist**2)
    return stain


def _gauss_px(image: np.ndarray, sigma_nm: float, pixel_size_nm: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma_nm / pixel_size_nm, mode="reflect")


def _carbon_film(rng: np.random.Generator, size: int, px: float) -> np.ndarray:
    """Optical density of amorphous carbon: fine grain (about 1 nm) plus slow thickness drift.

    Both are one white noise low-passed in Fourier space (faster than a large Gaussian); each
    is divided by its standard deviation, known exactly: the product over both axes of
    sqrt(mean gauss^2), i.e. mean gauss^2 of the 1D transfer.
    """
    freq2 = sp_fft.fftfreq(size) ** 2
    spectrum = sp_fft.rfft2(rng.standard_normal((size, size), dtype=np.float32))
    transfer = np.zeros(spectrum.shape, np.float32)
    for sigma_nm, amplitude in (
        (rng.uniform(0.6, 1.2), rng.uniform(0.02, 0.04)),
        (rng.uniform(20, 60), rng.uniform(0.005, 0.02)),
    ):
        gauss = np.exp(-2 * np.pi**2 * (sigma_nm / px) ** 2 * freq2)
        std = np.mean(gauss**2)
        transfer += (amplitude / std) * gauss[:, None] * gauss[None, : spectrum.shape[1]]
    return sp_fft.irfft2(spectrum * transfer, s=(size, size))


def _illumination(rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    """Relative beam intensity: a linear gradient and an off-centre vignette."""
    y, x = np.ogrid[0:size, 0:size]
    x, y = (x / size - 0.5).astype(np.float32), (y / size - 0.5).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0, _lerp(difficulty, 0.1, 0.35)) * (
        x * np.cos(angle) + y * np.sin(angle)
    )
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    vignette = rng.uniform(0, _lerp(difficulty, 0.15, 0.5)) * ((x - cx) ** 2 + (y - cy) ** 2)
    return (1.0 + gradient - vignette).astype(np.float32)


def _form_image(rng: np.random.Generator, scene: _Scene, difficulty: float) -> np.ndarray:
    """Bright-field image of the scene: attenuation, fringe, blur, illumination, noise."""
    px, shape = scene.pixel_size_nm, scene.mask.shape
    contrast_10nm = rng.uniform(_lerp(difficulty, 0.33, 0.15), _lerp(difficulty, 0.48, 0.22))
    mu = -np.log1p(-contrast_10nm) / 10.0
    density = np.float32(mu) * (scene.thickness_nm + _stain(rng, scene, difficulty))
    fringe = _gauss_px(density, 1.0, px) - _gauss_px(density, 3.0, px)
    density += np.float32(rng.uniform(0.3, 0.8)) * fringe + _carbon_film(rng, scene.size, px)
    beam = np.exp(-density) * _illumination(rng, scene.size, difficulty)
    beam = _gauss_px(
        beam, rng.uniform(*(_lerp(difficulty, 0.6, 1.6), _lerp(difficulty, 1.2, 2.8))), px
    )
    dose = rng.uniform(_lerp(difficulty, 250, 25), _lerp(difficulty, 550, 60))
    counts = rng.poisson(np.clip(beam, 0, None) * dose).astype(np.float32)
    counts += np.float32(rng.uniform(1, 3)) * rng.standard_normal(shape, dtype=np.float32)
    level = rng.uniform(0.65, 0.8)
    return np.clip(counts * np.float32(level / dose), 0, 1)
