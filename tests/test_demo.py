"""The headless demo runs the whole workflow and writes a complete report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_nanowire.cli.main import main
from napari_nanowire.core.data.synthetic import generate_image, simulate_strokes


def test_strokes_lie_on_wires_and_background_only():
    item = generate_image("network", size=128, seed=3)
    strokes = simulate_strokes(item.mask, seed=1)
    assert set(np.unique(strokes)) == {0, 1, 2}
    assert np.all(item.mask[strokes == 2] == 1)
    assert np.all(item.mask[strokes == 1] == 0)
    # Sparse, as painted: at 128 px, seeds 0-5, strokes covered 9-41 % of the wire pixels and
    # 2-6 % of the background; bounds with margin.
    assert 0 < (strokes == 2).sum() / item.mask.sum() < 0.6
    assert 0 < (strokes == 1).sum() / (item.mask == 0).sum() < 0.12


@pytest.mark.slow  # 34 s under load
def test_demo_writes_models_tables_figures_and_report(tmp_path):
    out = tmp_path / "demo"
    code = main(
        ["demo", "--out", str(out), "--n-per-class", "3", "--size", "96", "--epochs", "1"]
        + ["--device", "cpu", "--quick"]
    )
    assert code == 0
    for name in ("encoder", "classifier", "segmenter"):
        assert (out / "models" / f"{name}.nwmodel").stat().st_size > 0
    for name in ("montage.png", "histograms.png", "report.md", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 12
    assert 0 <= summary["held_out_accuracy"] <= 1
    estimate = summary["estimated_accuracy"]  # the classifier's own, from its 8 labels
    assert 0 <= estimate["low"] <= estimate["estimate"] <= estimate["high"] <= 1
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 12
    assert {"image", "true_class", "class", "confidence"} <= set(predictions.columns)
    domains = pd.read_csv(out / "measurements" / "domains.csv")
    assert {"image", "width_median_nm", "length_nm"} <= set(domains.columns)
    report = (out / "report.md").read_text()
    assert "held-out classification accuracy" in report and "own estimate" in report


def test_demo_with_one_label_a_class_reports_that_it_cannot_estimate_accuracy(tmp_path):
    from napari_nanowire.core.demo import DemoConfig, run_demo

    config = DemoConfig(
        n_per_class=2, size=96, labels_per_class=1, pretrain_epochs=1, pretrain_steps_per_epoch=2,
        classifier_epochs=20, segmenter_steps=2, stroke_images=2, device="cpu",
    )  # fmt: skip
    summary = run_demo(tmp_path / "demo", config, log=lambda _: None)
    assert summary["estimated_accuracy"] == {}
    assert "own estimate: none" in (tmp_path / "demo" / "report.md").read_text()
