"""Honest confidence for few-label classifiers: held-out logits, temperature, calibration error.

A linear head fitted on a handful of images separates them perfectly, so its softmax says 0.99
for every image, right or wrong. What the labelled images can tell is how the head does on
images it was *not* fitted on: cross-validation with class-balanced folds gives held-out
logit vectors for the labelled images. From these come an accuracy estimate and a temperature
T (one number, logits / T) that makes held-out probabilities match held-out accuracy; the
final head, fitted on all labels, is then used with that temperature.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import norm

MAX_FOLDS = 10
"""Most cross-validation folds; fewer when a class has fewer labelled images."""

CV_FITS = 16
"""Cross-validation refits the head about this many times (folds x redraws)."""

PRIOR_TEMPERATURE = 7.0
"""The temperature when no labelled image can be held out (one image a class): the median of
the temperatures fitted at 2 labels a class in six benchmark runs (synthetic 3.3-10.8, EMPS
10.0-16.6; benchmarks/RESULTS.md, issue 12). Evaluated at 1 label a class on the same runs'
test images: ECE 0.08-0.14 against 0.32-0.50 with T = 1. A rough guide, not a calibration."""

INTERVAL_LEVEL = 0.95
"""Confidence level of the range given around the estimated accuracy (Wilson score interval
of the held-out images). In the benchmarks it held the accuracy on new images in 93-97 % of
label draws on the real EMPS images and 75-92 % on synthetic data (3 and 4 seeds of 10 draws
at 2-16 labels a class), least at 4 labels a class on synthetic data, where the estimate is
biased low (benchmarks/RESULTS.md, issue 12)."""

T_RANGE = (0.05, 100.0)
"""Temperatures searched; the upper end makes every prediction nearly uniform."""

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
"""Fits on (features, targets) and returns a function from features to (N, C) logits."""


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    probs, targets = np.asarray(probs), np.asarray(targets)
    if len(targets) == 0:
        return 0.0
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under softmax(logits / temperature)."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(targets)), targets].mean())


def brier(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean Brier score: squared distance of softmax(logits / temperature) from the one-hot."""
    probs = softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    probs[np.arange(len(targets)), targets] -= 1.0
    return float((probs * probs).sum(1).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the Brier score of held-out ``logits`` (log-scale search).

    Brier rather than NLL: both are proper scores, but a few-label classifier's held-out
    logits hold a few wrong answers at logit 30+ (heads fitted on one image a class), and one
    such answer costs NLL ~30, which only T at its upper bound can pay for. On the napari
    sample (2 labelled slices a class) NLL gave T = 100 and every slice 26 % where 11 of 12
    were right; Brier gave T = 0.78 and 50-100 %. On EMPS and synthetic data the two gave the
    same held-out calibration error within 0.02 (benchmarks/RESULTS.md, issue 12).
    """
    lo, hi = np.log(T_RANGE)
    result = minimize_scalar(
        lambda log_t: brier(logits, targets, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(np.exp(result.x))


def held_out_logits(
    features: np.ndarray, targets: np.ndarray, fit: Fit, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Logits of labelled images from heads fitted without them, and which images those are.

    Balanced folds: every class with two or more labelled images is spread evenly over k folds
    (k = its smallest count, at most :data:`MAX_FOLDS`), so each fit keeps the classes in
    proportion. Leave-one-out did not: taking one of two images out halves its class, the head
    leans away from it, and on EMPS at 2 labels a class the held-out accuracy read 0.12 where
    unseen images gave 0.32 (balanced folds: 0.30; benchmarks/RESULTS.md, issue 12). The folds
    are redrawn until about :data:`CV_FITS` heads are fitted, and every held-out prediction is
    kept, so an image appears once per draw. Images alone in their class always stay in the fit.
    Returns ((M, C) logits, (M,) indices of the held-out images), or None when no class has two.
    """
    counts = np.bincount(targets)
    testable = counts[targets] >= 2
    if not testable.any():
        return None
    k = min(int(counts[counts >= 2].min()), MAX_FOLDS)
    rng = np.random.default_rng(seed)
    logits, index = [], []
    for _ in range(-(-CV_FITS // k)):
        fold = np.where(testable, stratified_folds(targets, k, rng), -1)
        for f in range(k):
            test = fold == f
            logits.append(np.asarray(fit(features[~test], targets[~test])(features[test])))
            index.append(np.flatnonzero(test))
    return np.concatenate(logits).astype(np.float64), np.concatenate(index)


def stratified_folds(
    targets: np.ndarray, folds: int, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """A fold number per sample, each class spread evenly over the folds in random order."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(targets), int)
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        fold[idx] = np.arange(len(idx)) % folds
    return fold


def calibration_report(
    logits: np.ndarray, targets: np.ndarray, images: np.ndarray | None = None
) -> dict:
    """Held-out accuracy, fitted temperature, and ECE/NLL/Brier before and after it (numbers).

    ``images``: which labelled image each row is of, as :func:`held_out_logits` returns (an
    image has a row per fold draw); by default each row is a different image.
    """
    temperature = fit_temperature(logits, targets)
    raw, scaled = softmax(logits, 1), softmax(logits / temperature, 1)
    images = np.arange(len(targets)) if images is None else np.asarray(images)
    _, first = np.unique(images, return_index=True)
    counts = np.bincount(targets[first])
    accuracy = float((logits.argmax(1) == targets).mean())
    low, high = accuracy_interval(accuracy, len(first))
    return {
        "cv_accuracy": accuracy,
        "cv_accuracy_low": low,
        "cv_accuracy_high": high,
        "cv_images": len(first),
        "temperature": temperature,
        "cv_ece_raw": expected_calibration_error(raw, targets),
        "cv_ece": expected_calibration_error(scaled, targets),
        "cv_nll_raw": nll(logits, targets),
        "cv_nll": nll(logits, targets, temperature),
        "cv_brier_raw": brier(logits, targets),
        "cv_brier": brier(logits, targets, temperature),
        "cv_fewest_a_class": int(counts[counts > 0].min()),
        "cv_guess_rate": float(counts.max() / counts.sum()),
    }


def accuracy_interval(accuracy: float, images: int) -> tuple[float, float]:
    """Range of accuracies on new images that ``accuracy`` on ``images`` held-out labelled
    images leaves plausible (:data:`INTERVAL_LEVEL`, Wilson score interval).

    16 labelled images at 44 % leave 23-67 %: a point estimate alone hides that a few labels
    cannot tell 30 % from 60 %. The accuracy is an average over fold draws, so the count of
    right images need not be whole; the score interval's formula takes it as it is.
    """
    z = norm.ppf((1 + INTERVAL_LEVEL) / 2)
    shrink = 1 + z**2 / images
    centre = (accuracy + z**2 / (2 * images)) / shrink
    half = z / shrink * np.sqrt(accuracy * (1 - accuracy) / images + z**2 / (4 * images**2))
    return max(float(centre - half), 0.0), min(float(centre + half), 1.0)


def accuracy_summary(metrics: dict) -> str:
    """A classifier's estimated accuracy with its plausible range ("67%, likely 39% to 86%"),
    or "unknown" when no labelled image could be held out."""
    if "cv_accuracy" not in metrics:
        return "unknown"
    low, high = metrics.get("cv_accuracy_low"), metrics.get("cv_accuracy_high")
    plausible = f", likely {low:.0%} to {high:.0%}" if low is not None else ""
    return f"{metrics['cv_accuracy']:.0%}{plausible}"


def describe_confidence(metrics: dict) -> str:
    """What the labelled images say about accuracy and confidence, in one or two sentences.

    With two labelled images in a class, each held-out image of it is predicted by a
    classifier that saw one: on the napari sample that estimate was 0.67 where the classifier
    got 11 of 12 slices right (EMPS, 2 a class: estimate 0.30, held-out accuracy 0.32). So the
    text says the estimate is cautious. An estimate no better than always answering the most
    common labelled class says so (from 3 labelled images a class on, where the estimate is not
    understated): "35 %" alone does not tell that guessing gives 33 %.
    """
    if "cv_accuracy" not in metrics:
        return (
            "accuracy on new images: unknown (label at least 2 images of a class to estimate "
            f"it); confidences tempered with a prior temperature of {PRIOR_TEMPERATURE:g}, not "
            "calibrated on your images"
        )
    text = (
        f"estimated accuracy on new images: {accuracy_summary(metrics)} (each of "
        f"{metrics['cv_images']} labelled images predicted by a classifier trained without "
        f"it); confidences calibrated with temperature {metrics['temperature']:.2f}, "
        f"held-out calibration error {metrics['cv_ece_raw']:.2f} -> {metrics['cv_ece']:.2f}"
    )
    guess = metrics.get("cv_guess_rate")
    if metrics.get("cv_fewest_a_class") == 2:
        text += (
            ". With 2 labelled images in a class the estimate is of a classifier that saw 1 "
            "of them, so accuracy and confidences tend to be understated; a third labelled "
            "image of each class makes both more accurate"
        )
    elif guess is not None and metrics["cv_accuracy"] <= guess:
        text += (
            ". That is no better than always answering the most common labelled class "
            f"({guess:.0%}): the features do not yet tell these classes apart; label more "
            "images, or check that the classes differ in what the images show"
        )
    return text
