"""Segmentation at a working scale: resampling rule, post-processing in nm, scale-bar regions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads.scale import (
    WorkingScale,
    default_tile,
    default_working_scale,
    probabilities_to_original,
    resample_mask,
    to_working,
    working_from_meta,
)


def test_default_working_scale_brings_long_side_to_target_without_calibration():
    working = default_working_scale([(1024, 768), (1024, 1024), (2048, 1024)], [None] * 3)
    assert working.pixel_size_nm is None and working.downsample == pytest.approx(1024 / 384, 1e-3)
    image, mask = to_working(np.random.default_rng(0).random((1024, 768)), None, None, working)
    assert image.shape == (384, 288) and image.dtype == np.float32 and mask is None
    # small images are never enlarged
    assert default_working_scale([(200, 300)]).downsample == 1.0


def test_working_pixel_size_follows_calibration_and_overrides():
    working = default_working_scale([(1024, 1024)], [0.054], pixel_size_nm=0.216)
    assert working.downsample == pytest.approx(4.0) and working.pixel_size_nm == 0.216
    # calibrated images go to the nm size, whatever their own pixel size ...
    assert working.factor(0.108) == pytest.approx(0.5)
    assert working.working_pixel_nm(0.108) == 0.216
    # ... uncalibrated ones are shrunk by the stored factor
    assert working.factor(None) == pytest.approx(0.25)
    derived = default_working_scale([(1024, 1024)], [0.05, None])
    assert derived.pixel_size_nm == pytest.approx(0.05 * 1024 / 384, 1e-3)
    with pytest.raises(NanowireError, match="positive"):
        WorkingScale(pixel_size_nm=-1.0)


def test_working_scale_round_trips_through_model_meta():
    working = WorkingScale(0.3, 2.5)
    assert working_from_meta({"segmenter": {"working": working.to_meta()}}) == working
    # a segmenter from before working scales ran at the model's pixel size, full resolution
    assert working_from_meta({"pixel_size_nm": 2.0, "segmenter": {}}) == WorkingScale(2.0, 1.0)


def test_thin_strokes_survive_shrinking_and_masks_keep_their_values():
    mask = np.zeros((400, 400), np.uint8)
    mask[100, 20:380] = 2  # a 1 px wire stroke
    mask[300:302, 20:380] = 1  # a 2 px background stroke
    small = resample_mask(mask, (100, 100), unlabelled=0)
    assert (small[25, 5:95] == 2).all() and (small[75, 5:95] == 1).all()
    # a plain vote (no unlabelled value) drops a stroke covering 1/4 of each footprint
    assert not (resample_mask(mask, (100, 100)) == 2).any()
    dense = np.zeros((64, 64), np.uint16)
    dense[10:40, 10:40] = 7
    big = resample_mask(dense, (128, 128))
    assert big.dtype == np.uint16 and set(np.unique(big)) == {0, 7}
    assert (big == 7).sum() == 4 * 30 * 30


def test_probabilities_come_back_to_the_original_grid():
    probs = np.zeros((2, 8, 8), np.float32)
    probs[0], probs[1, :, 4:] = 1.0, 1.0
    probs[0, :, 4:] = 0.0
    up = probabilities_to_original(probs, (32, 30))
    assert up.shape == (2, 32, 30)
    assert np.allclose(up.sum(0), 1.0)
    assert (up.argmax(0)[:, :14] == 0).all() and (up.argmax(0)[:, 16:] == 1).all()


def test_default_tile_follows_the_working_image():
    assert default_tile([(384, 288)]) == 256
    assert default_tile([(100, 90)]) == 128
    assert default_tile([(20, 30)]) == 64
