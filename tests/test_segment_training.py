"""Segmenter training: augmentation alignment, FixMatch loss, held-out validation, stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import PX, encoder_file
from napari_nanowire.core.data.synthetic import generate_dataset, simulate_strokes
from napari_nanowire.core.heads import seg_loop, segment
from napari_nanowire.core.heads.scale import working_from_meta
from napari_nanowire.core.heads.seg_augment import augment_labelled, consistency_loss, scale_jitter
from napari_nanowire.core.heads.seg_validation import (
    EarlyStop,
    fill_choice,
    holdout_split,
    stroke_holdout,
)
from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter
from napari_nanowire.core.model.modelfile import load_model


def blocky_targets(seed: int = 0) -> torch.Tensor:
    """(4, 32, 32) targets of 4 px blocks: classes 0-2 and unlabelled (-1)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(-1, 3, (4, 8, 8), generator=g)
    return small.repeat_interleave(4, 1).repeat_interleave(4, 2)


def test_scale_jitter_keeps_image_and_labels_aligned():
    targets = blocky_targets()
    images = (10.0 * targets).unsqueeze(1).float()  # the image encodes its own labels
    g = torch.Generator().manual_seed(1)
    out, labels = scale_jitter(images, targets, (0.7, 1.4), g)
    assert out.shape == images.shape and labels.shape == targets.shape
    assert labels.dtype == torch.int64 and labels.min() >= -1 and labels.max() <= 2
    assert not torch.equal(labels, targets)  # something moved
    # Inside a block bilinear sampling returns the block's value exactly; there the label
    # sampled at the same point must be that class. Blocks are 4 px, so most pixels qualify.
    value = out[:, 0] / 10
    inside = (value - value.round()).abs() < 1e-4
    labelled = labels >= 0
    agree = (value.round().long() == labels)[inside & labelled]
    assert (inside & labelled).float().mean() > 0.3
    assert agree.float().mean() > 0.98


def test_zooming_out_leaves_new_border_pixels_unlabelled():
    targets = torch.ones(2, 32, 32, dtype=torch.int64)
    images = torch.ones(2, 1, 32, 32)
    _, labels = scale_jitter(images, targets, (0.5, 0.5), torch.Generator().manual_seed(0))
    assert (labels[:, 0] == -1).all() and (labels[:, 16, 16] == 1).all()
    assert (labels == -1).float().mean() == pytest.approx(0.75, abs=0.05)


def test_labelled_augmentation_changes_intensities_not_labels_of_flat_crops():
    targets = blocky_targets(2)
    images = torch.randn(4, 1, 32, 32)
    out, labels = augment_labelled(images, targets, torch.Generator().manual_seed(0), (1.0, 1.0))
    assert torch.equal(labels, targets)  # scale 1: geometry unchanged
    assert not torch.allclose(out, images)


def test_consistency_loss_matches_hand_computation_on_confident_pixels_only():
    # Two pixels: the weak view is confident (0.95) on class 1 at the first, unsure (0.6)
    # at the second. Only the first contributes: -log softmax(strong)[1], divided by 2 pixels.
    weak = torch.tensor([[[[0.05, 0.4]], [[0.95, 0.6]]]])  # (1, 2, 1, 2)
    strong = torch.tensor([[[[0.3, -1.0]], [[1.5, 2.0]]]], requires_grad=True)
    loss = consistency_loss(strong, weak, threshold=0.9)
    expected = -math.log(math.exp(1.5) / (math.exp(0.3) + math.exp(1.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.all(strong.grad[..., 1] == 0) and torch.all(strong.grad[..., 0] != 0)
    assert consistency_loss(strong, weak, threshold=0.99).item() == 0.0


def test_consistency_loss_weighs_every_confident_class_equally():
    # Four pixels, all confident: three of class 0, one of class 1. Each class's mean
    # cross-entropy counts the same, times the confident share (1 here), so the one pixel of
    # class 1 weighs as much as the three of class 0 (plain FixMatch: a quarter of the loss).
    weak = torch.tensor([[[[0.95, 0.95, 0.95, 0.05]], [[0.05, 0.05, 0.05, 0.95]]]])
    strong = torch.tensor([[[[0.0, 0.5, 1.0, 0.0]], [[0.0, 0.0, 0.0, 2.0]]]])
    ce = -torch.log_softmax(strong, 1)
    bg = ce[0, 0, 0, :3].mean()
    fg = ce[0, 1, 0, 3]
    loss = consistency_loss(strong, weak, threshold=0.9)
    assert loss.item() == pytest.approx(((bg + fg) / 2).item(), rel=1e-6)


def test_early_stop_stops_on_a_plateau_and_keeps_the_best():
    stopper = EarlyStop(patience=3)
    scores = [0.2, 0.5, 0.6, 0.6, 0.59, float("nan"), 0.7]
    kept, stops = [], []
    for step, s in enumerate(scores):
        kept.append(stopper.update(step, s))
        stops.append(stopper.done)
    # A tie (0.6 again) keeps the newer weights but is no progress; 0.59 is worse.
    assert kept == [True, True, True, True, False, False, True]
    assert stops == [False, False, False, False, False, True, False]
    assert stopper.best == 0.7 and stopper.best_step == 6
    assert not EarlyStop(patience=0).done


def test_two_labelled_images_hold_one_out_whole():
    a, b = np.zeros((8, 8), np.int64), np.ones((8, 8), np.int64)
    b[:4] = 0
    split = holdout_split([a, b, np.full((8, 8), -1)], seed=0)
    assert split.held_out_image and split.val_image == 1  # the one with two classes
    assert (split.train_targets[1] == -1).all() and split.train_targets[0] is a
    assert np.array_equal(split.val_targets, b)


def test_one_stroked_image_holds_out_whole_strokes_of_every_class():
    item = generate_dataset(1, size=96, pixel_size_nm=PX, seed=3)[1]
    target = simulate_strokes(item.mask, 0).astype(np.int64) - 1
    held = stroke_holdout(target, np.random.default_rng(0))
    for c in (0, 1):
        assert (target[held] == c).any() and (target[~held] == c).any()
    share = held.sum() / (target >= 0).sum()
    assert 0.1 < share < 0.7
    split = holdout_split([target], seed=0)
    assert not split.held_out_image and split.val_image == 0
    assert not ((split.train_targets[0] >= 0) & (split.val_targets >= 0)).any()


def test_holes_are_filled_when_the_held_out_labels_say_so():
    ring = np.zeros((60, 60), np.uint8)  # a particle predicted as a thin ring, as nets do
    ring[8:32, 8:32] = 1
    ring[10:30, 10:30] = 0  # a 2 px wall: not solid enough to be filled by the ring rule
    inside = np.full((60, 60), -1)  # held-out strokes: the inside is particle, the outside not
    inside[18:22, 16:24], inside[2:4, 2:30] = 1, 0
    fill, scores = fill_choice(ring, inside, 2)
    assert fill and scores["val_iou_filled"] == 1.0 > scores["val_iou_clean"]
    enclosed = np.where(inside == 1, 0, inside)  # a network enclosing real background
    enclosed[8:10, 9:30] = 1
    fill, scores = fill_choice(ring, enclosed, 2)
    assert not fill and scores["val_iou_filled"] < scores["val_iou_clean"] == 1.0


def test_dense_mask_falls_back_to_blocks():
    target = np.zeros((64, 64), np.int64)
    target[20:40] = 1
    split = holdout_split([target], seed=1)
    assert split.val_image == 0 and "held out" in split.description
    assert {0, 1} <= set(np.unique(split.val_targets)) and {0, 1} <= set(
        np.unique(split.train_targets[0])
    )


def stroked_images(n: int, size: int = 48) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` small synthetic images with simulated strokes (1 = background, 2 = wire)."""
    items = generate_dataset(1, size=size, pixel_size_nm=PX, seed=5)[:n]
    strokes = [simulate_strokes(i.mask, k, stroke_px=16, brush_px=2) for k, i in enumerate(items)]
    return [i.image for i in items], strokes


def tiny_config(**changes) -> SegmenterConfig:
    """A few-step CPU config with 32 px crops."""
    settings = {"steps": 4, "tile": 32, "batch_size": 2, "unlabelled_batch": 2, "device": "cpu"}
    settings["validate_every"] = 2
    return SegmenterConfig(**{**settings, **changes})


def test_held_out_image_is_never_cropped_for_training(tmp_path, monkeypatch):
    images, strokes = stroked_images(3)
    unlabelled = generate_dataset(1, size=48, pixel_size_nm=PX, seed=9)[:2]
    seen = []
    real_crop = seg_loop.random_crop

    def spy(rng, image, *args, **kwargs):
        seen.append(image.copy())
        return real_crop(rng, image, *args, **kwargs)

    monkeypatch.setattr(seg_loop, "random_crop", spy)
    out = tmp_path / "seg.nwmodel"
    events = list(
        train_segmenter(
            encoder_file(),
            images,
            strokes,
            out,
            config=tiny_config(semi_supervised=True),
            unlabelled=[u.image for u in unlabelled],
        )
    )
    model_meta = load_model(out).meta
    meta = model_meta.segmenter.extra  # the validation record: split, curve, best step
    working = working_from_meta(model_meta)
    held = int(meta["validation"].split()[1])
    prepared = segment.working_frames([images[held]], [None], working)[0][0]
    others = segment.working_frames(images, [None] * 3, working)[0]
    assert len(seen) == 4 * (2 + 2)  # labelled and unlabelled crops of every step
    assert not any(np.array_equal(s, prepared) for s in seen)
    assert sum(any(np.array_equal(s, o) for s in seen) for o in others) == 2
    assert meta["n_unlabelled"] == 2 and len(meta["val_history"]) == 2
    assert [e.step for e in events if "val_iou" in e.metrics] == [2, 4, 4]
    scores = model_meta.segmenter.metrics  # choices made on the held-out labels
    filled = scores["val_iou_filled"] > scores["val_iou_clean"]
    assert model_meta.segmenter.postprocess["fill_holes"] == filled
    assert {"val_iou_refined", "val_iou_unrefined"} <= set(scores)
    assert model_meta.segmenter.postprocess["refine_intensity"]  # on by default
    assert model_meta.segmenter.postprocess["object_polarity"] in (-1, 0, 1)  # for its check
    best = [row[1] for row in meta["val_history"] if row[0] == meta["best_step"]]
    assert events[-1].metrics["val_iou"] == best[0] >= max(r[1] for r in meta["val_history"]) - 1e-3


def test_training_stops_on_a_validation_plateau(tmp_path, monkeypatch):
    images, strokes = stroked_images(2)
    monkeypatch.setattr(segment, "iou_dice", lambda *a, **k: (0.5, 0.6))  # a flat curve
    out = tmp_path / "seg.nwmodel"
    config = tiny_config(steps=100, validate_every=1, patience=3, semi_supervised=False)
    events = list(train_segmenter(encoder_file(), images, strokes, out, config=config))
    meta = load_model(out).meta.segmenter.extra
    # The first check sets the best; three ties (kept, no progress) stop at step 4.
    assert meta["steps_run"] == 4 and meta["best_step"] == 4
    assert "did not improve" in meta["stop_reason"] and "did not improve" in events[-1].message


def test_time_cap_ends_training(tmp_path):
    images, strokes = stroked_images(1)
    out = tmp_path / "seg.nwmodel"
    config = tiny_config(steps=1000, max_seconds=1e-6)
    events = list(train_segmenter(encoder_file(), images, strokes, out, config=config))
    meta = load_model(out).meta.segmenter.extra
    assert meta["steps_run"] == 1 and meta["stop_reason"].startswith("time cap")
    assert events[-1].done and "time cap" in events[-1].message


def test_training_crops_are_smaller_than_a_large_prediction_tile(tmp_path, monkeypatch):
    images, strokes = stroked_images(1, size=320)
    sizes = []
    real_crop = seg_loop.random_crop

    def spy(rng, image, tile, *args, **kwargs):
        sizes.append(tile)
        return real_crop(rng, image, tile, *args, **kwargs)

    monkeypatch.setattr(seg_loop, "random_crop", spy)
    out = tmp_path / "seg.nwmodel"
    config = tiny_config(tile=None, steps=1, batch_size=1, validation=False, working_downsample=1)
    list(train_segmenter(encoder_file(), images, strokes, out, config=config))
    meta = load_model(out).meta.segmenter
    assert sizes == [128] and meta.settings["crop"] == 128  # the 5x faster step (scale.py)
    assert meta.tile == 256  # prediction keeps the context of the larger tile
    with pytest.raises(segment.NanowireError, match="Training crop size 40"):
        list(train_segmenter(encoder_file(), images, strokes, out, config=tiny_config(crop=40)))
