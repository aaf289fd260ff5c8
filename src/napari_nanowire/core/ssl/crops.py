"""Random resized crops from images of any size, sampled as one batched operation on the device.

Every image is stored once on the training device, in a texture atlas that holds only the
pyramid levels (2x area-averaged reductions) that its crops can need, so large downscaling
never aliases and a 4k x 4k micrograph costs a few MB even with small crops.
All crops of a batch, with their flips and 90-degree rotations folded into the same affine map,
come from one ``affine_grid`` + ``grid_sample`` call (reading the two pyramid levels around each
crop's scale, blended: trilinear mip-mapping, as GPUs filter textures).

Crop size is drawn uniformly in area (as torchvision's ``RandomResizedCrop``) either relative to
each image (a fraction of the smaller side squared) or, where the pixel size is known, as a
physical field of view in nm, so images taken at different magnifications give crops of the
same physical size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NanowireError

# The eight symmetries of the square (rotations by k*90 degrees, optionally after a mirror),
# as 2x2 matrices acting on output coordinates.
_DIHEDRAL = torch.tensor(
    [
        [[c, -s], [s, c]] if not mirror else [[-c, -s], [-s, c]]
        for mirror in (False, True)
        for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))
    ],
    dtype=torch.float32,
)


@dataclass(frozen=True)
class CropRange:
    """Side lengths of the crops taken from one image, in that image's pixels."""

    min_side: float
    max_side: float

    @property
    def mean_area(self) -> float:
        """Expected crop area when the area is drawn uniformly between the two extremes."""
        return (self.min_side**2 + self.max_side**2) / 2


def crop_ranges(
    shapes: Sequence[tuple[int, int]],
    pixel_sizes_nm: Sequence[float | None],
    scale: tuple[float, float],
    fov_nm: tuple[float, float] | None,
) -> list[CropRange]:
    """Crop side range per image: ``fov_nm`` where the pixel size is known, else ``scale``.

    ``scale`` is a range of area fractions of the smaller image side squared; ``fov_nm`` a range
    of physical side lengths. Sides are capped at the smaller image side.
    """
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise NanowireError(f"Crop scale {scale} must satisfy 0 < low <= high <= 1.")
    if fov_nm is not None and not 0 < fov_nm[0] <= fov_nm[1]:
        raise NanowireError(f"Crop field of view {fov_nm} nm must satisfy 0 < low <= high.")
    ranges = []
    for (h, w), px_nm in zip(shapes, pixel_sizes_nm, strict=True):
        side = min(h, w)
        if fov_nm is not None and px_nm:
            a, b = fov_nm[0] / px_nm, fov_nm[1] / px_nm
        else:
            a, b = math.sqrt(lo) * side, math.sqrt(hi) * side
        ranges.append(CropRange(min(a, side), min(b, side)))
    return ranges


def _level_span(crop: CropRange, shape: tuple[int, int], out_size: int) -> tuple[int, int]:
    """Pyramid levels (first, last) that crops of this range are blended from."""
    coarsest = max(0, int(math.log2(max(min(shape), 1) / 2)))

    def level(side: float) -> int:
        return min(coarsest, max(0, math.floor(math.log2(max(side, 1e-6) / out_size))))

    return level(crop.min_side), min(coarsest, level(crop.max_side) + 1)


def _affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, (m, 1, size, size), align_corners=False)`` by broadcasting.

    Same numbers; several times faster on a CPU than affine_grid's batched product with 3
    columns, which matters for big batches of large crops.
    """
    centres = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1
    col = theta[:, None, None, :, 0] * centres.view(1, 1, size, 1)
    row = theta[:, None, None, :, 1] * centres.view(1, size, 1, 1)
    return (row + theta[:, None, None, :, 2]) + col


def _pack_shelves(sizes: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """Place rectangles (h, w) on shelves; return their (y, x) origins and the atlas (h, w)."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    width = max(max(w for _, w in sizes), math.ceil(math.sqrt(sum(h * w for h, w in sizes))))
    origins: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    y = x = shelf_h = 0
    for i in order:
        h, w = sizes[i]
        if x + w > width:
            y, x, shelf_h = y + shelf_h, 0, 0
        origins[i] = (y, x)
        x += w
        shelf_h = max(shelf_h, h)
    return origins, y + shelf_h, width


class CropSampler:
    """Draws random resized crops of ``out_size`` px from a fixed set of normalised images.

    ``images`` are 2D arrays, normalised already or by ``prepare``, which is applied to each
    image as it is read, once: memory-mapped or dask frames are read one at a time and only
    the pyramid levels crops need are kept, so a stack larger than memory can be sampled.
    ``ranges`` are their crop side ranges (see :func:`crop_ranges`). Images are drawn with
    probability proportional to how many distinct crops they hold (area over mean crop area),
    so a large micrograph gives many views.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        ranges: Sequence[CropRange],
        out_size: int,
        *,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        device: torch.device | str = "cpu",
        prepare: Callable[[np.ndarray], np.ndarray] = np.asarray,
    ) -> None:
        if not len(images):
            raise NanowireError("No images to crop from.")
        self.out_size = int(out_size)
        self.device = torch.device(device)
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        shapes = [tuple(int(n) for n in np.shape(img)) for img in images]
        self.ranges = list(ranges)
        tiles, index = self._pyramid_tiles(images, shapes, prepare)
        atlas, origins = self._build_atlas(tiles)
        self.atlas = atlas.to(self.device)
        n, n_levels = len(images), max(lvl for _, lvl in index) + 1
        origin = torch.zeros(n, n_levels, 2)
        for (img, lvl), (oy, ox) in zip(index, origins, strict=True):
            origin[img, lvl] = torch.tensor([oy + 1.0, ox + 1.0])  # skip the 1 px border
        self.origin = origin.to(self.device)
        spans = [_level_span(r, s, self.out_size) for r, s in zip(self.ranges, shapes, strict=True)]
        self.level_lo = torch.tensor([a for a, _ in spans], device=self.device)
        self.level_hi = torch.tensor([b for _, b in spans], device=self.device)
        self.shape = torch.tensor(shapes, dtype=torch.float32, device=self.device)
        self.side_lo = torch.tensor([r.min_side for r in self.ranges], device=self.device)
        self.side_hi = torch.tensor([r.max_side for r in self.ranges], device=self.device)
        self.views = torch.tensor(
            [max(1.0, h * w / r.mean_area) for (h, w), r in zip(shapes, self.ranges, strict=True)]
        )
        self.weights = (self.views / self.views.sum()).to(self.device)

    @property
    def views_per_pass(self) -> float:
        """Number of crops that cover every image about once."""
        return float(self.views.sum())

    def _pyramid_tiles(
        self,
        images: Sequence[np.ndarray],
        shapes: Sequence[tuple[int, ...]],
        prepare: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """The needed pyramid levels of every image, each with a 1 px replicated border."""
        tiles, index = [], []
        for i, (img, shape) in enumerate(zip(images, shapes, strict=True)):
            first, last = _level_span(self.ranges[i], shape, self.out_size)
            pixels = np.ascontiguousarray(prepare(img), dtype=np.float32)
            level = torch.as_tensor(pixels)[None, None]
            for lvl in range(last + 1):
                if lvl >= first:
                    tiles.append(F.pad(level, (1, 1, 1, 1), mode="replicate")[0, 0])
                    index.append((i, lvl))
                level = F.avg_pool2d(level, 2)
        return tiles, index

    @staticmethod
    def _build_atlas(tiles: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Pack tiles into one 2D tensor; return it and each tile's (y, x) origin."""
        origins, height, width = _pack_shelves([tuple(t.shape) for t in tiles])
        atlas = torch.zeros(height, width)
        for tile, (y, x) in zip(tiles, origins, strict=True):
            atlas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        return atlas, origins

    def draw_images(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of ``n`` images, drawn in proportion to the views each holds."""
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def random_crops(
        self, index: torch.Tensor, generator: torch.Generator, *, symmetries: bool = True
    ) -> torch.Tensor:
        """One random resized crop of each image in ``index``: (len(index), 1, S, S).

        With ``symmetries``, each crop also gets a random flip and 90-degree rotation.
        """
        n = len(index)

        def uniform(lo: torch.Tensor | float, hi: torch.Tensor | float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator, device=self.device)

        lo, hi = self.side_lo[index], self.side_hi[index]
        side = uniform(lo**2, hi**2).sqrt()
        aspect = uniform(*self.log_ratio).exp().sqrt()
        size = torch.stack([side / aspect, side * aspect], dim=1)  # (h, w)
        size = torch.minimum(size, self.shape[index])
        centre = size / 2 + (self.shape[index] - size) * torch.rand(
            n, 2, generator=generator, device=self.device
        )
        if symmetries:
            pick = torch.randint(0, 8, (n,), generator=generator, device=self.device)
        else:
            pick = torch.zeros(n, dtype=torch.long, device=self.device)
        return self._sample(index, centre, size, _DIHEDRAL.to(self.device)[pick])

    def centre_crops(self, index: torch.Tensor) -> torch.Tensor:
        """A centred square crop of mean crop area from each image in ``index``."""
        side = ((self.side_lo[index] ** 2 + self.side_hi[index] ** 2) / 2).sqrt()
        size = torch.minimum(side[:, None].expand(-1, 2), self.shape[index])
        eye = torch.eye(2, device=self.device).expand(len(index), 2, 2)
        return self._sample(index, self.shape[index] / 2, size, eye)

    def _sample(
        self, index: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, rot: torch.Tensor
    ) -> torch.Tensor:
        """Read crops (centre and size (y, x) in level-0 px, rot 2x2) in one grid_sample.

        Trilinear mip-mapping: each crop is read bilinearly from the two pyramid levels around
        its scale and the two are blended by the fractional log2 scale, so no crop aliases.
        """
        n, s = len(index), self.out_size
        lo, hi = self.level_lo[index], self.level_hi[index]
        scale = torch.log2(size.prod(dim=1).sqrt() / s).clamp(lo.float(), hi.float())
        fine = torch.minimum(scale.floor().long(), hi)
        coarse = torch.minimum(fine + 1, hi)
        both = torch.cat([fine, coarse])
        twice = index.repeat(2), centre.repeat(2, 1), size.repeat(2, 1), rot.repeat(2, 1, 1)
        theta = self._theta(twice[0], both, *twice[1:])
        grid = _affine_grid(theta, s)
        out = F.grid_sample(
            self.atlas[None, None],
            grid.reshape(1, 2 * n * s, s, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        ).reshape(2, n, 1, s, s)
        t = (scale - fine.float()).clamp(0, 1).view(n, 1, 1, 1)
        return torch.lerp(out[0], out[1], t)

    def _theta(
        self,
        index: torch.Tensor,
        level: torch.Tensor,
        centre: torch.Tensor,
        size: torch.Tensor,
        rot: torch.Tensor,
    ) -> torch.Tensor:
        """Affine maps from output coordinates to normalised atlas coordinates at ``level``."""
        shrink = torch.exp2(-level.float())[:, None]
        atlas_hw = torch.tensor(self.atlas.shape, dtype=torch.float32, device=self.device)
        pos = self.origin[index, level] + centre * shrink  # crop centre in atlas px
        half = size * shrink / atlas_hw  # half extent in normalised units: (size/2) * 2 / hw
        theta = torch.empty(len(index), 2, 3, device=self.device)
        theta[:, 0, :2] = half[:, 1:2] * rot[:, 0, :]  # x row
        theta[:, 1, :2] = half[:, 0:1] * rot[:, 1, :]  # y row
        theta[:, 0, 2] = 2 * pos[:, 1] / atlas_hw[1] - 1  # align_corners=False
        theta[:, 1, 2] = 2 * pos[:, 0] / atlas_hw[0] - 1
        return theta
