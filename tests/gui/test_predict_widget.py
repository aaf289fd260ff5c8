"""The Predict widget's suggestions and refusals (the full path is in test_workflow.py)."""

from __future__ import annotations

import numpy as np

from napari_nanowire.core.predict import NEXT_MARK, ClassPrediction, ranked_table


def test_the_least_certain_unlabelled_slices_are_suggested():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]])
    labels = ["a", None, None, None, None]
    prediction = ClassPrediction(["a", "b"], probabilities)
    table = ranked_table(prediction, list("vwxyz"), labels, suggest=2)
    # slice 0 is the least certain but already labelled: slices 3 (0.55) and 2 (0.6) follow
    assert list(table.index[table[NEXT_MARK].notna()]) == [2, 3]
    assert list(table[NEXT_MARK].fillna(0)) == [0, 0, 2, 1, 0]  # the least certain first
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


def ranked_widget(viewer, dock):
    """The Predict widget on a 5-slice stack after classifying it: slice 0 labelled, slices 3,
    2, 1 (least certain first) ranked "label next" 1, 2, 3."""
    layer = viewer.add_image(np.zeros((5, 16, 16), np.float32), name="stack")
    widget = dock("Predict")
    widget.image.value = layer
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.5, 0.5], [0.99, 0.01]])
    labels = ["a", None, None, None, None]
    widget.predictions = ranked_table(
        ClassPrediction(["a", "b"], probabilities), list("vwxyz"), labels, suggest=3
    )
    return layer, widget


def test_go_to_next_suggestion_follows_the_rank_not_the_slice_order(viewer, dock):
    from napari_nanowire.gui.state import LABELS_KEY
    from napari_nanowire.gui.table import format_cell

    layer, widget = ranked_widget(viewer, dock)
    assert list(widget.predictions[NEXT_MARK].fillna(0)) == [0, 3, 2, 1, 0]
    shown = [format_cell(rank) for rank in widget.predictions[NEXT_MARK]]
    assert shown == ["", "3", "2", "1", ""]  # no rank for slices not suggested
    assert widget.next_suggestion() == 3  # rank 1, though slices 1 and 2 come first
    assert viewer.dims.point[0] == 3
    layer.metadata[LABELS_KEY] = ["a", None, None, "b", None]  # the user labelled it
    assert widget.next_suggestion() == 2


def test_the_table_sorts_by_a_column_and_a_row_click_shows_that_slice(viewer, dock):
    from qtpy.QtCore import Qt

    _, widget = ranked_widget(viewer, dock)
    widget.model.set_frame(widget.predictions)
    assert list(widget.model.frame["slice"]) == [0, 1, 2, 3, 4]  # as given until asked
    column = list(widget.predictions.columns).index(NEXT_MARK)
    widget.table.sortByColumn(column, Qt.SortOrder.AscendingOrder)
    assert list(widget.model.frame["slice"]) == [3, 2, 1, 0, 4]  # ranks 1-3, then the rest
    widget._go_to_row(widget.model.index(0, 0))
    assert viewer.dims.point[0] == 3
    widget.model.set_frame(widget.predictions)  # a refresh (a new label) keeps the order
    assert list(widget.model.frame["slice"]) == [3, 2, 1, 0, 4]
    widget.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    assert list(widget.model.frame["slice"])[:3] == [1, 2, 3]


def test_a_lazy_stack_is_predicted_slice_by_slice_never_loaded_whole(
    viewer, dock, qtbot, tmp_path, monkeypatch
):
    import weakref

    import dask.array as da
    import tifffile

    from conftest import wait_for_job
    from napari_nanowire.core.io import reading as io
    from napari_nanowire.core.model.random_models import save_random_model

    stack = np.random.default_rng(0).random((6, 64, 64), dtype=np.float32)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, stack, imagej=True, compression="zlib", resolution=(0.5, 0.5),
                     metadata={"unit": "nm", "axes": "ZYX"})  # fmt: skip
    monkeypatch.setattr(io, "LAZY_BYTES", 0)  # as if the file were larger than memory
    (layer,) = viewer.open(path, plugin="napari-nanowire")
    assert isinstance(layer.data, da.Array)  # the reader passed the lazy array through
    model = save_random_model(tmp_path / "model.nwmodel", tile=32)
    widget = dock("Predict")
    widget.state.set_model("classifier", model)
    widget.state.set_model("segmenter", model)
    widget.reset_choices()
    widget.image.value = layer
    reads, alive, most = [], [0], [0]  # ndim of each read; arrays read and not yet freed
    to_numpy = da.Array.__array__

    def counted(self, *args, **kwargs):
        out = to_numpy(self, *args, **kwargs)
        reads.append(self.ndim)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(out, lambda: alive.__setitem__(0, alive[0] - 1))
        return out

    monkeypatch.setattr(da.Array, "__array__", counted)
    assert widget.classify()
    wait_for_job(qtbot, widget)
    widget.scope.value = "all"
    assert widget.segment()
    wait_for_job(qtbot, widget)
    assert reads.count(2) >= 12 and set(reads) == {2}  # slice by slice, never the stack
    # measured 2 alive at most (the slice in use while the next is read); reading the whole
    # stack first (as_stack(data)) measured all 6. Bound 3 (napari may hold one it shows).
    assert most[0] <= 3
    assert len(widget.predictions) == 6
    assert viewer.layers["big segmentation"].data.shape == (6, 64, 64)


def test_a_predicted_mask_can_be_undone_and_names_its_classes(viewer, dock):
    widget = dock("Predict")
    layer = viewer.layers["tiny"]
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, :] = 1
    seg = widget._show_masks(layer, ([2], [mask], ["background", "wire"]))
    assert seg.data[2].sum() == mask.sum() and not seg.data[[0, 1, 3]].any()
    assert list(seg.features["class"]) == ["background", "wire"]  # the status bar names them
    seg.undo()
    assert not seg.data.any()


def test_suggestions_are_spread_over_the_features_not_near_duplicates():
    # Slices 1 and 2 are near-duplicates (same features), both very uncertain; slice 3 is a
    # little more certain but elsewhere in feature space: it is picked instead of the twin.
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.51, 0.49], [0.6, 0.4], [0.95, 0.05]])
    features = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.01], [5.0, -3.0], [0.2, 0.1]])
    labels = ["a", None, None, None, None]
    plain = ranked_table(ClassPrediction(["a", "b"], probabilities), list("vwxyz"), labels, 2)
    spread = ranked_table(
        ClassPrediction(["a", "b"], probabilities, features), list("vwxyz"), labels, 2
    )
    assert list(plain.index[plain[NEXT_MARK].notna()]) == [1, 2]
    picked = set(spread.index[spread[NEXT_MARK].notna()])
    assert 3 in picked and len(picked & {1, 2}) == 1


def test_the_clean_up_asked_for_in_the_form_is_what_segmenting_uses(
    viewer, dock, qtbot, tmp_path, monkeypatch
):
    from conftest import wait_for_job
    from napari_nanowire.core.model.random_models import save_random_model
    from napari_nanowire.core.predict import Predictor

    widget = dock("Predict")
    assert widget.cleanup_options() == {"postprocess": True}  # the model's sizes by default
    widget.min_size.value = 50.0
    widget.fill_holes.value = "yes"
    widget.refine.value = "no"
    asked = widget.cleanup_options()
    assert asked == {
        "postprocess": True,
        "min_object_nm2": 50.0,
        "min_hole_nm2": 50.0,
        "min_object_px2": 50.0,
        "min_hole_px2": 50.0,
        "fill_holes": True,
        "refine_intensity": False,
    }
    used = []
    configure = Predictor.configure
    monkeypatch.setattr(
        Predictor, "configure", lambda self, **kw: used.append(kw) or configure(self, **kw)
    )
    model = save_random_model(tmp_path / "model.nwmodel", tile=32)
    widget.state.set_model("segmenter", model)
    widget.reset_choices()
    widget.image.value = viewer.layers["tiny"]
    assert widget.segment()
    wait_for_job(qtbot, widget)
    assert used == [asked]
    widget.clean.value = False
    assert widget.cleanup_options() == {"postprocess": False}
