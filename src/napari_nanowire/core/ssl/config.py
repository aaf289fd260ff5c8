"""What pretraining is given and what it trains: the settings, the encoder-plus-projector."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import NanowireError
from ..model.encoders import ENCODERS, Encoder
from .augment import AugmentConfig
from .losses import check_method

# AdamW learning rate at a global batch of 256 view pairs, scaled by sqrt(batch / 256).


BASE_LR = 2e-3


@dataclass
class PretrainConfig:
    """Settings of one pretraining run; all of them are stored in the model file."""

    method: str = "simclr"  # or "barlow"
    encoder: str = "tiny"
    init: str | None = None  # starting weights: None (random), "imagenet" or a state-dict file
    epochs: int = 10
    batch_size: int = 64  # view pairs per step and process
    image_size: int = 96  # crop side in px fed to the network
    steps_per_epoch: int | None = None  # None: crops to cover every image about once
    lr: float | None = None  # None: BASE_LR * sqrt(global batch / 256)
    temperature: float = 0.2  # SimCLR
    offdiag_weight: float = 5e-3  # Barlow Twins lambda
    device: str = "auto"
    seed: int = 0
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1  # share of all steps spent warming the learning rate up
    projector_hidden_dim: int | None = None  # None: see ssl.projector_dims
    projector_out_dim: int | None = None
    knn_k: int = 5  # neighbours for the k-NN monitor
    collapse_fraction: float = 0.2  # warn when embedding std < this * 1/sqrt(dim)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        """Raise NanowireError naming the first setting that cannot work."""
        check_method(self.method)
        if self.encoder not in ENCODERS:
            known = ", ".join(sorted(ENCODERS))
            raise NanowireError(f"Unknown encoder {self.encoder!r}: choose one of {known}.")
        positive = {"epochs": self.epochs, "temperature": self.temperature}
        positive.update(steps_per_epoch=self.steps_per_epoch or 1, lr=self.lr or 1.0)
        for name, value in positive.items():
            if not value > 0:
                raise NanowireError(f"{name}={value} must be positive.")
        if self.batch_size < 2:
            raise NanowireError(f"batch_size={self.batch_size}: SSL needs at least 2 per batch.")
        if self.image_size < 32:
            raise NanowireError(f"image_size={self.image_size}: use at least 32 px.")
        if not 0 <= self.warmup_fraction < 1:
            raise NanowireError(f"warmup_fraction={self.warmup_fraction} must be in [0, 1).")
        self.augment.check()


class SSLNet(nn.Module):
    """Encoder followed by the projection head; forward gives the projections."""

    def __init__(self, encoder: Encoder, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))
