"""Bounded memory of prediction on large images: a few image-sized arrays, never the maps."""

from __future__ import annotations

import tracemalloc

import numpy as np

from napari_nanowire.core.batch import random_model
from napari_nanowire.core.predict import Predictor
from test_distributed import one_torch_thread  # noqa: F401 (autouse: one torch thread here)


def peak_numpy_bytes_per_pixel(predictor: Predictor, side: int) -> float:
    """Peak memory numpy allocates while segmenting a side x side image, per pixel."""
    image = np.random.default_rng(0).random((side, side), dtype=np.float32)
    tracemalloc.start()
    try:
        result = predictor.segment(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.mask.shape == image.shape
    return peak / image.size


def test_segmentation_memory_is_a_few_image_copies_whatever_the_size():
    # Measured 20.0 B/px at 256, 512 and 1024 px (float32 normalisation temporaries plus the
    # uint8 mask); a whole-image probability map would add >= 8 B/px per class. Bound 24 B/px.
    predictor = Predictor(random_model(tile=64), "random.nwmodel", "cpu")
    per_pixel = [peak_numpy_bytes_per_pixel(predictor, side) for side in (256, 1024)]
    assert max(per_pixel) < 24
    assert per_pixel[1] < per_pixel[0] * 1.2  # flat: the strips do not grow with the image
