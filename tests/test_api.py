"""The Python API: load_model, Model.segment and Model.classify, as a script would use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_nanowire import load_model
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.model.modelfile import save_model
from napari_nanowire.core.model.random_models import random_model
from napari_nanowire.core.predict import Predictor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A random-weight classifier+segmenter file at 2 nm/px (the plumbing, not the science)."""
    model = random_model(tile=32, pixel_size_nm=2.0)
    # Random weights give p(wire) 0.425-0.438 everywhere on noise (all background); a steeper
    # output layer spreads that to a mask about half wire (measured 47 %), so masks differ
    # where inputs do and the comparisons below can fail.
    model.tensors["segmenter.out.weight"] *= 200
    return save_model(model, tmp_path_factory.mktemp("api") / "wires.nwmodel")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [rng.random((40, 48), dtype=np.float32) for _ in range(3)]


def test_three_lines_give_masks_the_shape_of_the_input(model_path, images, tmp_path):
    model = load_model(model_path, device="cpu")
    assert model.heads == ["classifier", "segmenter"]
    assert model.mask_classes == ["background", "wire"] and model.pixel_size_nm == 2.0
    mask = model.segment(images[0], pixel_size_nm=2.0)
    assert mask.shape == (40, 48) and mask.dtype == np.uint8
    assert 0.1 < mask.mean() < 0.9  # both classes: the equalities below mean something
    stack = model.segment(np.stack(images), pixel_size_nm=2.0)
    assert stack.shape == (3, 40, 48)
    masks = model.segment(images, pixel_size_nm=[2.0, 2.0, 2.0])
    assert isinstance(masks, list) and len(masks) == 3
    # the same frame gives the same mask whichever form it came in, and the same as the
    # Predictor the GUI and the CLI use
    reference = Predictor.load(model_path, "cpu").segment(images[1], 2.0).mask
    np.testing.assert_array_equal(stack[1], reference)
    np.testing.assert_array_equal(masks[1], reference)
    # a file brings its own pixel size
    write_tiff(tmp_path / "frame.tif", images[1], 2.0)
    np.testing.assert_array_equal(model.segment(tmp_path / "frame.tif"), reference)


def test_pixel_size_rescales_to_the_model(model_path, images):
    model = load_model(model_path, device="cpu")
    # at 1 nm/px the image is halved to the model's 2 nm/px and the mask resized back: it
    # keeps the input's shape but differs from the mask at the model's own pixel size
    half = model.segment(images[0], pixel_size_nm=1.0)
    assert half.shape == images[0].shape
    assert not np.array_equal(half, model.segment(images[0], pixel_size_nm=2.0))


def test_classify_flattens_stacks_in_order(model_path, images):
    model = load_model(model_path, device="cpu")
    result = model.classify([np.stack(images[:2]), images[2]], pixel_size_nm=2.0)
    assert result.probabilities.shape == (3, 2)
    np.testing.assert_allclose(result.probabilities.sum(1), 1, atol=1e-5)
    single = model.classify(images[2], pixel_size_nm=2.0)
    np.testing.assert_allclose(single.probabilities[0], result.probabilities[2], atol=1e-5)
    assert list(result.table().columns[:2]) == ["class", "confidence"]
    assert set(result.classes) <= set(model.class_names)


def test_bad_input_is_named(model_path, images):
    model = load_model(model_path, device="cpu")
    with pytest.raises(NanowireError, match=r"shape \(4, 5, 6, 7\)"):
        model.segment(np.zeros((4, 5, 6, 7)))
    with pytest.raises(NanowireError, match="2 pixel sizes for 3 images"):
        model.segment(images, pixel_size_nm=[1.0, 2.0])
    with pytest.raises(NanowireError, match="No images"):
        model.classify([])


def test_the_readme_example_runs(model_path, images, tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = text.split("<!-- api-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    for i, image in enumerate(images):
        write_tiff(tmp_path / "images" / f"img{i}.tif", image, 2.0)
    (tmp_path / "wires.nwmodel").write_bytes(model_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["masks"].shape == (3, 40, 48)
