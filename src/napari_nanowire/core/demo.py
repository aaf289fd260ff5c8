"""The headless demo: the whole workflow on built-in synthetic data, ending in a report.

Steps, each with the same core functions the GUI and the CLI use: generate a labelled
synthetic TEM set and read it back through the reader; pretrain an encoder on all images
without labels (SSL); train a linear classifier from a few labelled images per class and
classify every image; train a U-Net segmenter from a few painted-like strokes and segment
every image; measure wire widths and lengths in nm on the predicted masks and compare with the
generator's truth. Everything lands in ``out_dir`` with ``report.md`` on top.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data.synthetic import (
    CLASSES,
    WIDTH_RANGE_NM,
    generate_dataset,
    simulate_strokes,
    write_dataset,
)
from .heads.calibrate import describe_confidence
from .heads.classify import ClassifierConfig, train_classifier
from .heads.segment import SegmenterConfig, iou_dice, train_segmenter
from .io import read_images, write_bytes_atomic, write_csv
from .measure import MeasureOptions, measure_masks, write_tables
from .measure.selection import counted
from .predict import Predictor
from .progress import Progress, format_eta
from .report import save_histograms, save_montage
from .ssl.pretrain import PretrainConfig, pretrain

MIN_WIRE_AREA_NM2 = 2 * WIDTH_RANGE_NM[0] ** 2
"""Domains smaller than this are specks, not wires: the generator's thinnest wire (5 nm) shows
at least twice its width inside the frame. Measured on the demo's predicted masks, half the
domains were 1-25 nm^2 specks of background texture, which pulled the median width from
12.3 nm (wires) to 5.8 nm."""


@dataclass
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on a laptop CPU."""

    n_per_class: int = 12
    size: int = 256
    pixel_size_nm: float = 1.0
    difficulty: float = 0.3
    labels_per_class: int = 2
    stroke_images: int = 4
    pretrain_epochs: int = 8
    pretrain_steps_per_epoch: int | None = 10
    classifier_epochs: int = 300
    segmenter_steps: int = 60
    device: str = "auto"
    seed: int = 0


def _drain(job: Iterator[Progress], log: Callable[[str], None], every: int = 25) -> Progress:
    """Run a job to its end, logging now and then; return its last event."""
    last = None
    for event in job:
        last = event
        if event.done or event.step % every == 0:
            loss = f" loss {event.loss:.3f}" if event.loss is not None else ""
            log(
                f"  {event.job} step {event.step}/{event.total_steps}{loss}"
                f" ({format_eta(event.eta_s)} left) {event.message}".rstrip()
            )
    return last


def _split(labels: list[str], per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` randomly chosen images of every class (the 'labelled' ones)."""
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(np.array(labels) == c), per_class, replace=False)
        for c in sorted(set(labels))
    ]
    return np.sort(np.concatenate(picks))


def run_demo(
    out_dir: str | Path, config: DemoConfig | None = None, log: Callable[[str], None] = print
) -> dict:
    """Run the whole workflow on synthetic data; write models, tables, figures and a report.

    Returns the summary that is also written to ``out_dir/summary.json``.
    """
    config = config or DemoConfig()
    out = Path(out_dir)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    items = generate_dataset(
        config.n_per_class,
        size=config.size,
        pixel_size_nm=config.pixel_size_nm,
        difficulty=config.difficulty,
        seed=config.seed,
    )
    data_dir = write_dataset(items, out / "data")
    stack = read_images([data_dir / "images" / f"{item.name}.tif" for item in items])
    images = [np.asarray(frame) for frame in stack.data]
    labels = [item.label for item in items]
    px = [stack.pixel_size_nm] * len(images)
    log(f"1/5 data: {len(images)} images of {config.size} px at {stack.pixel_size_nm} nm/px")
    lap("data", t0)

    t0 = time.perf_counter()
    encoder_path = out / "models" / "encoder.nwmodel"
    ssl = PretrainConfig(
        method="simclr",
        encoder="tiny",
        epochs=config.pretrain_epochs,
        batch_size=64,
        image_size=96,
        steps_per_epoch=config.pretrain_steps_per_epoch,
        device=config.device,
        seed=config.seed,
    )
    log(f"2/5 pretraining a {ssl.encoder} encoder with {ssl.method} on all images, no labels")
    last = _drain(pretrain(images, ssl, encoder_path, pixel_sizes_nm=px, labels=labels), log)
    ssl_metrics = last.metrics
    lap("pretrain", t0)

    t0 = time.perf_counter()
    train_idx = _split(labels, config.labels_per_class, config.seed)
    test_idx = np.setdiff1d(np.arange(len(images)), train_idx)
    classifier_path = out / "models" / "classifier.nwmodel"
    log(f"3/5 classifier from {config.labels_per_class} labelled images per class")
    trained = _drain(
        train_classifier(
            encoder_path,
            [images[i] for i in train_idx],
            [labels[i] for i in train_idx],
            classifier_path,
            pixel_sizes_nm=[px[i] for i in train_idx],
            config=ClassifierConfig(
                epochs=config.classifier_epochs, device=config.device, seed=config.seed
            ),
        ),
        log,
    )
    classes = Predictor.load(classifier_path, config.device).classify(images, px)
    predictions = classes.table()
    predictions.insert(0, "image", [item.name for item in items])
    predictions.insert(1, "true_class", labels)
    predictions.insert(2, "labelled", np.isin(np.arange(len(images)), train_idx))
    write_csv(out / "predictions.csv", predictions)
    held_out = predictions.iloc[test_idx]
    accuracy = float((held_out["class"] == held_out["true_class"]).mean())
    log(f"  {describe_confidence(trained.metrics)}")
    log(f"  held-out accuracy {accuracy:.2f} on {len(test_idx)} images")
    lap("classify", t0)

    t0 = time.perf_counter()
    stroke_idx = _split(labels, 1, config.seed + 1)[: config.stroke_images]
    strokes = [simulate_strokes(items[i].mask, config.seed + int(i)) for i in stroke_idx]
    segmenter_path = out / "models" / "segmenter.nwmodel"
    log(f"4/5 segmenter from strokes on {len(stroke_idx)} images")
    _drain(
        train_segmenter(
            encoder_path,
            [images[i] for i in stroke_idx],
            strokes,
            segmenter_path,
            pixel_sizes_nm=[px[i] for i in stroke_idx],
            class_names=["wire"],
            config=SegmenterConfig(
                steps=config.segmenter_steps, device=config.device, seed=config.seed
            ),
        ),
        log,
    )
    segmenter = Predictor.load(segmenter_path, config.device)
    masks = [segmenter.segment(image, p).mask for image, p in zip(images, px, strict=True)]
    scores = [iou_dice(m, item.mask, 2) for m, item in zip(masks, items, strict=True)]
    iou = float(np.median([s[0] for s in scores]))
    log(f"  median IoU against the true masks {iou:.2f}")
    lap("segment", t0)

    t0 = time.perf_counter()
    options = MeasureOptions(class_names={1: "wire"}, min_area_nm2=MIN_WIRE_AREA_NM2)
    domains, summary = measure_masks(
        [(item.name, m, p) for item, m, p in zip(items, masks, px, strict=True)], options
    )
    true_domains, _ = measure_masks(
        [(item.name, item.mask, p) for item, p in zip(items, px, strict=True)], options
    )
    write_tables(domains, summary, out / "measurements", options)
    # Histograms and medians of the domains the summary counts (not those below the minimum).
    domains, true_domains = (d[counted(d)] for d in (domains, true_domains))
    save_histograms(
        {"predicted masks": domains, "true masks": true_domains},
        ["width_median_nm", "length_nm", "area_nm2"],
        out / "histograms.png",
    )
    truth = pd.concat([item.wires for item in items])
    lap("measure", t0)

    picks = [i for c in CLASSES for i in [j for j in test_idx if labels[j] == c][:3]]
    titles = [
        f"{items[i].name}\n→ {predictions['class'].iloc[i]} {predictions['confidence'].iloc[i]:.0%}"
        for i in picks
    ]
    save_montage(
        [images[i] for i in picks],
        titles,
        out / "montage.png",
        pixel_size_nm=config.pixel_size_nm,
        ncols=6,
        overlays=[masks[i] for i in picks],
    )

    result = {
        "images": len(images),
        "pixel_size_nm": stack.pixel_size_nm,
        "labelled_images_per_class": config.labels_per_class,
        "held_out_accuracy": round(accuracy, 3),
        "estimated_accuracy": {  # empty with one labelled image a class: nothing held out
            key: round(float(trained.metrics[f"cv_accuracy{end}"]), 3)
            for key, end in (("estimate", ""), ("low", "_low"), ("high", "_high"))
            if f"cv_accuracy{end}" in trained.metrics
        },
        "ssl_final": {k: round(float(v), 4) for k, v in ssl_metrics.items()},
        "segmenter_stroke_images": len(stroke_idx),
        "median_iou": round(iou, 3),
        "median_width_nm": {
            "predicted": round(float(domains["width_median_nm"].median()), 2),
            "true_masks": round(float(true_domains["width_median_nm"].median()), 2),
            "generator": round(float(truth["width_nm"].median()), 2),
        },
        "percolating_images": {
            "predicted": int(summary["percolates_x"].sum()),
            "truth": int(sum(item.percolates_x for item in items)),
        },
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
        "config": asdict(config),
    }
    write_bytes_atomic(out / "summary.json", json.dumps(result, indent=2).encode())
    write_bytes_atomic(out / "report.md", _report(result, predictions, test_idx).encode())
    log(f"5/5 report: {out / 'report.md'}")
    return result


def _report(result: dict, predictions: pd.DataFrame, test_idx: np.ndarray) -> str:
    """The demo's report as Markdown."""
    held_out = predictions.iloc[test_idx]
    confusion = pd.crosstab(held_out["true_class"], held_out["class"])
    widths, estimate = result["median_width_nm"], result["estimated_accuracy"]
    return "\n".join(
        [
            "# napari-nanowire demo report",
            "",
            f"{result['images']} synthetic TEM images at {result['pixel_size_nm']} nm/px; "
            f"{result['labelled_images_per_class']} labelled images per class; segmenter "
            f"trained from strokes on {result['segmenter_stroke_images']} images.",
            "",
            f"- held-out classification accuracy: **{result['held_out_accuracy']:.2f}** "
            f"(chance {1 / predictions['true_class'].nunique():.2f}); the classifier's own "
            + (
                f"estimate from its labelled images, before seeing these: "
                f"{estimate['estimate']:.2f}, likely {estimate['low']:.2f} to "
                f"{estimate['high']:.2f}"
                if estimate
                else "estimate: none (one labelled image a class leaves none to hold out)"
            ),
            f"- median IoU of predicted wire masks: **{result['median_iou']:.2f}**",
            f"- median wire width: predicted {widths['predicted']} nm, measured on true masks "
            f"{widths['true_masks']} nm, generator truth {widths['generator']} nm (domains "
            f"under {MIN_WIRE_AREA_NM2:g} nm² are specks and not measured)",
            f"- images percolating in x: predicted {result['percolating_images']['predicted']}, "
            f"truth {result['percolating_images']['truth']}",
            f"- time per step (s): {result['seconds']}",
            "",
            "## Confusion matrix (held-out images; rows true, columns predicted)",
            "",
            f"```\n{confusion}\n```",
            "",
            "![held-out images with predicted class and mask](montage.png)",
            "",
            "![domain sizes](histograms.png)",
            "",
            "Tables: predictions.csv, measurements/domains.csv, measurements/summary.csv; "
            "models in models/.",
            "",
        ]
    )
