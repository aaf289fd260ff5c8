"""The mask conventions in one place: training vs dense values, training targets, checks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.masks import IGNORE, check_shape, class_targets, dense, label_mask

STROKES = np.array([[0, 1, 2, 3]], np.uint8)
"""A training mask: not labelled, background, class 1, class 2."""


def test_training_and_dense_masks_agree_on_what_each_value_means():
    # the same pixels as dense mask values and as training targets
    assert dense(STROKES, training=True).tolist() == [[0, 0, 1, 2]]
    assert dense(STROKES, training=True).dtype == np.uint8
    assert class_targets(STROKES).tolist() == [[IGNORE, 0, 1, 2]]
    # a dense mask is used as it is: every pixel labelled, 0 = background
    assert dense(STROKES, training=False).tolist() == STROKES.tolist()
    assert class_targets(STROKES, dense_mask=True).tolist() == [[0, 1, 2, 3]]
    # class k of a training mask (value k + 1) is dense value k is target k
    painted = STROKES >= 2
    assert (dense(STROKES, True)[painted] == class_targets(STROKES)[painted]).all()


def test_label_mask_accepts_whole_floats_and_booleans_for_measurement():
    assert label_mask(np.array([[0.0, 2.0]])).tolist() == [[0, 2]]
    assert label_mask(np.array([[True, False]])).dtype == np.uint8


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.zeros((2, 8, 8), np.uint8), "2D"),
        (np.zeros((0, 4), np.uint8), "non-empty"),
        (np.full((4, 4), 0.5), "threshold"),
        (np.full((4, 4), -1), "negative"),
        (np.array([["a"]]), "integer class values"),
    ],
)
def test_bad_masks_are_refused_with_a_reason(mask, message):
    with pytest.raises(NanowireError, match=message):
        label_mask(mask)


def test_training_targets_refuse_float_masks():
    with pytest.raises(NanowireError, match="integer"):
        class_targets(np.zeros((4, 4), np.float32))


def test_shape_check_names_mask_and_image():
    check_shape((4, 5), (4, 5), "mask a.tif", "image a.tif")
    with pytest.raises(NanowireError, match=r"mask a\.tif is \(4, 4\) px but image a\.tif"):
        check_shape((4, 4), (4, 5), "mask a.tif", "image a.tif")
