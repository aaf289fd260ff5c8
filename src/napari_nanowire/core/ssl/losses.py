"""Self-supervised objectives: SimCLR (NT-Xent) and Barlow Twins, with their projectors.

Both losses take the projections of two views, ``z1`` and ``z2`` of shape (N, D), where row i
of each comes from the same image. Under torch.distributed, :func:`ssl_loss` gathers the
projections of every process (with gradient), so negatives (SimCLR) and the cross-correlation
statistics (Barlow Twins) cover the global batch, as in the original methods.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..errors import NanowireError

METHODS = ("simclr", "barlow")


def check_method(method: str) -> None:
    """Raise NanowireError unless ``method`` is a known SSL method."""
    if method not in METHODS:
        raise NanowireError(f"Unknown SSL method {method!r}: choose one of {', '.join(METHODS)}.")


def projector_dims(
    method: str, encoder_dim: int, hidden: int | None = None, out: int | None = None
) -> tuple[int, int]:
    """(hidden, output) widths of the projector; None picks the papers' proportions.

    SimCLR: hidden as wide as the encoder output, 128 outputs (2048 and 128 on ResNet-50).
    Barlow Twins gains from wide outputs: 4x the encoder width (8192 on ResNet-50).
    """
    check_method(method)
    default = (encoder_dim, 128) if method == "simclr" else (4 * encoder_dim, 4 * encoder_dim)
    return hidden or default[0], out or default[1]


def build_projector(method: str, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The projection head: Linear-BN-ReLU blocks then a linear output layer.

    SimCLR uses one hidden block (SimCLR v2 style), Barlow Twins two, as in the papers.
    """
    check_method(method)
    n_hidden = 1 if method == "simclr" else 2
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy over all 2N - 2 negatives.

    Each of the 2N views must pick its partner among the other 2N - 1 by cosine similarity
    divided by ``temperature``; the loss is the mean cross entropy over the 2N views.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -torch.inf)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, offdiag_weight: float) -> torch.Tensor:
    """Barlow Twins: push the views' cross-correlation matrix towards the identity.

    Each feature is standardised over the batch (BatchNorm without affine, as in the paper);
    loss = sum_i (1 - C_ii)^2 + offdiag_weight * sum_{i != j} C_ij^2.
    """
    n = z1.shape[0]
    a, b = (F.batch_norm(z.float(), None, None, training=True) for z in (z1, z2))
    c = a.T @ b / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + offdiag_weight * off_diag


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for the local rows.

    torch.distributed.nn.functional.all_gather does this too but is deprecated and its
    replacement is private; this uses only public collectives that gloo and NCCL both have.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z.contiguous())
        ctx.rows = slice(dist.get_rank() * len(z), (dist.get_rank() + 1) * len(z))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rows]


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` (same shape everywhere) from every process in rank order, with gradient.

    Outside torch.distributed (or with one process) this returns ``z`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return _GatherWithGrad.apply(z)


def ssl_loss(
    method: str, z1: torch.Tensor, z2: torch.Tensor, *, temperature: float, offdiag_weight: float
) -> torch.Tensor:
    """The loss of ``method`` on the global batch (gathered across processes).

    Every process computes the same global loss; the gather's backward sums the gradient from
    every copy, and DistributedDataParallel averages over processes, so the parameters get
    exactly the gradient of the global loss.
    """
    check_method(method)
    z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    if method == "simclr":
        return nt_xent_loss(z1, z2, temperature)
    return barlow_twins_loss(z1, z2, offdiag_weight)
