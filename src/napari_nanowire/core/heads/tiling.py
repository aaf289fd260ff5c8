"""Tiles of large images: positions, smooth blending weights and streamed sliding windows.

Networks see fixed-size tiles; images are any size. :func:`sliding_window` runs a per-tile
function over overlapping tiles and blends the overlaps with a cosine-squared window, so the
result has no seams. It yields finished horizontal strips of the output instead of building the
whole map, so memory stays bounded by one strip (channels x tile x width) whatever the height.
Torch-free: the caller passes the per-tile function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

TileFunction = Callable[[np.ndarray], np.ndarray]
"""Maps a (B, tile, tile) float32 batch of tiles to a (B, C, tile, tile) batch of outputs."""

MIN_WEIGHT = 1e-3
"""Floor of the blending window, so pixels only one tile's rim covers still get a value."""


def tile_starts(length: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels, overlapping by at least ``overlap``.

    Tiles are spread evenly with the last one flush with the end; a length not longer than one
    tile gives ``[0]``.
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"Need tile > 0 and 0 <= overlap < tile, got {tile=} {overlap=}.")
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def spread(items: list, limit: int) -> list:
    """At most ``limit`` items picked evenly from ``items`` (all of them if there are few)."""
    if len(items) <= limit:
        return list(items)
    if limit == 1:
        return [items[len(items) // 2]]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def tile_grid(shape: tuple[int, int], tile: int, max_tiles: int) -> list[tuple[int, int, int, int]]:
    """Up to ``max_tiles`` non-overlapping (y, x, h, w) tiles spread over an image.

    Tiles are ``tile`` pixels square, or the whole side where the image is smaller.
    """
    h, w = min(tile, shape[0]), min(tile, shape[1])
    grid = [(y, x) for y in tile_starts(shape[0], h) for x in tile_starts(shape[1], w)]
    return [(y, x, h, w) for y, x in spread(grid, max_tiles)]


def blend_window(tile: int) -> np.ndarray:
    """A (tile, tile) weight map, highest in the middle and falling smoothly to the rim."""
    ramp = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    return np.maximum(np.outer(ramp, ramp), MIN_WEIGHT).astype(np.float32)


def pad_to(image: np.ndarray, min_h: int, min_w: int) -> np.ndarray:
    """Mirror-pad a 2D image at its bottom and right edges up to at least (min_h, min_w)."""
    pad_h, pad_w = max(0, min_h - image.shape[0]), max(0, min_w - image.shape[1])
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)), mode="symmetric")


def sliding_window(
    image: np.ndarray,
    tile_fn: TileFunction,
    n_channels: int,
    tile: int,
    overlap: int,
    batch_size: int = 8,
) -> Iterator[tuple[int, np.ndarray]]:
    """Blend ``tile_fn`` over overlapping tiles of a 2D ``image``, strip by strip.

    Yields ``(row, block)`` with ``block`` the blended (n_channels, rows, width) output for image
    rows ``row .. row + rows``, in order and covering the image exactly once. Images smaller
    than a tile are mirror-padded; the padding is cropped from the output.
    """
    height, width = image.shape
    padded = pad_to(image, tile, tile)
    ys = tile_starts(padded.shape[0], tile, overlap)
    xs = tile_starts(padded.shape[1], tile, overlap)
    window = blend_window(tile)
    acc = np.zeros((n_channels, tile, padded.shape[1]), np.float32)
    weight = np.zeros((tile, padded.shape[1]), np.float32)
    for i, y in enumerate(ys):
        for first in range(0, len(xs), batch_size):
            chunk = xs[first : first + batch_size]
            tiles = np.stack([padded[y : y + tile, x : x + tile] for x in chunk])
            out = tile_fn(np.ascontiguousarray(tiles, dtype=np.float32))
            for x, tile_out in zip(chunk, out, strict=True):
                acc[:, :, x : x + tile] += tile_out * window
                weight[:, x : x + tile] += window
        done = ys[i + 1] - y if i + 1 < len(ys) else tile
        rows = min(done, height - y)
        if rows > 0:
            yield y, acc[:, :rows, :width] / weight[:rows, :width]
        acc = np.concatenate([acc[:, done:], np.zeros_like(acc[:, :done])], axis=1)
        weight = np.concatenate([weight[done:], np.zeros_like(weight[:done])], axis=0)


def assemble(strips: Iterator[tuple[int, np.ndarray]]) -> np.ndarray:
    """Join the strips of :func:`sliding_window` into one (C, H, W) array (small images only)."""
    return np.concatenate([block for _, block in strips], axis=1)
