"""Bad input, fuzzed: the reader, measurement and prediction return a result or a NanowireError.

Example counts and deadlines are bounded so the file runs in well under a minute; any other
exception, or a hang past the deadline, fails.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import read_image
from napari_nanowire.core.measure import MeasureOptions
from napari_nanowire.core.measure.tables import measure_masks
from napari_nanowire.core.model.random_models import random_model
from napari_nanowire.core.predict import Predictor

DTYPES = ["uint8", "uint16", "uint32", "float16", "float32", "float64", "bool"]
FUZZ = settings(
    max_examples=40,
    deadline=5000,  # ms per example; one example takes < 0.3 s here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@st.composite
def odd_arrays(draw, max_side: int = 40, max_ndim: int = 4) -> np.ndarray:
    """Arrays of odd shapes and dtypes: tiny, constant, extreme, NaN/inf where the dtype can."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_ndim, min_side=1, max_side=max_side))
    if draw(st.booleans()):  # a constant image
        value = draw(hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True))
        return np.full(shape, value, dtype)
    elements = hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@pytest.mark.slow  # 11 s under load
@FUZZ
@given(data=odd_arrays())
def test_reader_returns_an_image_or_a_clear_error(folder, data):
    path = folder / "fuzz.tif"
    tifffile.imwrite(path, data)
    try:
        image = read_image(path)
    except NanowireError as err:
        assert str(path) in str(err)
        event("refused")
        return
    event("read")
    assert image.data.ndim in (2, 3) and min(image.data.shape[-2:]) >= 2
    values = np.asarray(image.data)
    assert values.dtype.kind == "b" or np.all(np.isfinite(values.astype(np.float64)))


@pytest.mark.slow  # 9 s under load
@FUZZ
@given(
    values=hnp.arrays(
        "uint8",
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=48),
        elements=st.integers(0, 3),
    ),
    dtype=st.sampled_from(["uint8", "int32", "bool", "float32"]),
    pixel_size=st.floats(1e-6, 1e6),
)
def test_measurement_returns_tables_or_a_clear_error(values, dtype, pixel_size):
    mask = values.astype(dtype)
    try:
        domains, summary = measure_masks([("m", mask, pixel_size)], MeasureOptions(pixel_size))
    except NanowireError:
        event("refused")
        return
    event("measured")
    assert len(summary) >= 1
    foreground = int(np.count_nonzero(mask))
    area_px = domains["area_nm2"].sum() / pixel_size**2 if len(domains) else 0.0
    assert area_px == pytest.approx(foreground, rel=1e-6)


@pytest.fixture(scope="module")
def predictor():
    """A random-weights tiny classifier+segmenter with 32 px tiles (shape is what matters)."""
    return Predictor(random_model(tile=32, pixel_size_nm=1.0), "random.nwmodel", "cpu")


@settings(FUZZ, max_examples=25)
# Pixel sizes within 4x of the model's: a larger factor legitimately rescales a 70 px image to
# thousands of px (up to features.MAX_PIXELS), real work that is too slow for a unit test.
@pytest.mark.slow  # 5 s under load
@given(image=odd_arrays(max_side=70, max_ndim=2), pixel_size=st.floats(0.25, 4.0) | st.none())
def test_prediction_returns_a_result_or_a_clear_error(predictor, image, pixel_size):
    try:
        probs = predictor.classify([image], [pixel_size]).probabilities
        result = predictor.segment(image, pixel_size, entropy_map=True)
    except NanowireError:
        event("refused")
        return
    event("predicted")
    assert probs.shape == (1, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert result.mask.shape == image.shape and result.entropy_map.shape == image.shape
    assert set(np.unique(result.mask)) <= {0, 1} and 0 <= result.mean_entropy <= 1 + 1e-6


@FUZZ
@given(cells=st.lists(st.text(max_size=12), min_size=1, max_size=6))
def test_csv_cells_round_trip_and_never_start_a_formula(cells):
    import pandas as pd

    from napari_nanowire.core.io import csv_unsafe, write_csv

    cells = [c for c in cells if c.strip() and "\x00" not in c and "\r" not in c] or ["x"]
    with tempfile.TemporaryDirectory() as tmp:
        write_csv(Path(tmp) / "t.csv", pd.DataFrame({"image": cells}))
        back = pd.read_csv(Path(tmp) / "t.csv", dtype=str, keep_default_na=False)["image"]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t")) for cell in back)
    assert [csv_unsafe(cell) for cell in back] == cells


@FUZZ
@given(
    value=st.integers(-(2**70), 2**70).map(str) | st.text(max_size=8),
    low=st.integers(-5, 5),
    span=st.integers(0, 100),
)
def test_option_ranges_return_a_number_in_range_or_an_argparse_error(value, low, span):
    import argparse

    from napari_nanowire.cli.common import int_range

    parse = int_range(low, low + span)
    try:
        number = parse(value)
    except argparse.ArgumentTypeError as err:
        assert value.strip() in str(err) or "not a whole number" in str(err)
        return
    assert low <= number <= low + span
