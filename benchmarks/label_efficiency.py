"""Label efficiency: how few labels the classifier and the segmenter need, on synthetic data
and on real micrographs.

Classification: accuracy on held-out images against labelled images per class (1, 2, 4, 8, 16)
for the classifier's linear head on several feature sets, each from a SimCLR encoder pretrained
here on the unlabelled pool (labels unused; ``--ssl-methods`` adds Barlow Twins) and from a
randomly initialised one (same architecture and input): "single" = pooled tiles at the working
scale (the classifier before issue 12), "multi" = scales 1, 1/2, 1/4 concatenated, "multi+desc"
= multi plus the hand-made texture descriptors, "multi+desc+spec" = that plus the scale
spectrum (the classifier's default); "classical" = the texture descriptors alone on the raw
image (the baseline) and "spectrum" = the scale spectrum alone. Each point is the median and
interquartile range over random label draws (the same draws for every method), as in Lu et
al. 2022, Fig. 5. For the descriptor sets, the spectrum and the classical features the run also
reports the expected calibration error (ECE, 10 bins) of the held-out images with the
temperature fitted by cross-validation on the labelled ones (and, to tell estimation noise from
what one temperature can do, with the temperature that suits the test images best), how often
the accuracy on the test images lies in the range the labelled images give for it, and the
accuracy of a prototype (nearest class mean) head. "Label next": accuracy as a user labels the
Predict widget's suggestions, from one image a class, against random and class-balanced picks.

Real data (``--emps DIR``, the EMPS sample: ``images/`` and 16-bit instance masks in
``segmaps/``): image classes are made from the true masks (see :func:`emps_class`: elongated,
few, several, many particles), SimCLR is pretrained on the 150 images, and the test images of
each draw are all images not labelled in it. Also writes benchmarks/out/emps_predictions.png
(image | true mask and class | predicted class and confidence) to look at; the pixels are
crops of published figures, so the picture stays in out/ and out of the repository.

Segmentation (synthetic only; skipped with ``--classify-only``): foreground IoU and Dice on
held-out images against labelled images (1, 2, 5, 10), trained from dense masks or from
simulated strokes, on the SimCLR and the random encoder.

Defaults are sized for a 2-core CPU; ``--full`` is the GPU-size run. On a shared machine set
OPENBLAS_NUM_THREADS=1 too: the cross-validation refits are many tiny numpy problems.

Usage: .venv/bin/python benchmarks/label_efficiency.py [--full] [--quick] [--classify-only]
       .venv/bin/python benchmarks/label_efficiency.py --emps ../shared/data/emps_train_sample
       (add --encoder resnet18 --image-size 112 --init imagenet to start from ImageNet weights,
       which must be in the torch cache; see README, "Starting from pretrained weights")
Writes benchmarks/out/label_efficiency*.json and *.csv and the plot
benchmarks/label_efficiency.png (synthetic, with segmentation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.special import softmax
from scipy.stats import mannwhitneyu
from skimage.draw import line
from skimage.measure import regionprops
from skimage.morphology import skeletonize
from skimage.segmentation import clear_border

from napari_nanowire.core.data.synthetic import CLASSES, generate_dataset
from napari_nanowire.core.heads.calibrate import expected_calibration_error, fit_temperature
from napari_nanowire.core.heads.classify import (
    ClassifierConfig,
    FeatureRecipe,
    classifier_input,
    column_weights,
    measurement_pixel_size,
    train_classifier,
)
from napari_nanowire.core.heads.linear import (
    block_weights,
    cross_validate,
    fit_linear_head,
    head_logits,
)
from napari_nanowire.core.heads.morph_features import (
    image_descriptors,
    mask_features,
)
from napari_nanowire.core.heads.scalebar import fill_annotations
from napari_nanowire.core.heads.segment import SegmenterConfig, iou_dice, train_segmenter
from napari_nanowire.core.io import file_frames
from napari_nanowire.core.model.encoders import build_encoder, load_encoder
from napari_nanowire.core.model.modelfile import load_model, save_model
from napari_nanowire.core.predict import Predictor, entropy, label_next
from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

HERE = Path(__file__).parent
OUT = HERE / "out"
PLOT = HERE / "label_efficiency.png"
SEG_COLORS = {"simclr": "#0072b2", "barlow": "#009e73", "random": "#d55e00"}
PRODUCT = "simclr multi+desc+spec"
"""The classifier's default features (multi-scale tiles and descriptors) on a SimCLR encoder."""


@dataclass
class Settings:
    """Everything that sizes a run (recorded in the JSON)."""

    size: int = 128
    pixel_size_nm: float = 2.0
    difficulty: float = 0.5
    pool_per_class: int = 40
    test_per_class: int = 25
    encoder: str = "tiny"
    image_size: int = 64
    init: str | None = None
    """Starting weights of the pretrained encoders: None (random), "imagenet" or a state-dict
    file (``pretrain --init``); with it the starting weights without SSL are compared too."""
    ssl_methods: tuple[str, ...] = ("simclr", "barlow")
    ssl_epochs: int = 200
    ssl_batch: int = 64
    labels_per_class: tuple[int, ...] = (1, 2, 4, 8, 16)
    splits: int = 20
    seg_images: tuple[int, ...] = (1, 2, 5, 10)
    seg_methods: tuple[str, ...] = ("simclr", "random")
    seg_repeats: int = 3
    seg_steps: int = 120
    seg_tile: int = 64
    seg_test: int = 12
    device: str = "cpu"
    seed: int = 0


FULL = Settings(
    size=256,
    pool_per_class=100,
    test_per_class=50,
    encoder="resnet18",
    image_size=128,
    ssl_epochs=200,
    ssl_batch=128,
    splits=50,
    seg_methods=("simclr", "barlow", "random"),
    seg_repeats=5,
    seg_steps=1000,
    seg_tile=128,
    seg_test=40,
    device="auto",
)
QUICK = Settings(
    size=96,
    pool_per_class=16,
    test_per_class=8,
    ssl_epochs=2,
    splits=3,
    seg_images=(1, 2),
    seg_repeats=1,
    seg_steps=10,
    seg_test=4,
    labels_per_class=(1, 2, 4),
)


# --- encoders ------------------------------------------------------------------------------


def pretrain_encoders(
    images, pixel_sizes, s: Settings, workdir: Path
) -> tuple[dict[str, Path], dict]:
    """Encoders pretrained on the unlabelled images (``s.ssl_methods``), plus a random one and,
    with ``s.init``, the starting weights themselves ("start")."""
    paths, seconds = {}, {}
    for method in s.ssl_methods:
        config = PretrainConfig(
            method=method,
            encoder=s.encoder,
            epochs=s.ssl_epochs,
            batch_size=s.ssl_batch,
            image_size=s.image_size,
            device=s.device,
            seed=s.seed,
            init=s.init,
        )
        paths[method] = workdir / f"{method}.nwmodel"
        start = time.perf_counter()
        for event in pretrain(images, config, paths[method], pixel_sizes_nm=pixel_sizes):
            last = event
        seconds[method] = round(time.perf_counter() - start, 1)
        print(f"pretrained {method}: {last.step} steps in {seconds[method]:.0f} s, {last.metrics}")
    for name, init in {"random": None, **({"start": s.init} if s.init else {})}.items():
        other = load_model(paths[s.ssl_methods[0]])  # same meta (input size, zoom)
        torch.manual_seed(s.seed)
        other.set_part("encoder", build_encoder(s.encoder, init))
        paths[name] = save_model(other, workdir / f"{name}.nwmodel")
    return paths, seconds


def encoder_features(path: Path, images, pixel_sizes, s: Settings) -> dict[str, np.ndarray]:
    """Feature blocks as the product's classifier computes them (its :class:`FeatureRecipe`).

    ``single``: pooled tiles at the working scale only (the classifier before issue 12);
    ``multi``: scales 1, 1/2, 1/4 concatenated; ``descriptors``: the hand-made image
    descriptors of the same prepared images; ``spectrum``: their scale spectrum.
    """
    encoder, model = load_encoder(path)
    recipe = FeatureRecipe.for_training(ClassifierConfig(), model.meta, model.meta.pixel_size_nm)
    prepared = [recipe.prepare(image, px) for image, px in zip(images, pixel_sizes, strict=True)]
    feats = recipe.compute(encoder, prepared, s.device)
    ends = np.cumsum(recipe.blocks(encoder.out_dim))[:-1]
    multi, descriptors, spectrum = np.split(feats, ends, 1)
    return {
        "single": multi[:, : encoder.out_dim],
        "multi": multi,
        "descriptors": descriptors,
        "spectrum": spectrum,
    }


def feature_sets(blocks: dict[str, dict[str, np.ndarray]], raw_descriptors: np.ndarray) -> dict:
    """Method name -> (features, block sizes) compared by the benchmark."""
    sets = {"classical": (raw_descriptors, [raw_descriptors.shape[1]])}
    spectrum = next(iter(blocks.values()))["spectrum"]  # of the image alone: any encoder's
    sets["spectrum"] = (spectrum, [spectrum.shape[1]])
    for encoder, b in blocks.items():
        sets[f"{encoder} single"] = (b["single"], [b["single"].shape[1]])
        sets[f"{encoder} multi"] = (b["multi"], [b["multi"].shape[1]])
        for name, parts in (("multi+desc", 2), ("multi+desc+spec", 3)):
            chosen = [b["multi"], b["descriptors"], b["spectrum"]][:parts]
            sets[f"{encoder} {name}"] = (np.concatenate(chosen, 1), [c.shape[1] for c in chosen])
    return sets


def set_weights(method: str, sizes: list[int]) -> np.ndarray:
    """A feature set's column weights: the product's for encoder + descriptor sets (the
    descriptors weighted by ``ClassifierConfig.descriptor_weight``), equal say per block else."""
    if "multi+desc" in method:
        return column_weights(sizes, ClassifierConfig())
    return block_weights(sizes)


def is_product_like(method: str) -> bool:
    """Whether a method gets the cross-validated calibration and the prototype head: the
    product's feature sets and the baselines, not the single and multi encoder blocks alone."""
    return not method.endswith((" single", " multi"))


def prototype_predict(train_f, train_y, test_f, n_classes: int, weights) -> np.ndarray:
    """Nearest class mean in the head's weighted standardised space (a prototype classifier)."""
    mean = train_f.mean(0)
    scale = np.maximum(train_f.std(0), 1e-6) if len(train_f) > 1 else np.ones(train_f.shape[1])
    z_train = (train_f - mean) / scale * weights
    z_test = (test_f - mean) / scale * weights
    centres = np.stack([z_train[train_y == c].mean(0) for c in range(n_classes)])
    return np.linalg.norm(z_test[:, None] - centres[None], axis=-1).argmin(1)


def label_draws(y: np.ndarray, n_classes: int, n: int, split: int, seed: int) -> np.ndarray:
    """``n`` random labelled images a class (the same for every method)."""
    rng = np.random.default_rng([seed, n, split])
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(n_classes)]
    )


def classification(sets: dict, pool_y, test_y, s, n_classes: int, test_of=None) -> pd.DataFrame:
    """Held-out accuracy and calibration of every method for every label count and split.

    ``sets`` maps a method to ((pool features, test features) or all features, block sizes).
    With ``test_of`` (real data: one pool), the test images are the pool images not labelled.
    Linear head: the product's (fit, cross-validated temperature; the refits are
    run for the sets :func:`is_product_like` names only, to save time); prototype: nearest
    class mean, accuracy only. ECE is over the test images with the temperature the labelled images
    gave (the prior temperature at one label a class, where nothing can be held out).
    """
    rows = []
    for n in s.labels_per_class:
        for split in range(s.splits):
            picked = label_draws(pool_y, n_classes, n, split, s.seed)
            test_idx = np.setdiff1d(np.arange(len(pool_y)), picked) if test_of else None
            y_test = pool_y[test_idx] if test_of else test_y
            majority = np.bincount(y_test, minlength=n_classes).max() / len(y_test)
            for method, (feats, sizes) in sets.items():
                pool_f, test_f = (feats, feats[test_idx]) if test_of else feats
                train_f, train_y = pool_f[picked], pool_y[picked]
                weights = set_weights(method, sizes)
                head, _ = fit_linear_head(train_f, train_y, n_classes, column_weights=weights)
                calibrated = is_product_like(method)
                report = (
                    cross_validate(train_f, train_y, n_classes, column_weights=weights)
                    if calibrated
                    else {}
                )
                temperature = report.get("temperature", 1.0)
                logits = head_logits(head, test_f)
                probs = softmax(logits / temperature, 1)
                accuracy = float((probs.argmax(1) == y_test).mean())
                common = dict(method=method, labels_per_class=n, split=split, majority=majority)
                rows.append(
                    dict(
                        common,
                        head="linear",
                        accuracy=accuracy,
                        cv_accuracy=report.get("cv_accuracy", np.nan),
                        temperature=temperature,
                        ece=expected_calibration_error(probs, y_test) if calibrated else np.nan,
                        ece_floor=ece_floor(probs) if calibrated else np.nan,
                        ece_best_t=(
                            expected_calibration_error(
                                softmax(logits / fit_temperature(logits, y_test), 1), y_test
                            )
                            if calibrated
                            else np.nan
                        ),
                        in_range=(
                            float(
                                report["cv_accuracy_low"] <= accuracy <= report["cv_accuracy_high"]
                            )
                            if "cv_accuracy_low" in report
                            else np.nan
                        ),
                        ece_raw=expected_calibration_error(softmax(logits, 1), y_test),
                        confidence=float(probs.max(1).mean()),
                        **(confidence_columns(probs, y_test) if calibrated else {}),
                    )
                )
                if calibrated:
                    pred = prototype_predict(train_f, train_y, test_f, n_classes, weights)
                    rows.append(
                        dict(common, head="prototype", accuracy=float((pred == y_test).mean()))
                    )
        print(f"classification: {n} label(s) a class done")
    return pd.DataFrame(rows)


TOP_SHARE = 0.2
"""The most confident share of test images whose accuracy :func:`confidence_columns` gives."""


def confidence_columns(probs: np.ndarray, targets: np.ndarray) -> dict:
    """Whether the confidence tells right from wrong answers (the issue's first report: wrong
    0.988, right 0.990): median confidence of each, the chance that a right answer is the more
    confident of a right and a wrong one (AUROC), and accuracy and mean confidence of the most
    confident :data:`TOP_SHARE` of the images (what a user who trusts only those gets)."""
    confidence = probs.max(1)
    right = probs.argmax(1) == targets
    both = right.any() and (~right).any()
    auroc = (
        mannwhitneyu(confidence[right], confidence[~right]).statistic
        / (right.sum() * (~right).sum())
        if both
        else np.nan
    )
    top = np.argsort(-confidence)[: max(1, round(TOP_SHARE * len(targets)))]
    return {
        "confidence_right": float(np.median(confidence[right])) if right.any() else np.nan,
        "confidence_wrong": float(np.median(confidence[~right])) if (~right).any() else np.nan,
        "auroc": float(auroc),
        "accuracy_top": float(right[top].mean()),
        "confidence_top": float(confidence[top].mean()),
    }


SUGGESTION_ROUNDS = 3
"""Rounds of "label next" in :func:`suggestion_rows`, each adding one image per class."""


def suggestion_rows(
    feats: np.ndarray,
    sizes: list[int],
    y: np.ndarray,
    s: Settings,
    n_classes: int,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Accuracy as a user labels the Predict widget's "label next" picks, against other picks.

    From one random labelled image a class, :data:`SUGGESTION_ROUNDS` rounds each label as
    many images as there are classes: *suggested* = :func:`label_next` on the calibrated
    classifier's entropy and features (the widget's rule), *random* = any unlabelled images,
    *balanced* = one more random image of each class (a user who labels every class alike).
    ``test`` (features, classes) is scored; without it (real data: one collection) each draw
    splits the images in halves, labels from one and accuracy on the other, so suggestions
    cannot take the hard images out of the test set. The default features only.
    """
    weights = set_weights(PRODUCT, sizes)
    classes = range(n_classes)
    rows = []
    for split in range(s.splits):
        rng = np.random.default_rng([s.seed, 7, split])
        if test is None:
            order = rng.permutation(len(y))
            pool, held = order[: len(y) // 2], order[len(y) // 2 :]
            pool_f, pool_y, test_f, test_y = feats[pool], y[pool], feats[held], y[held]
        else:
            pool_f, pool_y, (test_f, test_y) = feats, y, test
        start = label_draws(pool_y, n_classes, 1, split, s.seed)
        for strategy in ("suggested", "random", "balanced"):
            picked = list(start)
            for round_ in range(SUGGESTION_ROUNDS + 1):
                train_f, train_y = pool_f[picked], pool_y[picked]
                head, _ = fit_linear_head(train_f, train_y, n_classes, column_weights=weights)
                rows.append(
                    dict(
                        strategy=strategy,
                        split=split,
                        labelled=len(picked),
                        accuracy=float((head_logits(head, test_f).argmax(1) == test_y).mean()),
                        fewest_a_class=int(np.bincount(train_y, minlength=n_classes).min()),
                    )
                )
                if round_ == SUGGESTION_ROUNDS:
                    break
                free = ~np.isin(np.arange(len(pool_y)), picked)
                if strategy == "suggested":
                    report = cross_validate(train_f, train_y, n_classes, column_weights=weights)
                    probs = softmax(head_logits(head, pool_f) / report["temperature"], 1)
                    new = label_next(entropy(probs, 1), n_classes, ~free, pool_f)
                elif strategy == "random":
                    new = rng.choice(np.flatnonzero(free), n_classes, replace=False)
                else:
                    new = [rng.choice(np.flatnonzero(free & (pool_y == c))) for c in classes]
                picked += [int(i) for i in new]
    return pd.DataFrame(rows)


def report_suggestions(table: pd.DataFrame, title: str) -> dict:
    """Print accuracy by labelled images and strategy, and the least-labelled class; for JSON."""
    acc = summarise(table, ["strategy", "labelled"], "accuracy")
    fewest = table.groupby(["strategy", "labelled"])["fewest_a_class"].mean().unstack(0)
    print(f'\n{title}: accuracy as labels are added, from 1 a class ("label next" or not)')
    print(markdown(acc, "labelled", ["strategy"]))
    print(f"\n{title}: mean labelled images of the least-labelled class")
    print(fewest.round(2).to_string())
    return {"accuracy": acc.to_dict("records"), "fewest_a_class": fewest.to_dict()}


def ece_floor(probs: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """Median ECE of a perfectly calibrated classifier with these confidences on as many
    images: each image is right with probability equal to its confidence. On ~100 test images
    ECE is not 0 even then (10 bins of a few images each), so this is the level to read the
    measured ECE against."""
    rng = np.random.default_rng(seed)
    guess = probs.argmax(1)
    other = (guess + 1) % probs.shape[1]
    values = [
        expected_calibration_error(
            probs, np.where(rng.random(len(probs)) < probs.max(1), guess, other)
        )
        for _ in range(draws)
    ]
    return float(np.median(values))


def fine_tune_rows(
    path: Path, pool: list, pool_y: np.ndarray, test: list, test_y: np.ndarray, s, splits: int
) -> pd.DataFrame:
    """The product's small fine-tune (``ClassifierConfig(fine_tune=True)``: the encoder tuned on
    the labelled images, then the linear head refitted on its features) against the same label
    draws as :func:`classification`; accuracy and ECE over the test images with the model's
    own calibrated probabilities. Slow (an encoder is tuned per draw), so ``splits`` draws."""
    rows = []
    majority = np.bincount(test_y, minlength=len(CLASSES)).max() / len(test_y)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fine_tuned.nwmodel"
        for n in s.labels_per_class:
            for split in range(splits):
                picked = label_draws(pool_y, len(CLASSES), n, split, s.seed)
                config = ClassifierConfig(fine_tune=True, device=s.device, seed=split)
                start = time.perf_counter()
                list(
                    train_classifier(
                        path,
                        [pool[i].image for i in picked],
                        [CLASSES[pool_y[i]] for i in picked],
                        out,
                        [s.pixel_size_nm] * len(picked),
                        config=config,
                    )
                )
                seconds = time.perf_counter() - start
                predicted = Predictor.load(out, s.device).classify(
                    [t.image for t in test], [s.pixel_size_nm] * len(test)
                )
                order = [predicted.class_names.index(name) for name in CLASSES]
                probs = predicted.probabilities[:, order]  # columns in CLASSES order, as test_y
                rows.append(
                    dict(
                        method=f"{path.stem} multi+desc",
                        head="fine-tune",
                        labels_per_class=n,
                        split=split,
                        majority=majority,
                        accuracy=float((probs.argmax(1) == test_y).mean()),
                        ece=expected_calibration_error(probs, test_y),
                        train_s=seconds,
                    )
                )
            print(f"fine-tune: {n} label(s) a class done")
    return pd.DataFrame(rows)


# --- real data: EMPS particle images ---------------------------------------------------------

EMPS_CLASSES = ("elongated", "few", "several", "many")


def emps_class(instances: np.ndarray) -> str:
    """A morphology class from a true instance mask, by the first rule that holds.

    elongated: the area-weighted median aspect ratio (major / minor axis of the moment ellipse)
    of the particles not cut by the image border (of all when every one is cut) is at least
    1.8 (rods, wires, tubes); few: at most 3 particles; many: 15 or more particles; several:
    the rest. Spheres cut by the border look like rods, and a sliver beside one big particle
    outvoted it in a plain median: both made "elongated" images of spheres (looked at;
    2026-12-07). On the 150-image sample: several 54, few 39, many 34, elongated 23.
    """
    every = regionprops(instances)
    if not every:
        return "few"
    inner = regionprops(clear_border(instances)) or every
    ratios = np.array([p.axis_major_length / max(p.axis_minor_length, 1.0) for p in inner])
    order = np.argsort(ratios)
    areas = np.array([p.area for p in inner], float)[order]
    median = ratios[order][np.searchsorted(np.cumsum(areas), areas.sum() / 2)]
    if median >= 1.8:
        return "elongated"
    if len(every) <= 3:
        return "few"
    return "many" if len(every) >= 15 else "several"


def read_emps(root: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Names, gray images, instance masks and class indices of the EMPS sample at ``root``."""
    series = list(file_frames([root / "images"]))
    names = [item.name for item in series]
    masks = [iio.imread(root / "segmaps" / f"{name}.png") for name in names]
    y = np.array([EMPS_CLASSES.index(emps_class(m)) for m in masks])
    return names, [np.asarray(item.frame) for item in series], masks, y


def emps_pictures(images, masks, y, sets, s: Settings, path: Path, n: int = 4) -> None:
    """Side-by-side picture: image | true instances and class | predicted class, confidence
    (on the image as the classifier saw it: burned-in scale bars and labels painted over).

    One split at ``n`` labels a class, the product's features; 16 test images spread over the
    confidence range (most and least confident first and last).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats, sizes = sets[PRODUCT]
    picked = label_draws(y, len(EMPS_CLASSES), n, 0, s.seed)
    test = np.setdiff1d(np.arange(len(y)), picked)
    weights = set_weights(PRODUCT, sizes)
    head, _ = fit_linear_head(feats[picked], y[picked], len(EMPS_CLASSES), column_weights=weights)
    report = cross_validate(feats[picked], y[picked], len(EMPS_CLASSES), column_weights=weights)
    probs = softmax(head_logits(head, feats[test]) / report.get("temperature", 1.0), 1)
    order = np.argsort(-probs.max(1))
    show = order[np.linspace(0, len(order) - 1, 16).round().astype(int)]
    fig, axes = plt.subplots(8, 6, figsize=(15, 21))
    for k, j in enumerate(show):
        i = test[j]
        ax_img, ax_truth = axes[k // 2, 3 * (k % 2)], axes[k // 2, 3 * (k % 2) + 1]
        ax_pred = axes[k // 2, 3 * (k % 2) + 2]
        ax_img.imshow(images[i], cmap="gray")
        ax_img.set_title(f"image {i}", fontsize=8)
        ax_truth.imshow(masks[i] > 0, cmap="gray")
        ax_truth.set_title(f"truth: {EMPS_CLASSES[y[i]]} ({masks[i].max()} particles)", fontsize=8)
        guess = int(probs[j].argmax())
        ax_pred.imshow(fill_annotations(images[i]), cmap="gray", alpha=0.6)  # as classified
        color = "green" if guess == y[i] else "red"
        ax_pred.set_title(
            f"predicted: {EMPS_CLASSES[guess]} p={probs[j].max():.2f}", fontsize=8, color=color
        )
        for ax in (ax_img, ax_truth, ax_pred):
            ax.axis("off")
    fig.suptitle(
        f"EMPS sample, {n} labels a class, {PRODUCT} features, temperature "
        f"{report.get('temperature', 1.0):.2f}; green = right, red = wrong",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # the title above the first row, not over it
    fig.savefig(path, dpi=80)
    plt.close(fig)


def emps_measurements(
    encoder_path: Path, images, masks, n_per_contrast: int, s: Settings, workdir: Path
) -> dict:
    """Mask measurements (``MORPH_NAMES``) of every EMPS image, as the classifier's
    measurement features compute them: from a segmenter and from the true masks (an upper
    bound: the classes are made from those masks).

    The segmenter is the product's (``SegmenterConfig`` defaults, but 240 steps instead of the
    90 s cap, so that the machine's load does not set the result) on ``encoder_path``, trained
    from simulated strokes on ``n_per_contrast`` images of each contrast (dark and bright
    particles; a fixed seeded pick, independent of the label draws) and 40 more unlabelled
    images (semi-supervised, opt-in since 2026-12-06), as a user who strokes a few images of
    each kind in a mixed collection would.
    """
    from real_segmentation import dark_particles, fg_iou, training_mask

    truth = [m > 0 for m in masks]
    dark = np.array([dark_particles(im, t) for im, t in zip(images, truth, strict=True)])
    rng = np.random.default_rng(s.seed)
    stroked = np.concatenate(
        [rng.choice(np.flatnonzero(dark == d), n_per_contrast, replace=False) for d in (1, 0)]
    )
    rest = rng.permutation(np.setdiff1d(np.arange(len(images)), stroked))[:40]
    out = workdir / "emps_segmenter.nwmodel"
    start = time.perf_counter()
    list(
        train_segmenter(
            load_model(encoder_path),
            [images[i] for i in stroked],
            [training_mask(truth[i], "strokes", seed=int(i)) for i in stroked],
            out,
            config=SegmenterConfig(
                device=s.device, steps=240, max_seconds=None, semi_supervised=True
            ),
            unlabelled=[images[i] for i in rest],
        )
    )
    train_s = time.perf_counter() - start
    predictor = Predictor.load(out, device=s.device)
    working = 4 * s.image_size  # ClassifierConfig's default working size (4 tiles)
    held_out = np.setdiff1d(np.arange(len(images)), stroked)
    result: dict = {"segmenter": {"stroked": stroked.tolist(), "train_s": round(train_s, 1)}}
    for key, refine in (("predicted", True), ("unrefined", False)):
        predictor.configure(refine_intensity=refine)
        predicted = [predictor.segment(image, None).mask for image in images]
        result[key] = np.stack(
            [mask_features(m, measurement_pixel_size(m, None, working)) for m in predicted]
        )
        ious = np.array([fg_iou(m, t) for m, t in zip(predicted, truth, strict=True)])[held_out]
        result["segmenter"][f"iou_{key}"] = {
            "median": float(np.median(ious)),
            "q1_q3": np.percentile(ious, [25, 75]).tolist(),
        }
        print(
            f"EMPS segmenter ({key}): {len(stroked)} stroked images + {len(rest)} unlabelled, "
            f"trained in {train_s:.0f} s; foreground IoU on the other images median "
            f"{np.median(ious):.2f}"
        )
    result["truth"] = np.stack(
        [mask_features(t, measurement_pixel_size(t, None, working)) for t in truth]
    )
    return result


def run_emps(root: Path, s: Settings, args) -> dict:
    """The real-data classification run: SSL on the 150 images, then every method (with
    ``--emps-segmenter N``, also the segmenter's mask measurements)."""
    names, images, masks, y = read_emps(root)
    counts = np.bincount(y, minlength=len(EMPS_CLASSES))
    print(
        f"EMPS: {len(y)} images, classes "
        + ", ".join(f"{c} {k}" for c, k in zip(EMPS_CLASSES, counts, strict=True))
    )
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths, ssl_seconds = pretrain_encoders(images, [None] * len(images), s, workdir)
        times.update({f"pretrain {m}": t for m, t in ssl_seconds.items()})
        mark = time.perf_counter()
        blocks = {m: encoder_features(paths[m], images, [None] * len(images), s) for m in paths}
        times["features"] = time.perf_counter() - mark
        measured = (
            emps_measurements(
                paths[s.ssl_methods[0]], images, masks, args.emps_segmenter, s, workdir
            )
            if args.emps_segmenter
            else None
        )
    raw = [classifier_input(image, None, None, 1.0, 4 * s.image_size) for image in images]
    sets = feature_sets(blocks, np.stack([image_descriptors(image) for image in raw]))
    if measured:
        product, sizes = sets[PRODUCT]
        sets[f"{PRODUCT}+mask"] = (
            np.concatenate([product, measured["predicted"]], 1),
            [*sizes, measured["predicted"].shape[1]],
        )
        sets["mask"] = (measured["predicted"], [measured["predicted"].shape[1]])
        sets["mask, unrefined"] = (measured["unrefined"], [measured["unrefined"].shape[1]])
        sets["mask of true masks"] = (measured["truth"], [measured["truth"].shape[1]])
        times["segmenter"] = measured["segmenter"]["train_s"]
    mark = time.perf_counter()
    table = classification(sets, y, None, s, len(EMPS_CLASSES), test_of=True)
    times["classification"] = time.perf_counter() - mark
    table.to_csv(OUT / "label_efficiency_emps.csv", index=False)
    emps_pictures(images, masks, y, sets, s, OUT / "emps_predictions.png")
    result = report_classification(table, "EMPS real images", times)
    picks = suggestion_rows(*sets[PRODUCT], y, s, len(EMPS_CLASSES))
    result["suggestions"] = report_suggestions(picks, "EMPS real images")
    if measured:
        result["segmenter"] = measured["segmenter"]
    return result


TRUST = {
    "confidence_right": "confidence when right",
    "confidence_wrong": "when wrong",
    "auroc": "AUROC",
    "accuracy_top": f"accuracy of the most confident {TOP_SHARE:.0%}",
    "confidence_top": "their mean confidence",
}
"""The :func:`confidence_columns` reported, with their table headings."""


def report_classification(table: pd.DataFrame, title: str, times: dict) -> dict:
    """Print accuracy, ECE and the majority rate as markdown; return them for the JSON."""
    linear = table[table["head"] == "linear"]
    acc = summarise(linear, ["method", "labels_per_class"], "accuracy")
    ece = summarise(linear, ["method", "labels_per_class"], "ece")
    ece_raw = summarise(linear, ["method", "labels_per_class"], "ece_raw")
    floor = summarise(linear, ["method", "labels_per_class"], "ece_floor")
    best_t = summarise(linear, ["method", "labels_per_class"], "ece_best_t")
    in_range = linear.groupby(["method", "labels_per_class"])["in_range"].mean().unstack()
    proto = summarise(
        table[table["head"] == "prototype"], ["method", "labels_per_class"], "accuracy"
    )
    tuned = table[table["head"] == "fine-tune"]
    majority = linear.groupby("labels_per_class")["majority"].median()
    print(f"\n{title}: held-out accuracy (linear head), median [IQR]")
    print(markdown(acc, "labels_per_class", ["method"]))
    print(f"\n{title}: accuracy with a prototype (nearest class mean) head")
    print(markdown(proto, "labels_per_class", ["method"]))
    if len(tuned):
        print(f"\n{title}: small fine-tune (encoder tuned, head refitted), accuracy and ECE")
        print(
            markdown(
                summarise(tuned, ["method", "labels_per_class"], "accuracy"),
                "labels_per_class",
                ["method"],
            )
        )
        print(
            markdown(
                summarise(tuned, ["method", "labels_per_class"], "ece"),
                "labels_per_class",
                ["method"],
            )
        )
    print(f"\n{title}: ECE of held-out images, calibrated (raw in JSON)")
    print(markdown(ece, "labels_per_class", ["method"]))
    print(f"\n{title}: ECE a perfectly calibrated classifier with the same confidences would get")
    print(markdown(floor, "labels_per_class", ["method"]))
    print(f"\n{title}: ECE with the one temperature that suits the test images best")
    print(markdown(best_t, "labels_per_class", ["method"]))
    print(f"\n{title}: share of draws whose accuracy lies in the estimate's range")
    print(in_range.dropna(how="all").round(2).to_string())
    trust = linear[linear["method"] == PRODUCT].groupby("labels_per_class")[list(TRUST)].median()
    print(f"\n{title}: does the confidence tell right from wrong? ({PRODUCT}, medians)")
    print(trust.rename(columns=TRUST).round(2).to_string())
    print(f"\nmost-common-class rate of the test images: {majority.round(3).to_dict()}")
    return {
        "accuracy": acc.to_dict("records"),
        "accuracy_prototype": proto.to_dict("records"),
        "fine_tune": {
            key: summarise(tuned, ["method", "labels_per_class"], key).to_dict("records")
            for key in ("accuracy", "ece", "train_s")
        }
        if len(tuned)
        else {},
        "ece": ece.to_dict("records"),
        "ece_raw": ece_raw.to_dict("records"),
        "ece_floor": floor.to_dict("records"),
        "ece_best_temperature": best_t.to_dict("records"),
        "accuracy_in_estimated_range": in_range.stack()
        .reset_index(name="share")
        .to_dict("records"),
        "majority_rate": majority.to_dict(),
        "confidence_right_wrong": trust.reset_index().to_dict("records"),
        "temperature": summarise(linear, ["method", "labels_per_class"], "temperature").to_dict(
            "records"
        ),
        "seconds": times,
    }


# --- segmentation ----------------------------------------------------------------------------


def strokes(
    mask: np.ndarray, rng: np.random.Generator, n_wire: int = 4, n_bg: int = 4
) -> np.ndarray:
    """Simulated user strokes: pieces of wire skeletons (2) and short background lines (1)."""
    out = np.zeros(mask.shape, np.uint8)
    skeleton = np.argwhere(skeletonize(mask.astype(bool)))
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    for cy, cx in skeleton[rng.choice(len(skeleton), min(n_wire, len(skeleton)), replace=False)]:
        near = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12**2
        piece = np.zeros(mask.shape, bool)
        piece[tuple(skeleton.T)] = True
        out[ndimage.binary_dilation(piece & near) & mask.astype(bool)] = 2
    far = ndimage.distance_transform_edt(mask == 0) > 3
    candidates = np.argwhere(far)
    for cy, cx in candidates[
        rng.choice(len(candidates), min(n_bg, len(candidates)), replace=False)
    ]:
        angle = rng.uniform(0, np.pi)
        ey = int(np.clip(cy + 20 * np.sin(angle), 0, mask.shape[0] - 1))
        ex = int(np.clip(cx + 20 * np.cos(angle), 0, mask.shape[1] - 1))
        rr, cc = line(int(cy), int(cx), ey, ex)
        stroke = np.zeros(mask.shape, bool)
        stroke[rr, cc] = True
        out[ndimage.binary_dilation(stroke) & far & (out == 0)] = 1
    return out


def segmentation(paths: dict[str, Path], pool, test, s: Settings, workdir: Path) -> pd.DataFrame:
    """IoU/Dice on the test images for every encoder, label count, mask kind and repeat."""
    rows = []
    for repeat in range(s.seg_repeats):
        for n in s.seg_images:
            rng = np.random.default_rng([s.seed, 99, n, repeat])
            chosen = [pool[i] for i in rng.choice(len(pool), n, replace=False)]
            for kind in ("dense", "sparse"):
                masks = [i.mask if kind == "dense" else strokes(i.mask, rng) for i in chosen]
                for method in s.seg_methods:
                    config = SegmenterConfig(
                        steps=s.seg_steps,
                        tile=s.seg_tile,
                        dense_masks=kind == "dense",
                        device=s.device,
                        seed=repeat,
                    )
                    out = workdir / f"seg_{method}.nwmodel"
                    start = time.perf_counter()
                    list(
                        train_segmenter(
                            paths[method],
                            [i.image for i in chosen],
                            masks,
                            out,
                            [s.pixel_size_nm] * n,
                            config=config,
                        )
                    )
                    seconds = time.perf_counter() - start
                    predictor = Predictor.load(out, s.device)
                    preds = [predictor.segment(i.image, i.pixel_size_nm).mask for i in test]
                    iou, dice = iou_dice(
                        np.concatenate([p.ravel() for p in preds]),
                        np.concatenate([i.mask.ravel() for i in test]),
                        2,
                    )
                    labelled = (
                        float(np.mean([(m > 0).mean() for m in masks])) if kind == "sparse" else 1.0
                    )
                    rows.append(
                        dict(
                            method=method,
                            masks=kind,
                            images=n,
                            repeat=repeat,
                            iou=iou,
                            dice=dice,
                            labelled_fraction=labelled,
                            train_s=seconds,
                        )
                    )
                    print(
                        f"segmentation {method} {kind} n={n} repeat {repeat}: "
                        f"IoU {iou:.3f} ({seconds:.0f} s)"
                    )
    return pd.DataFrame(rows)


# --- summary and plot ------------------------------------------------------------------------


def summarise(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Median and quartiles of ``value`` per group."""
    grouped = table.groupby(keys)[value]
    return pd.DataFrame(
        {"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)}
    ).reset_index()


def plot(cls_summary: pd.DataFrame, seg_summary: pd.DataFrame, s: Settings, path: Path) -> None:
    """Two panels: accuracy vs labels per class, IoU vs labelled images (median, IQR band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (method, part) in enumerate(cls_summary.groupby("method")):
        x, color = part["labels_per_class"], f"C{k}"
        ax1.plot(x, part["median"], "o-", color=color, label=method)
        ax1.fill_between(x, part["q25"], part["q75"], color=color, alpha=0.2)
    ax1.axhline(1 / len(CLASSES), color="k", ls=":", lw=1, label="chance")
    ax1.set(
        xscale="log",
        xlabel="labelled images per class",
        ylabel="test accuracy",
        title=f"Classification ({len(CLASSES)} classes, linear head)",
        ylim=(0, 1),
    )
    ax1.minorticks_off()
    ax1.set_xticks(s.labels_per_class, [str(n) for n in s.labels_per_class])
    ax1.legend(fontsize=8)
    for (method, kind), part in seg_summary.groupby(["method", "masks"]):
        x, color = part["images"], SEG_COLORS.get(method, "k")
        style = "o-" if kind == "dense" else "s--"
        ax2.plot(x, part["median"], style, color=color, label=f"{method}, {kind}")
        ax2.fill_between(x, part["q25"], part["q75"], color=color, alpha=0.15)
    ax2.set(
        xscale="log",
        xlabel="labelled images",
        ylabel="test IoU (wires)",
        title="Segmentation (U-Net, dense masks or strokes)",
        ylim=(0, 1),
    )
    ax2.minorticks_off()
    ax2.set_xticks(s.seg_images, [str(n) for n in s.seg_images])
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"Synthetic TEM, {s.size} px at {s.pixel_size_nm} nm/px, difficulty {s.difficulty}; "
        f"{s.encoder} encoder, {s.ssl_epochs} SSL epochs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: pd.DataFrame, index: str, columns: list[str]) -> str:
    """A markdown table of "median [q25, q75]" cells, rows ``index``, columns ``columns``."""
    cells = summary.assign(
        cell=[f"{m:.2f} [{a:.2f}, {b:.2f}]" for m, a, b in summary[["median", "q25", "q75"]].values]
    )
    table = cells.pivot(index=index, columns=columns, values="cell")
    heads = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in table.columns]
    lines = [f"| {index} | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += [
        f"| {i} | " + " | ".join(row) + " |"
        for i, row in zip(table.index, table.values, strict=True)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the GPU-size run")
    p.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
    p.add_argument("--device", help="override the device (default cpu, auto with --full)")
    p.add_argument("--ssl-epochs", type=int, help="override the pretraining epochs")
    p.add_argument("--ssl-methods", help="comma-separated, default simclr,barlow")
    p.add_argument("--splits", type=int, help="override the random label draws per point")
    p.add_argument("--pool-per-class", type=int, help="override the unlabelled pool size")
    p.add_argument("--seed", type=int, help="override the seed (data, pretraining, label draws)")
    p.add_argument("--classify-only", action="store_true", help="skip segmentation")
    p.add_argument("--encoder", help="override the encoder (tiny, resnet18, resnet50)")
    p.add_argument("--image-size", type=int, help="override the encoder's input tile (px)")
    p.add_argument(
        "--init",
        help="start SSL from these weights: imagenet (torchvision's, from the torch cache) or a "
        "ResNet state-dict file; also compares the starting weights without SSL ('start')",
    )
    p.add_argument(
        "--fine-tune-splits",
        type=int,
        default=0,
        help="label draws per point for the small fine-tune (synthetic data; default 0: skip)",
    )
    p.add_argument(
        "--emps",
        type=Path,
        metavar="DIR",
        help="instead of synthetic data, classify the real EMPS sample in DIR (images/, "
        "segmaps/) into morphology classes made from its true masks (see emps_class)",
    )
    p.add_argument(
        "--emps-segmenter",
        type=int,
        default=0,
        metavar="N",
        help="with --emps: also train a segmenter from strokes on N images of each contrast "
        "and add its mask measurements to the features (default 0: skip)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: two threads on a 2-core machine shared with other "
        "work ran 10-15x slower here, one thread on an idle one only ~1.5x)",
    )
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up in logs as they come
    torch.set_num_threads(args.threads)
    s = FULL if args.full else QUICK if args.quick else Settings()
    overrides = {
        k: getattr(args, k)
        for k in (
            "device",
            "ssl_epochs",
            "pool_per_class",
            "splits",
            "seed",
            "encoder",
            "image_size",
            "init",
        )
    }
    if args.ssl_methods:
        overrides["ssl_methods"] = tuple(args.ssl_methods.split(","))
    s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
    OUT.mkdir(exist_ok=True)
    start = time.perf_counter()
    load_before = os.getloadavg()
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s)",
        "load_average_before": load_before,
        "settings": asdict(s),
    }
    if args.emps:
        result["emps"] = run_emps(args.emps, replace(s, labels_per_class=(1, 2, 4, 8)), args)
        name = "label_efficiency_emps.json"
    else:
        result.update(run_synthetic(s, args))
        name = "label_efficiency.json"
    elapsed = time.perf_counter() - start
    result.update(total_seconds=elapsed, load_average_after=os.getloadavg())
    (OUT / name).write_text(json.dumps(result, indent=1, default=float))
    print(
        f"\ntotal {elapsed / 60:.1f} min; load average before/after "
        f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}; wrote {OUT / name}"
    )


def run_synthetic(s: Settings, args) -> dict:
    """The synthetic run: classification of every feature set, then (optionally) segmentation."""
    times = {}
    start = time.perf_counter()
    pool = generate_dataset(s.pool_per_class, s.size, s.pixel_size_nm, s.difficulty, seed=s.seed)
    test = generate_dataset(
        s.test_per_class, s.size, s.pixel_size_nm, s.difficulty, seed=s.seed + 1000
    )
    pool_y = np.array([CLASSES.index(i.label) for i in pool])
    test_y = np.array([CLASSES.index(i.label) for i in test])
    times["data"] = time.perf_counter() - start
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = [i.image for i in pool]
        paths, ssl_seconds = pretrain_encoders(images, [s.pixel_size_nm] * len(pool), s, workdir)
        times.update({f"pretrain {m}": t for m, t in ssl_seconds.items()})
        mark = time.perf_counter()
        blocks = {}
        for m in paths:
            on = [
                encoder_features(paths[m], [i.image for i in x], [s.pixel_size_nm] * len(x), s)
                for x in (pool, test)
            ]
            blocks[m] = {k: (on[0][k], on[1][k]) for k in on[0]}
        raw = [np.stack([image_descriptors(i.image) for i in x]) for x in (pool, test)]
        sets = {}
        for k in ("pool", "test"):
            which = 0 if k == "pool" else 1
            part = feature_sets(
                {m: {b: v[which] for b, v in bl.items()} for m, bl in blocks.items()}, raw[which]
            )
            for method, (feats, sizes) in part.items():
                sets.setdefault(method, ([], sizes))[0].append(feats)
        sets = {m: (tuple(f), sizes) for m, (f, sizes) in sets.items()}
        times["features"] = time.perf_counter() - mark
        mark = time.perf_counter()
        cls = classification(sets, pool_y, test_y, s, len(CLASSES))
        if args.fine_tune_splits:
            tuned = fine_tune_rows(
                paths[s.ssl_methods[0]], pool, pool_y, test, test_y, s, args.fine_tune_splits
            )
            cls = pd.concat([cls, tuned], ignore_index=True)
        times["classification"] = time.perf_counter() - mark
        cls.to_csv(OUT / "label_efficiency_classification.csv", index=False)
        result["classification"] = report_classification(cls, "Synthetic", times)
        (pool_f, test_f), sizes = sets[PRODUCT]
        picks = suggestion_rows(pool_f, sizes, pool_y, s, len(CLASSES), (test_f, test_y))
        result["suggestions"] = report_suggestions(picks, "Synthetic")
        if not args.classify_only:
            mark = time.perf_counter()
            picks = np.linspace(0, len(test) - 1, s.seg_test).round().astype(int)
            seg = segmentation(paths, pool, [test[i] for i in picks], s, workdir)
            times["segmentation"] = time.perf_counter() - mark
    if args.classify_only:
        return result
    seg.to_csv(OUT / "label_efficiency_segmentation.csv", index=False)
    seg_summary = summarise(seg, ["method", "masks", "images"], "iou")
    dice_summary = summarise(seg, ["method", "masks", "images"], "dice")
    linear = cls[cls["head"] == "linear"]
    plot(summarise(linear, ["method", "labels_per_class"], "accuracy"), seg_summary, s, PLOT)
    print(f"\nSegmentation IoU, median [IQR] over {s.seg_repeats} repeats")
    print(markdown(seg_summary, "images", ["method", "masks"]))
    print(f"\nSegmentation Dice, median [IQR] over {s.seg_repeats} repeats")
    print(markdown(dice_summary, "images", ["method", "masks"]))
    result["segmentation_iou"] = seg_summary.to_dict("records")
    result["segmentation_dice"] = dice_summary.to_dict("records")
    return result


if __name__ == "__main__":
    main()
