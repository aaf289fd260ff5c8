"""The slice preview: a short training from the current state, then one slice predicted."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_nanowire.core.data.synthetic import generate_dataset, simulate_strokes
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads.preview import (
    check_strokes,
    current_state,
    preview_config,
    preview_slice,
)
from napari_nanowire.core.heads.scale import TRAIN_CROP
from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, load_model, save_model


@pytest.fixture(scope="module")
def data():
    """Three 64 px synthetic images with strokes, and a random tiny encoder file."""
    items = generate_dataset(1, size=64, pixel_size_nm=1.0, seed=1)[:3]
    images = [i.image for i in items]
    masks = [simulate_strokes(i.mask, k, stroke_px=16, brush_px=2) for k, i in enumerate(items)]
    return images, masks


@pytest.fixture
def encoder(tmp_path):
    torch.manual_seed(0)
    model = ModelFile(ModelMeta(encoder="tiny", image_size=64, pixel_size_nm=1.0))
    model.set_part("encoder", build_encoder("tiny").eval())
    return save_model(model, tmp_path / "encoder.nwmodel")


def run(job):
    """Drive a preview generator to its end: (events, result)."""
    events = []
    while True:
        try:
            events.append(next(job))
        except StopIteration as end:
            return events, end.value


def short(seed: int = 0) -> SegmenterConfig:
    return replace(preview_config(seed=seed), steps=3)


def decoder(path) -> dict[str, torch.Tensor]:
    return load_model(path).part("segmenter")


def test_a_preview_segments_the_slice_and_the_next_one_continues_its_weights(
    data, encoder, tmp_path
):
    images, masks = data
    out = tmp_path / "preview.nwmodel"
    args = (images, masks, images[1], out, [1.0] * 3, 1.0, ["wire"])
    events, first = run(preview_slice(encoder, *args, config=short()))
    assert first.mask.shape == images[1].shape and first.mask.dtype == np.uint8
    assert set(np.unique(first.mask)) <= {0, 1}
    assert first.mask_classes == ["background", "wire"]
    assert not first.continued and first.steps == 3 and first.model == out
    assert all(e.job == "preview" for e in events) and events[-1].done
    assert sum(e.done for e in events) == 1  # the training's own "done" is not the end
    meta = load_model(out).meta.segmenter
    assert meta.settings["validation"] is False and meta.settings["crop"] <= TRAIN_CROP
    first_weights = decoder(out)

    # a stopped continuation saves the weights it started from: exactly the first's
    stop = threading.Event()
    stop.set()
    kept = tmp_path / "kept.nwmodel"
    _, stopped = run(
        preview_slice(out, images, masks, images[1], kept, [1.0] * 3, 1.0, ["wire"], stop=stop)
    )
    assert stopped.continued and stopped.mask is None and stopped.steps == 0
    assert all(torch.equal(first_weights[k], v) for k, v in decoder(kept).items())

    # the same from the encoder would start a new decoder, which differs
    fresh = tmp_path / "fresh.nwmodel"
    run(
        preview_slice(encoder, images, masks, images[1], fresh, [1.0] * 3, 1.0, ["wire"], stop=stop)
    )
    assert not all(torch.equal(first_weights[k], v) for k, v in decoder(fresh).items())

    # continuing trains further, written over the file it started from
    _, second = run(preview_slice(out, *args[:3], out, [1.0] * 3, 1.0, ["wire"], short(1)))
    assert second.continued and second.mask.shape == images[1].shape
    assert not all(torch.equal(first_weights[k], v) for k, v in decoder(out).items())
    assert load_model(out).meta.segmenter.working == meta.working


def test_the_current_state_is_the_newest_model_a_preview_can_start_from(data, encoder, tmp_path):
    images, masks = data
    assert current_state([None, tmp_path / "missing.nwmodel", encoder], ["wire"]) == encoder
    preview = tmp_path / "preview.nwmodel"
    run(
        preview_slice(
            encoder, images, masks, images[0], preview, config=short(), class_names=["wire"]
        )
    )
    os.utime(encoder, ns=(1, 1))
    assert current_state([preview, None, encoder], ["wire"]) == preview
    # a segmenter of other classes cannot be continued: the encoder is the start
    assert current_state([preview, encoder], ["fibre"]) == encoder
    # a newer encoder (a new pretraining) wins over segmenters made on the old one
    os.utime(preview, ns=(0, 0))
    assert current_state([preview, encoder], ["wire"]) == encoder
    assert current_state([None], ["wire"]) is None


def test_a_segmenter_of_other_classes_is_not_continued(data, encoder, tmp_path):
    images, masks = data
    segmenter = tmp_path / "segmenter.nwmodel"
    run(
        preview_slice(
            encoder, images, masks, images[0], segmenter, config=short(), class_names=["wire"]
        )
    )
    _, result = run(
        preview_slice(
            segmenter,
            images,
            masks,
            images[0],
            tmp_path / "p.nwmodel",
            config=short(),
            class_names=["fibre"],
        )
    )
    assert not result.continued and result.mask_classes == ["background", "fibre"]
    config = replace(short(), continue_head=True)
    with pytest.raises(NanowireError, match="Cannot continue the segmenter"):
        list(
            train_segmenter(
                segmenter,
                images,
                masks,
                tmp_path / "x.nwmodel",
                class_names=["fibre"],
                config=config,
            )
        )


def test_strokes_a_preview_cannot_learn_from_are_refused_with_what_to_paint():
    empty = np.zeros((8, 8), np.uint8)
    with pytest.raises(NanowireError, match="No strokes to preview from"):
        check_strokes([empty])
    with pytest.raises(NanowireError, match="No strokes to preview from"):
        check_strokes([])
    one = empty.copy()
    one[2, 2] = 2
    with pytest.raises(NanowireError, match="only one class"):
        check_strokes([one, empty])
    both = one.copy()
    both[5, 5] = 1
    check_strokes([both])
