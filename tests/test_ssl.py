"""SimCLR and Barlow Twins losses against values worked out by hand on tiny tensors."""

import math

import pytest
import torch

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.ssl.losses import (
    barlow_twins_loss,
    build_projector,
    nt_xent_loss,
    projector_dims,
    ssl_loss,
)

# Zero-mean, mutually orthogonal +-1 columns (rows of an 8x8 Hadamard matrix without the
# constant one): each standardises to itself, and any two have correlation 0.
_H = torch.tensor(
    [
        [1, -1, 1, -1, 1, -1, 1, -1],
        [1, 1, -1, -1, 1, 1, -1, -1],
        [1, -1, -1, 1, 1, -1, -1, 1],
        [1, 1, 1, 1, -1, -1, -1, -1],
    ],
    dtype=torch.float32,
).T  # (8 samples, 4 features)


def test_nt_xent_identical_views_of_orthogonal_images():
    # Views [e1, e2] twice: each view's partner has cosine 1, its 2 negatives cosine 0, so
    # loss = -log(e^(1/t) / (e^(1/t) + 2)) = log(1 + 2 e^(-1/t)).
    z = torch.eye(2)
    t = 0.5
    assert nt_xent_loss(z, z.clone(), t).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))


def test_nt_xent_collapsed_and_decorrelated_views_are_at_chance():
    # All 2N views equal, or all mutually orthogonal: the partner is one of 2N - 1 equals.
    n = 3
    collapsed = torch.ones(n, 5)
    assert nt_xent_loss(collapsed, collapsed, 0.2).item() == pytest.approx(math.log(2 * n - 1))
    basis = torch.eye(2 * n)
    assert nt_xent_loss(basis[:n], basis[n:], 0.2).item() == pytest.approx(math.log(2 * n - 1))


def test_nt_xent_ignores_scale_and_rewards_matching_partners():
    z1 = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    same = nt_xent_loss(z1, 3 * z1, 0.2).item()
    assert same == pytest.approx(nt_xent_loss(z1, z1, 0.2).item(), rel=1e-5)
    assert same < nt_xent_loss(z1, z1.roll(1, dims=0), 0.2).item()


def test_barlow_identical_decorrelated_views_cost_nothing():
    # C = I exactly (up to BatchNorm's eps): both terms vanish.
    assert barlow_twins_loss(_H, _H.clone(), 5e-3).item() == pytest.approx(0.0, abs=1e-3)


def test_barlow_unrelated_views_cost_one_per_feature():
    # Features of view 2 are uncorrelated with every feature of view 1: C = 0, loss = D.
    z1, z2 = _H[:, :2], _H[:, 2:]
    assert barlow_twins_loss(z1, z2, 5e-3).item() == pytest.approx(2.0, abs=1e-3)


def test_barlow_collapsed_features():
    # Constant features standardise to 0: C = 0 and loss = D.
    const = torch.full((8, 3), 2.5)
    assert barlow_twins_loss(const, const, 5e-3).item() == pytest.approx(3.0, abs=1e-3)
    # Every feature the same signal (dimensional collapse): C is all ones, the diagonal is
    # perfect and the D(D-1) off-diagonal entries cost lambda each.
    lam, d = 0.01, 3
    same = _H[:, :1].repeat(1, d)
    expected = lam * d * (d - 1)
    assert barlow_twins_loss(same, same, lam).item() == pytest.approx(expected, rel=1e-3)


def test_ssl_loss_dispatches_and_refuses_unknown_method():
    z = torch.eye(2)
    assert ssl_loss("simclr", z, z, temperature=0.5, offdiag_weight=0).item() == pytest.approx(
        nt_xent_loss(z, z, 0.5).item()
    )
    with pytest.raises(NanowireError, match="byol"):
        ssl_loss("byol", z, z, temperature=0.5, offdiag_weight=0)


def test_projectors_follow_the_papers_proportions():
    assert projector_dims("simclr", 512) == (512, 128)
    assert projector_dims("barlow", 2048) == (8192, 8192)
    assert projector_dims("barlow", 256, hidden=64, out=32) == (64, 32)
    simclr, barlow = build_projector("simclr", 16, 32, 8), build_projector("barlow", 16, 32, 8)
    assert sum(isinstance(m, torch.nn.Linear) for m in simclr) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in barlow) == 3
    assert barlow(torch.randn(4, 16)).shape == (4, 8)
