"""Intensity refinement of segmenter probabilities: what it does, when training keeps it, and
that prediction applies it (issue 11: borders on real micrographs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_nanowire.core.heads.postprocess import PostProcess, postprocess_from_meta
from napari_nanowire.core.heads.refine import labelled_polarity, refine_probabilities
from napari_nanowire.core.heads.seg_validation import refine_scores
from napari_nanowire.core.model.metadata import ModelMeta, SegmenterMeta
from napari_nanowire.core.model.random_models import save_random_model
from napari_nanowire.core.predict import Predictor

YY, XX = np.mgrid[:96, :96]
DISC = (YY - 48) ** 2 + (XX - 48) ** 2 < 20**2
HALO = ndimage.binary_dilation(DISC, iterations=6)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def two_class(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p]).astype(np.float32)


def bright_disc(seed: int = 0) -> np.ndarray:
    return np.where(DISC, 1.0, 0.0) + np.random.default_rng(seed).normal(0, 0.3, DISC.shape)


def loose_probs() -> np.ndarray:
    """A net's answer that draws the disc with a 6 px halo, as nets from strokes do."""
    return two_class(np.where(DISC, 0.9, np.where(HALO, 0.7, 0.1)))


def test_refinement_pulls_a_loose_border_to_the_grey_level_edge():
    probs = loose_probs()
    refined = refine_probabilities(bright_disc(), probs)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-5)
    assert iou(probs[1] > 0.5, DISC) < 0.65  # 0.62: the halo
    assert iou(refined[1] > 0.5, DISC) > 0.9  # 0.94 measured


def test_refinement_follows_the_border_under_uneven_illumination():
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 < 30**2
    probs = two_class(
        np.where(disc, 0.9, np.where(ndimage.binary_dilation(disc, None, 6), 0.7, 0.1))
    )
    rng = np.random.default_rng(4)
    image = disc + xx / 256 * 3 + rng.normal(0, 0.3, disc.shape)  # background 3x the contrast
    flat = refine_probabilities(image, probs, flatten_px=64)[1] > 0.5
    tilted = refine_probabilities(image, probs, flatten_px=0)[1] > 0.5
    assert iou(flat, disc) > 0.93 > iou(tilted, disc)  # measured 0.96 and 0.86 (net: 0.72)


def test_refinement_changes_little_where_classes_share_grey_levels():
    probs = loose_probs()
    noise = np.random.default_rng(1).normal(0, 1, DISC.shape)
    refined = refine_probabilities(noise, probs)
    flipped = ((refined[1] > 0.5) != (probs[1] > 0.5)).mean()
    assert flipped < 0.02  # 0.005 measured: nothing in the grey levels to follow


def test_refinement_handles_more_than_two_classes():
    image = bright_disc() + np.where(XX > 80, -1.0, 0.0)
    probs = np.stack(
        [
            np.where(DISC | (XX > 80), 0.2, 0.6),
            np.where(HALO, 0.6, 0.2),
            np.where(XX > 80, 0.6, 0.2),
        ]
    ).astype(np.float32)
    probs /= probs.sum(0)
    refined = refine_probabilities(image, probs).argmax(0)
    assert iou(refined == 1, DISC) > 0.9
    assert iou(refined == 2, XX > 80) > 0.9


def test_held_out_scores_record_the_refinement_both_ways():
    targets = np.full(DISC.shape, -1)
    targets[40:56, 40:56] = 1
    targets[:10] = 0
    targets[HALO & ~ndimage.binary_dilation(DISC, iterations=2)] = 0  # in the halo
    probs = loose_probs()
    scores = refine_scores(probs, refine_probabilities(bright_disc(), probs), targets)
    assert scores["val_iou_unrefined"] < 0.5  # the halo labelled background is marked object
    assert scores["val_iou_refined"] == 1.0


def test_the_cut_removes_specks_and_smooths_a_noisy_border():
    noisy = np.where(DISC, 1.0, 0.0) + np.random.default_rng(3).normal(0, 1.0, DISC.shape)
    unsure = two_class(np.where(DISC, 0.6, 0.4))  # a net that barely separates them
    loose, cut = (refine_probabilities(noisy, unsure, smoothness=s).argmax(0) for s in (0, 3))
    assert ndimage.label(loose)[1] > 5 and ndimage.label(cut)[1] == 1  # measured 13 and 1
    assert iou(cut == 1, DISC) > iou(loose == 1, DISC) + 0.04  # 0.935 and 0.865


def test_an_answer_on_the_wrong_side_of_the_grey_levels_is_replaced_by_a_threshold():
    swapped = two_class(np.where(DISC, 0.1, 0.9))  # the net calls the dark background object
    kept = refine_probabilities(bright_disc(), swapped, polarity=0).argmax(0) == 1
    checked = refine_probabilities(bright_disc(), swapped, polarity=1).argmax(0) == 1
    assert iou(kept, DISC) < 0.1 and iou(checked, DISC) > 0.9  # measured 0.0 and 0.96
    same_side = refine_probabilities(bright_disc(), loose_probs(), polarity=-1).argmax(0) == 1
    assert iou(same_side, ~DISC) > 0.9  # dark objects expected: the bright disc is background


def test_an_answer_without_grey_contrast_is_replaced_by_a_threshold_when_the_polarity_is_known():
    blanket = two_class(np.full(DISC.shape, 0.8))  # a net that calls every pixel object
    kept = refine_probabilities(bright_disc(), blanket, polarity=0).argmax(0) == 1
    checked = refine_probabilities(bright_disc(), blanket, polarity=1).argmax(0) == 1
    assert kept.all() and iou(checked, DISC) > 0.9  # measured: all object, and 0.98


def test_the_labelled_images_polarity_needs_them_to_agree():
    dark = 1.0 - bright_disc()
    strokes = np.full(DISC.shape, -1)  # unlabelled
    strokes[44:52, 44:52] = 1  # inside the disc
    strokes[:4] = 0  # background
    both = [strokes, strokes]
    assert labelled_polarity([bright_disc(), bright_disc(1)], both) == 1
    assert labelled_polarity([dark, dark], both) == -1
    assert labelled_polarity([bright_disc(), dark], both) == 0  # a mixed collection: no check
    objects_only = np.where(strokes == 0, -1, strokes)
    assert labelled_polarity([bright_disc(), dark], [strokes, objects_only]) == 1
    assert labelled_polarity([dark], [objects_only]) == 0


def test_prediction_refines_as_the_model_file_or_the_caller_says(tmp_path, monkeypatch):
    from napari_nanowire.core.predict import predictor as module

    model = save_random_model(tmp_path / "model.nwmodel", tile=32)
    monkeypatch.setattr(module, "probability_strips", lambda *a, **k: iter([(0, loose_probs())]))
    predictor = Predictor.load(model, device="cpu")
    assert not predictor.postprocess.refine_intensity  # files without the setting: off
    raw = predictor.segment(bright_disc()).mask
    refined = predictor.configure(refine_intensity=True).segment(bright_disc()).mask
    assert iou(raw > 0, DISC) < 0.65 and iou(refined > 0, DISC) > 0.9
    unrefined = predictor.configure(refine_intensity=False).segment(bright_disc()).mask
    assert np.array_equal(unrefined, raw)


@pytest.mark.parametrize("stored,polarity", [(True, -1), (False, 0)])
def test_the_refinement_setting_travels_in_the_model_file(stored, polarity):
    post = PostProcess(refine_intensity=stored, object_polarity=polarity)
    meta = ModelMeta(encoder="tiny", segmenter=SegmenterMeta(tile=64, postprocess=post.to_meta()))
    assert postprocess_from_meta(meta) == post
