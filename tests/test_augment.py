"""Crops and TEM augmentations: geometry exact, values in range, reproducible under a seed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.model.preprocess import normalize
from napari_nanowire.core.ssl.augment import AugmentConfig, gaussian_blur, make_views
from napari_nanowire.core.ssl.crops import CropSampler, crop_ranges

QUIET = AugmentConfig(blur_p=0, intensity_p=0, noise_p=0)  # geometry only


def _sampler(images, out_size, scale=(0.2, 1.0), sizes=None, fov=None, ratio=(3 / 4, 4 / 3)):
    sizes = sizes or [None] * len(images)
    ranges = crop_ranges([np.shape(im) for im in images], sizes, scale, fov)
    return CropSampler(images, ranges, out_size, ratio=ratio)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def tem_images():
    return [normalize(item.image) for item in generate_dataset(1, size=96, seed=0)]


def test_full_image_crop_is_the_area_average():
    image = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    crop = _sampler([image], 16, scale=(1, 1)).centre_crops(torch.tensor([0]))
    expected = F.avg_pool2d(torch.from_numpy(image)[None, None], 4)
    torch.testing.assert_close(crop, expected, atol=1e-5, rtol=0)
    # A pixel checkerboard averages to 0: read from the right pyramid level, no aliasing.
    board = np.indices((64, 64)).sum(axis=0) % 2 * 2.0 - 1
    crops = _sampler([board.astype(np.float32)], 16).random_crops(torch.zeros(32).long(), _gen(0))
    # Measured max 0.09-0.15 over seeds 0-4 (0.93 reading one level bilinearly); bound 0.3.
    assert crops.abs().max() < 0.3


def test_random_crops_shape_range_and_seed(tem_images):
    sampler = _sampler(tem_images, 24)
    index = sampler.draw_images(16, _gen(0))
    crops = sampler.random_crops(index, _gen(1))
    assert crops.shape == (16, 1, 24, 24)
    lo, hi = min(im.min() for im in tem_images), max(im.max() for im in tem_images)
    assert lo - 1e-5 <= crops.min() and crops.max() <= hi + 1e-5  # averages of pixels
    assert torch.equal(crops, sampler.random_crops(index, _gen(1)))
    assert not torch.equal(crops, sampler.random_crops(index, _gen(2)))


def test_symmetries_are_the_eight_exact_flips_and_rotations():
    image = torch.arange(32 * 32, dtype=torch.float32).reshape(32, 32)
    sampler = _sampler([image.numpy()], 32, scale=(1, 1), ratio=(1, 1))
    crops = sampler.random_crops(torch.zeros(64).long(), _gen(0))[:, 0]
    variants = [torch.rot90(v, k) for v in (image, image.flip(1)) for k in range(4)]
    found = [
        next(i for i, v in enumerate(variants) if torch.allclose(c, v, atol=1e-3)) for c in crops
    ]
    assert sorted(set(found)) == list(range(8))


def test_crop_size_in_nm_follows_the_pixel_size():
    shapes = [(200, 300), (200, 300), (200, 300)]
    a, b, c = crop_ranges(shapes, [1.0, 2.0, None], (0.25, 1.0), (40.0, 100.0))
    assert (a.min_side, a.max_side) == (40, 100)  # nm / (nm/px)
    assert (b.min_side, b.max_side) == (20, 50)
    assert (c.min_side, c.max_side) == (100, 200)  # no pixel size: relative to the short side
    (capped,) = crop_ranges([(30, 30)], [1.0], (0.25, 1.0), (40.0, 100.0))
    assert capped.max_side == 30


def test_same_field_of_view_at_two_magnifications_gives_the_same_crop():
    coarse = np.random.default_rng(1).normal(size=(64, 64)).astype(np.float32)  # 2 nm/px
    fine = np.kron(coarse, np.ones((2, 2), dtype=np.float32))  # the same scene at 1 nm/px
    sampler = _sampler([coarse, fine], 25, sizes=[2.0, 1.0], fov=(100.0, 100.0))
    crops = sampler.centre_crops(torch.tensor([0, 1]))
    torch.testing.assert_close(crops[0], crops[1], atol=1e-4, rtol=0)


def test_large_images_are_drawn_in_proportion_to_their_views():
    small, large = np.zeros((64, 64), np.float32), np.ones((256, 256), np.float32)
    sampler = _sampler([small, large], 32, sizes=[1.0, 1.0], fov=(32.0, 64.0))
    assert sampler.views_per_pass == pytest.approx((64**2 + 256**2) / ((32**2 + 64**2) / 2))
    share = sampler.draw_images(4000, _gen(0)).float().mean().item()
    assert share == pytest.approx(256**2 / (64**2 + 256**2), abs=0.03)


def test_views_come_in_pairs_of_the_same_image():
    images = [np.full((40, 40), float(v), np.float32) for v in range(5)]
    views = make_views(_sampler(images, 16), 12, QUIET, _gen(0))
    assert views.shape == (24, 1, 16, 16)
    values = views.mean(dim=(1, 2, 3))
    torch.testing.assert_close(values[:12], values[12:])
    assert set(values.round().tolist()) <= set(range(5))


def test_augmented_views_are_finite_in_range_and_seeded(tem_images):
    sampler = _sampler(tem_images, 32)
    config = AugmentConfig(invert_p=0.5)
    views = make_views(sampler, 32, config, _gen(3))
    assert views.shape == (64, 1, 32, 32) and torch.isfinite(views).all()
    # Range measured over seeds 0-19: inputs in [-3.8, 2.0], views in [-5.2, 5.3]; bound:
    # the input range widened by its span on both sides.
    lo, hi = min(im.min() for im in tem_images), max(im.max() for im in tem_images)
    assert lo - (hi - lo) < views.min() and views.max() < hi + (hi - lo)
    # Per-view std measured 0.23-1.86: no view is flattened or blown up; bound 0.05-5.
    std = views.std(dim=(1, 2, 3))
    assert std.min() > 0.05 and std.max() < 5
    assert torch.equal(views, make_views(sampler, 32, config, _gen(3)))
    assert not torch.allclose(views, make_views(sampler, 32, config, _gen(4)))


def test_blur_averages_with_a_gaussian_kernel():
    noise = torch.randn(4, 1, 96, 96, generator=_gen(0))
    sigma = torch.tensor([0.0, 0.5, 1.0, 2.0])
    out = gaussian_blur(noise, sigma)
    assert torch.equal(out[0], noise[0])  # sigma 0: unchanged
    # White noise variance shrinks by (sum of squared 1D taps)^2 of the separable kernel.
    for i, s in enumerate(sigma[1:].tolist(), start=1):
        taps = torch.exp(-0.5 * (torch.arange(-6, 7.0) / s) ** 2)
        expected = ((taps / taps.sum()) ** 2).sum() ** 2
        assert out[i].var().item() == pytest.approx(expected.item(), rel=0.15)
    flat = torch.full((2, 1, 20, 20), 3.0)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([1.0, 2.0])), flat)


def test_bad_augmentation_settings_are_refused():
    with pytest.raises(NanowireError, match="blur_p"):
        AugmentConfig(blur_p=1.5).check()
    with pytest.raises(NanowireError, match="gamma"):
        AugmentConfig(gamma=(1.2, 0.8)).check()
    with pytest.raises(NanowireError, match="scale"):
        crop_ranges([(10, 10)], [None], (0.0, 1.0), None)
