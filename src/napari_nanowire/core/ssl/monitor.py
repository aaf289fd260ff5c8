"""Pretraining bookkeeping: learning-rate schedule, step seeds, embedding spread, k-NN accuracy
and the optimizer state kept in the model file."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..model.modelfile import ModelFile

# AdamW learning rate at a global batch of 256 view pairs, scaled by sqrt(batch / 256).


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one process's crops at one step, so a resumed run draws what a whole run did."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def lr_at(step: int, total: int, base: float, warmup_fraction: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay to 0."""
    warmup = max(1, round(warmup_fraction * total))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def embedding_moments(z: torch.Tensor) -> torch.Tensor:
    """Sums for the collapse monitor: [count, sum of unit vectors (D), sum of squares (D)]."""
    u = F.normalize(z.detach().float(), dim=1)
    count = torch.tensor([float(len(u))], device=u.device)
    return torch.cat([count, u.sum(dim=0), u.pow(2).sum(dim=0)])


def embedding_std(moments: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings from :func:`embedding_moments` sums.

    About 1/sqrt(D) when embeddings spread over the sphere, near 0 when they collapse to a point.
    """
    count, rest = moments[0], moments[1:]
    d = len(rest) // 2
    mean, sq = rest[:d] / count, rest[d:] / count
    return float((sq - mean.pow(2)).clamp_min(0).sqrt().mean())


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (votes weighted by exp(sim / 0.07)).

    The weighting (as in InstDisc and DINO's monitors) lets near neighbours outvote far ones.
    ``k`` is capped at the smallest class size minus one, so that with few labels the left-out
    image's own class can still fill all k places.
    """
    f = F.normalize(features.float(), dim=1)
    sim = (f @ f.T).fill_diagonal_(-torch.inf)
    n_classes = int(labels.max()) + 1
    smallest = int(torch.bincount(labels, minlength=n_classes).min())
    k = max(1, min(k, smallest - 1, len(f) - 1))
    top_sim, top = sim.topk(k, dim=1)
    votes = torch.zeros(len(f), n_classes, device=f.device)
    votes.scatter_add_(1, labels[top], torch.exp(top_sim / 0.07))
    return float((votes.argmax(dim=1) == labels).float().mean())


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat tensors ``optimizer.<param>.<name>``."""
    return {
        f"optimizer.{pid}.{name}": value.detach().to("cpu").contiguous().clone()
        for pid, state in optimizer.state_dict()["state"].items()
        for name, value in state.items()
    }


def _load_optimizer(optimizer: torch.optim.Optimizer, model: ModelFile, groups: list) -> None:
    """Restore optimizer state saved by :func:`_optimizer_tensors` with its param groups.

    State tensors get their parameter's memory layout back (files store them contiguous):
    fused AdamW silently mixes up elements when a state tensor's strides differ from its
    parameter's (channels_last convolution weights).
    """
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in model.part("optimizer").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    for param, param_state in optimizer.state.items():
        for name, value in param_state.items():
            if value.shape == param.shape:
                param_state[name] = torch.empty_like(param).copy_(value)
