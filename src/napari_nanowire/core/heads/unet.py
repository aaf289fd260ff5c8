"""The U-Net segmenter: a decoder on the encoder's feature maps, and tiled prediction with it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NanowireError
from ..model.encoders import Encoder
from ..model.modelfile import ModelFile
from .features import (
    encoder_from,
)
from .tiling import assemble, sliding_window


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def default_widths(stage_channels: Sequence[int]) -> list[int]:
    """Decoder widths at strides 16, 8, 4, 2 and 1: the skip's width, at most 256."""
    return [min(c, 256) for c in stage_channels[3::-1]] + [16]


class UNetDecoder(nn.Module):
    """Upsampling path over the encoder's five maps, with a skip from each and the input."""

    def __init__(
        self, stage_channels: Sequence[int], n_classes: int, widths: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.widths = list(widths or default_widths(stage_channels))
        skips = [*stage_channels[3::-1], 1]
        c_in = stage_channels[4]
        blocks = []
        for skip, width in zip(skips, self.widths, strict=True):
            blocks.append(conv_block(c_in + skip, width))
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c_in, n_classes, 1)

    def forward(self, image: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B, n_classes, H, W) from the input batch and its five feature maps."""
        x = maps[4]
        for block, skip in zip(self.blocks, [*maps[3::-1], image], strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.out(x)


class UNet(nn.Module):
    """Encoder plus U-Net decoder: (B, 1, H, W) images to (B, n_classes, H, W) logits."""

    def __init__(self, encoder: Encoder, decoder: UNetDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits."""
        return self.decoder(x, self.encoder.features(x))


def probability_strips(
    net: UNet,
    image: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, np.ndarray]]:
    """Blended class probabilities of a prepared image, as (row, (C, rows, W)) strips."""
    net.eval().to(device)

    @torch.inference_mode()
    def tile_fn(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles[:, None]).to(device)
        return torch.softmax(net(x).float(), 1).cpu().numpy()

    n_classes = net.decoder.out.out_channels
    yield from sliding_window(image, tile_fn, n_classes, tile, overlap, batch_size)


def predict_classes(net: UNet, image: np.ndarray, tile: int, overlap: int, device="cpu"):
    """Dense class-index map (uint8) of a prepared image, assembled from the strips."""
    return (
        assemble(probability_strips(net, image, tile, overlap, device=device))
        .argmax(0)
        .astype(np.uint8)
    )


def load_segmenter(model: ModelFile, path: str = "") -> UNet:
    """The U-Net stored in a model file with a segmenter head."""
    settings = model.meta.segmenter
    if settings is None or "segmenter" not in model.meta.heads:
        raise NanowireError(
            f"Model file {path} has no segmenter head; train one with train-segmenter."
        )
    encoder = encoder_from(model, path)
    decoder = UNetDecoder(
        encoder.stage_channels, len(model.meta.mask_classes or ()), settings.decoder_widths
    )
    model.load_part("segmenter", decoder, path)
    return UNet(encoder, decoder).eval()
