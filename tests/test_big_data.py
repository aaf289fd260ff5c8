"""Bounded memory of prediction: a few copies of one image, never the maps nor the stack."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_nanowire.core.io import read_image
from napari_nanowire.core.io import reading as io
from napari_nanowire.core.model.random_models import random_model, save_random_model
from napari_nanowire.core.predict import Predictor, predict_files


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


@pytest.mark.slow  # 5 s under load
def test_segmentation_memory_is_a_few_image_copies_whatever_the_size():
    # Measured 20.0 B/px at 256, 512 and 1024 px (float32 normalisation temporaries plus the
    # uint8 mask); a whole-image probability map would add >= 8 B/px per class. Bound 24 B/px.
    predictor = Predictor(random_model(tile=64), "random.nwmodel", "cpu")
    per_pixel = [peak_numpy_bytes_per_pixel(predictor, side) for side in (256, 1024)]
    assert max(per_pixel) < 24
    assert per_pixel[1] < per_pixel[0] * 1.2  # flat: the strips do not grow with the image


def lazy_stack(path, frames: int, side: int = 128):
    """A compressed float32 stack, written page by page: it opens lazily as per-page reads."""
    rng = np.random.default_rng(frames)
    with tifffile.TiffWriter(path) as tif:
        for _ in range(frames):  # page by page: the test itself never holds the stack
            page = rng.random((side, side), dtype=np.float32)
            tif.write(page, compression="zlib", metadata=None)
    return path


def streaming_peak_bytes(model, path, out) -> int:
    """Peak numpy/Python memory while predict_files predicts a stack, from its first frame on.

    The peak of loading the model (its file's bytes) comes before and would hide the
    prediction's; what is still held from then on (model, frames, outputs) counts.
    """
    tracemalloc.start()
    try:
        events = predict_files(model, [path], out, device="cpu")
        steps = [next(events).step]
        tracemalloc.reset_peak()
        steps += [event.step for event in events]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    frames = read_image(path).data.shape[0]
    assert steps == [*range(1, frames + 1), frames]  # a progress event per frame, then done
    return peak


@pytest.mark.slow  # 10 s under load
def test_stack_prediction_memory_does_not_grow_with_the_number_of_frames(tmp_path, monkeypatch):
    model = save_random_model(tmp_path / "model.nwmodel", tile=64)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    small, large = (lazy_stack(tmp_path / f"s{n}.tif", n) for n in (4, 16))
    assert not isinstance(read_image(large).data, np.ndarray)  # read lazily, frame by frame
    # the first run pays one-off costs (imports, caches): compare the second and third
    peaks = [streaming_peak_bytes(model, p, tmp_path / p.stem) for p in (small, small, large)]
    # Measured at 128 px: 9.1 MB with 4 frames (mostly the model), +10 kB per further frame
    # (its table row). Holding the stack measured +70 kB per frame (64 kB a float32 frame,
    # checked by reading it whole first). Bound 30 kB per frame.
    assert (peaks[2] - peaks[1]) / 12 < 30_000
    masks = read_image(tmp_path / "s16" / "masks" / "s16.tif")
    assert masks.data.shape == (16, 128, 128) and masks.data.dtype == np.uint8
