"""Features that carry morphology: hand-made image descriptors and measurements of a mask.

Morphology classes (dispersed, bundle, network) are defined by what a mask measures: how much
of the field is covered, how many domains, how wide and long and round they are, whether they
align and whether they span the image. When a model file has a segmenter, the classifier can
append these numbers to its learned features (the linear head standardises every column).
All foreground classes are measured together as one phase, so the vector has the same length
for every segmenter. Without a segmenter, :func:`image_descriptors` gives texture, orientation
and dark-phase shape statistics computed from the image alone, and :func:`scale_spectrum` how
big and how elongated its structures are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.feature import (
    graycomatrix,
    graycoprops,
    hessian_matrix_eigvals,
    local_binary_pattern,
    structure_tensor,
    structure_tensor_eigenvalues,
)
from skimage.filters import threshold_otsu
from skimage.measure import regionprops

from ..errors import NanowireError
from ..measure import MeasureOptions, measure_domains, summarize_image
from ..measure.domains import class_domains
from ..model.preprocess import normalize
from .tiling import tile_grid

MORPH_NAMES: tuple[str, ...] = (
    "area_fraction",
    "log_domain_count",
    "log_width_q1",
    "log_width_median",
    "log_width_q3",
    "log_length_q1",
    "log_length_median",
    "log_length_q3",
    "log_aspect_ratio_median",
    "circularity_median",
    "solidity_median",
    "nematic_order",
    "percolates_x",
    "percolates_y",
    "log_particle_count",
    "log_particle_aspect_ratio_median",
)
"""The columns :func:`mask_features` returns by default, in order. The ``particle`` columns
count and shape touching particles one by one (split as ``measure --split-touching`` does):
on the EMPS sample, components of the true masks correlate 0.24 with the number of particles
annotated, split pieces 0.99 (benchmarks/RESULTS.md, issue 12)."""


def mask_features(
    mask: np.ndarray, pixel_size_nm: float = 1.0, names: Sequence[str] = MORPH_NAMES
) -> np.ndarray:
    """Measurements of a mask's foreground (any value > 0) as a float32 vector (``names``:
    :data:`MORPH_NAMES` or a classifier file's ``measurement_names``, which may be fewer).

    Sizes are logarithms of lengths in nm (or in px of ``pixel_size_nm``'s scale); an image
    without foreground gives zeros for every size and shape column.
    """
    unknown = sorted(set(names) - set(MORPH_NAMES))
    if unknown:
        raise NanowireError(
            f"The classifier uses mask measurements {unknown} this version does not know; "
            "update napari-nanowire to use this model file."
        )
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    # every domain counts, also those cut by the image edge: a field's morphology includes them
    options = MeasureOptions(pixel_size_nm=float(pixel_size_nm), include_flagged=True)
    domains = measure_domains(binary, options)
    summary = summarize_image(binary, options, domains)
    row = summary.iloc[0] if len(summary) else None
    count = len(domains)
    values = {"area_fraction": float(binary.mean()), "log_domain_count": np.log1p(count)}
    if row is not None and count:
        for stat in ("q1", "median", "q3"):
            values[f"log_width_{stat}"] = np.log1p(row[f"width_{stat}_nm"])
            values[f"log_length_{stat}"] = np.log1p(row[f"length_{stat}_nm"])
        values["log_aspect_ratio_median"] = np.log(domains["aspect_ratio"].median())
        circularity = (
            4 * np.pi * domains["area_nm2"] / np.maximum(domains["perimeter_nm"], 1e-9) ** 2
        )
        values["circularity_median"] = float(np.clip(circularity, 0, 1).median())
        values["solidity_median"] = float(domains["solidity"].median())
        values["nematic_order"] = row["nematic_order"]
        values["percolates_x"] = float(row["percolates_x"])
        values["percolates_y"] = float(row["percolates_y"])
    if any(name.startswith("log_particle") for name in names):
        values.update(_particle_values(binary))
    vector = np.array([values.get(name, 0.0) for name in names], np.float64)
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _particle_values(binary: np.ndarray) -> dict[str, float]:
    """Count and median aspect ratio of the foreground's particles, touching ones split."""
    pieces = class_domains(binary, 1, connectivity=2, split_touching=True)
    props = regionprops(pieces)
    if not props:
        return {}
    ratios = [p.axis_major_length / max(p.axis_minor_length, 1.0) for p in props]
    return {
        "log_particle_count": float(np.log1p(len(props))),
        "log_particle_aspect_ratio_median": float(np.log(max(np.median(ratios), 1.0))),
    }


def image_descriptors(image: np.ndarray) -> np.ndarray:
    """Hand-made descriptors of one image (DESCRIPTOR_SIZE floats, no mask needed).

    Intensity percentiles; grey-level co-occurrence contrast, homogeneity, energy and
    correlation at 1, 3 and 6 px (mean and spread over 4 directions); uniform local binary
    pattern histograms at radius 1 and 3; structure-tensor coherence and the nematic order of
    gradients; and the dark phase (below Otsu's threshold): cover, number of pieces per
    1000 px, largest piece, and its span. On synthetic nanowire classes these alone reach
    0.61 accuracy at 4 labels a class (benchmarks/RESULTS.md, issue 4).
    """
    norm = normalize(image)
    percentiles = np.percentile(norm, [1, 5, 25, 50, 75, 95, 99])
    levels = 32
    quant = np.clip((norm - norm.min()) / (np.ptp(norm) + 1e-9) * levels, 0, levels - 1)
    glcm = graycomatrix(
        quant.astype(np.uint8),
        [1, 3, 6],
        [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
        levels,
        symmetric=True,
        normed=True,
    )
    texture = []
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        values = graycoprops(glcm, prop)  # (distances, angles)
        texture += [*values.mean(1), *(values.max(1) - values.min(1))]
    lbp = []
    for radius in (1, 3):
        codes = local_binary_pattern(quant.astype(np.uint8), 8, radius, method="uniform")
        lbp += list(np.bincount(codes.astype(int).ravel(), minlength=10)[:10] / codes.size)
    a_rr, a_rc, a_cc = structure_tensor(norm, sigma=2.0, order="rc")
    l1, l2 = structure_tensor_eigenvalues([a_rr, a_rc, a_cc])
    energy = l1 + l2 + 1e-9
    coherence = float(((l1 - l2) / energy).mean())
    doubled = (a_cc - a_rr + 2j * a_rc).sum() / energy.sum()  # nematic order of gradients
    dark = norm < threshold_otsu(norm)
    labels, n = ndimage.label(dark)
    sizes = np.bincount(labels.ravel())[1:] if n else np.array([0])
    spans = ndimage.find_objects(labels)
    largest = int(np.argmax(sizes)) if n else 0
    span_x = (spans[largest][1].stop - spans[largest][1].start) / dark.shape[1] if n else 0.0
    span_y = (spans[largest][0].stop - spans[largest][0].start) / dark.shape[0] if n else 0.0
    shape = [dark.mean(), n / dark.size * 1e3, sizes.max() / dark.size, max(span_x, span_y)]
    return np.array(
        [*percentiles, *texture, *lbp, coherence, abs(doubled), *shape], dtype=np.float32
    )


DESCRIPTOR_SIZE = len(image_descriptors(np.arange(64.0).reshape(8, 8)))
"""Length of :func:`image_descriptors`' vector."""

SPECTRUM_SIGMAS = 2.0 ** (np.arange(13) / 2)
"""Scales of :func:`scale_spectrum` in px of the working scale: 1 to 64, half an octave apart."""
SPECTRUM_CROP = 512
"""Side of the crops (at most 4, spread over the image) whose pixels a larger image's spectrum
is computed from: a bounded cost (~0.16 s a crop on one core) whatever the image's size."""


def _gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="constant")`` (zeros outside, 4 sigma
    kernels) of a 2D image (float32 or float64), axis by axis by the cheaper exact route.

    A kernel wider than a sixth of the axis is applied as a product with its banded filter
    matrix: BLAS does that in a time that does not grow with the kernel, where the direct
    filter's does (at 256 px and sigma 64, 2.4 ms against 28 ms; benchmarks/bench_spectrum.py).
    """
    out = np.asarray(image, np.result_type(image, np.float32))
    radius = int(4.0 * sigma + 0.5)
    for axis in (0, 1):
        n = out.shape[axis]
        if 6 * (2 * radius + 1) <= n:
            out = ndimage.gaussian_filter1d(out, sigma, axis=axis, mode="constant", truncate=4.0)
            continue
        offset = np.arange(n)[:, None] - np.arange(n)[None, :]
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        band = np.exp(-0.5 * (offset / sigma) ** 2) / taps.sum() * (np.abs(offset) <= radius)
        band = band.astype(out.dtype)
        out = band @ out if axis == 0 else out @ band.T
    return out


def hessian(image: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The Hessian's (rr, rc, cc) elements of the image smoothed at ``sigma``, as
    ``skimage.feature.hessian_matrix(image, sigma, use_gaussian_derivatives=False)`` gives
    them (finite differences of :func:`_gaussian_filter`), in a fraction of its time at large
    sigma."""
    d_r, d_c = np.gradient(_gaussian_filter(image, sigma))
    return [np.gradient(d_r, axis=0), np.gradient(d_r, axis=1), np.gradient(d_c, axis=1)]


def scale_spectrum(image: np.ndarray) -> np.ndarray:
    """How big and how elongated an image's structures are, without a mask or a polarity.

    For each scale of :data:`SPECTRUM_SIGMAS`: the share of the scale-normalised Laplacian
    energy (|sigma^2 (l1 + l2)| of the Hessian's eigenvalues, Lindeberg's blob measure), then
    the energy-weighted mean log scale, then per scale the energy-weighted anisotropy
    ||l1| - |l2|| / (|l1| + |l2|) (0 for round blobs, 1 for lines). Particle size relative to
    the field is what separates few from many particles: on the EMPS sample these 27 numbers
    alone give 0.46 accuracy at 4 labels a class where the texture descriptors give 0.37
    (benchmarks/RESULTS.md, issue 12).
    """
    norm = normalize(image)
    energy, lines = np.zeros(len(SPECTRUM_SIGMAS)), np.zeros(len(SPECTRUM_SIGMAS))
    for y, x, h, w in tile_grid(norm.shape, SPECTRUM_CROP, 4):
        crop = norm[y : y + h, x : x + w]
        for i, sigma in enumerate(SPECTRUM_SIGMAS):
            l1, l2 = hessian_matrix_eigvals(hessian(crop, sigma))
            blob = np.abs(sigma**2 * (l1 + l2))
            line = np.abs(np.abs(l1) - np.abs(l2)) / (np.abs(l1) + np.abs(l2) + 1e-12)
            energy[i] += blob.sum()
            lines[i] += (line * blob).sum()
    share = energy / (energy.sum() + 1e-12)
    centre = share @ np.log(SPECTRUM_SIGMAS)
    return np.array([*share, centre, *(lines / (energy + 1e-12))], dtype=np.float32)


SPECTRUM_SIZE = 2 * len(SPECTRUM_SIGMAS) + 1
"""Length of :func:`scale_spectrum`'s vector."""
