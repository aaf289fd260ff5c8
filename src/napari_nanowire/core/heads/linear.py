"""The linear head of the classifier: fitting, held-out calibration, probabilities.

A class-balanced, L2-regularised logistic regression on standardised features; fitted in
numpy by L-BFGS so that cross-validation can refit it once per labelled image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from torch import nn

from .calibrate import PRIOR_TEMPERATURE, calibration_report, held_out_logits


class LinearHead(nn.Module):
    """Standardise pooled features with stored statistics, then one linear layer."""

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (B, n_classes)."""
        return self.linear((features - self.mean) / self.scale)


def class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """Loss weights inversely proportional to class counts, so every class counts equally."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float32)
    weights = np.where(counts > 0, len(targets) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def fit_linear_head(
    features: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    epochs: int = 300,
    weight_decay: float = 1e-3,
    column_weights: np.ndarray | None = None,
) -> tuple[LinearHead, list[float]]:
    """Class-balanced L2-regularised logistic regression on (N, D) features.

    Minimises the class-weighted mean cross-entropy plus ``weight_decay`` times the squared
    weights (biases free) on standardised features with L-BFGS, at most ``epochs`` iterations,
    from zero weights: deterministic, and about 100x faster than first-order steps in torch on
    the few-label problems it serves, which matters when cross-validation refits it per image.
    ``column_weights`` multiply the standardised columns (see :func:`block_weights`); they are
    folded into the head's stored scale. Returns the head and the cross-entropy after each
    iteration (the first at zero weights).
    """
    x = np.asarray(features, np.float64)
    mean = x.mean(0)
    scale = _column_scale(x) if len(x) > 1 else np.ones(x.shape[1])
    if column_weights is not None:
        scale = scale / np.asarray(column_weights, np.float64)
    z = (x - mean) / scale
    n_dim = z.shape[1]
    onehot = np.eye(n_classes)[targets]
    sample_w = class_weights(targets, n_classes).numpy().astype(np.float64)[targets]
    sample_w /= sample_w.sum()

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * n_dim].reshape(n_classes, n_dim)
        logp = log_softmax(z @ w.T + theta[n_classes * n_dim :], axis=1)
        ce = -float((sample_w * (onehot * logp).sum(1)).sum())
        residual = sample_w[:, None] * (np.exp(logp) - onehot)
        grad_w = residual.T @ z + 2 * weight_decay * w
        return ce + weight_decay * float((w * w).sum()), np.concatenate(
            [grad_w.ravel(), residual.sum(0)]
        )

    def cross_entropy(theta: np.ndarray) -> float:
        return loss_grad(theta)[0] - weight_decay * float(
            np.square(theta[: n_classes * n_dim]).sum()
        )

    theta = np.zeros(n_classes * (n_dim + 1))
    history = [cross_entropy(theta)]
    result = minimize(
        loss_grad,
        theta,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": epochs},
        callback=lambda t: history.append(cross_entropy(t)),
    )
    head = LinearHead(n_dim, n_classes)
    with torch.no_grad():
        head.mean.copy_(torch.as_tensor(mean))
        head.scale.copy_(torch.as_tensor(scale))
        head.linear.weight.copy_(torch.as_tensor(result.x[: n_classes * n_dim]).view(n_classes, -1))
        head.linear.bias.copy_(torch.as_tensor(result.x[n_classes * n_dim :]))
    return head.eval(), history


SCALE_FLOOR = 1e-3
"""Smallest column scale, as a share of the median column's standard deviation."""


def _column_scale(x: np.ndarray) -> np.ndarray:
    """Each column's standard deviation, at least :data:`SCALE_FLOOR` of the median column's.

    A column (nearly) constant over the labelled images, e.g. an encoder unit that is zero on
    all of them, would otherwise be blown up to unit variance from rounding noise, get a
    weight, and turn any image where it is not zero into a 100 % sure answer: so it was for a
    slice of the napari sample with 8 labelled slices (logit 943, p = 1.00, wrong class).
    """
    std = x.std(0)
    return np.maximum(std, max(SCALE_FLOOR * float(np.median(std)), 1e-12))


def block_weights(sizes: Sequence[int], emphasis: Sequence[float] | None = None) -> np.ndarray:
    """Column weights giving each block of features (e.g. 768 learned, 57 descriptors) the
    same total say in an L2-regularised head: 1 / sqrt(block size) for each of its columns,
    times the block's ``emphasis`` (default 1 for every block)."""
    emphasis = [1.0] * len(sizes) if emphasis is None else emphasis
    return np.concatenate(
        [np.full(n, e / np.sqrt(n)) for n, e in zip(sizes, emphasis, strict=True) if n]
    )


def head_logits(head: LinearHead, features: np.ndarray) -> np.ndarray:
    """(N, n_classes) logits of a fitted head on (N, D) features."""
    with torch.no_grad():
        return head.cpu()(torch.as_tensor(features, dtype=torch.float32)).numpy()


def cross_validate(features: np.ndarray, targets: np.ndarray, n_classes: int, **fit_kwargs) -> dict:
    """Held-out accuracy and temperature of the linear head (see :mod:`.calibrate`).

    When no class has two labelled images nothing can be held out: the accuracy is unknown and
    the temperature is :data:`.calibrate.PRIOR_TEMPERATURE`.
    """

    def fit(x: np.ndarray, y: np.ndarray):
        head, _ = fit_linear_head(x, y, n_classes, **fit_kwargs)
        return lambda z: head_logits(head, z)

    held = held_out_logits(features, targets, fit)
    if held is None:
        return {"temperature": PRIOR_TEMPERATURE}
    logits, index = held
    return calibration_report(logits, targets[index], index)


def cross_val_accuracy(
    features: np.ndarray, targets: np.ndarray, n_classes: int, **fit_kwargs
) -> float | None:
    """Held-out accuracy of the linear head; None when no class has two labelled images."""
    return cross_validate(features, targets, n_classes, **fit_kwargs).get("cv_accuracy")


def class_probabilities(
    head: LinearHead, features: np.ndarray, temperature: float = 1.0
) -> np.ndarray:
    """(N, n_classes) class probabilities: softmax of the head's logits / ``temperature``."""
    return softmax(head_logits(head, features) / temperature, 1)
