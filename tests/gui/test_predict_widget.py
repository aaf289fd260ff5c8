"""The Predict widget's suggestions and refusals (the full path is in test_workflow.py)."""

from __future__ import annotations

import numpy as np

from napari_nanowire.core.predict import ClassPrediction
from napari_nanowire.gui.predict_widget import NEXT_MARK, ranked_table


def test_the_least_certain_unlabelled_slices_are_suggested():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]])
    labels = ["a", None, None, None, None]
    prediction = ClassPrediction(["a", "b"], probabilities)
    table = ranked_table(prediction, list("vwxyz"), labels, suggest=2)
    # slice 0 is the least certain but already labelled: slices 3 (0.55) and 2 (0.6) follow
    assert list(table.index[table[NEXT_MARK]]) == [2, 3]
    assert list(table["predicted"]) == ["a"] * 5
    np.testing.assert_allclose(table["confidence"], probabilities.max(1))
    np.testing.assert_allclose(table["prob_b"], probabilities[:, 1])
    assert table["entropy"].idxmax() == 0 and list(table["your label"]) == ["a", "", "", "", ""]


def test_predicting_without_a_model_says_to_train_one(viewer, dock, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_nanowire.gui.notify.show_error", shown.append)
    widget = dock("Predict")
    assert not widget.classify() and not widget.segment()
    assert "No classifier yet: train one in the Train widget" in shown[0]
    assert "No segmenter yet" in shown[1]
    assert widget.next_suggestion() is None  # nothing classified yet: a notice, no error
