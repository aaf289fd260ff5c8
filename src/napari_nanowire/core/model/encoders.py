"""One-channel image encoders that expose multi-scale feature maps.

Every encoder maps a (B, 1, H, W) float image batch to five feature maps at strides
2, 4, 8, 16 and 32 (for U-Net skip connections) and to a pooled feature vector (for SSL
projectors and linear classifiers). No pretrained weights are downloaded: encoders start from
random initialisation or from one of our model files.

Adding a backbone is one :func:`register_encoder` call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock

from .modelfile import ModelFile, ModelFileError, load_model


class Encoder(nn.Module):
    """A backbone split into a stem and four stages.

    ``stage_channels`` lists the channel count of the five feature maps returned by
    :meth:`features`; ``out_dim`` is the length of the pooled vector from :meth:`forward`.
    """

    def __init__(self, stem: nn.Module, stages: list[nn.Module], stage_channels: tuple[int, ...]):
        super().__init__()
        self.stem = stem
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(stage_channels)
        self.out_dim = self.stage_channels[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 of the input."""
        x = self.stem(x)
        maps = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features of the deepest stage, shape (B, out_dim)."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x)[-1], 1), 1)


def _from_torchvision(model: resnet.ResNet) -> Encoder:
    """Wrap a torchvision ResNet as a one-channel :class:`Encoder`."""
    conv1 = nn.Conv2d(1, model.conv1.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
    stem = nn.Sequential(conv1, model.bn1, model.relu)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    channels = (model.conv1.out_channels,) + tuple(
        stage[-1].conv3.out_channels
        if hasattr(stage[-1], "conv3")
        else stage[-1].conv2.out_channels
        for stage in stages
    )
    return Encoder(stem, stages, channels)


def _tiny(widths: tuple[int, ...] = (16, 32, 64, 128, 256)) -> Encoder:
    """A small ResNet (one basic block a stage) for CPU-only users and tests."""
    stem = nn.Sequential(
        nn.Conv2d(1, widths[0], kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    )
    stages = []
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        stride = 1 if i == 0 else 2
        down = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
        stages.append(BasicBlock(c_in, c_out, stride=stride, downsample=down))
    return Encoder(stem, stages, widths)


@dataclass(frozen=True)
class EncoderSpec:
    """A registered backbone: how to build it and what it is for."""

    name: str
    build: Callable[[], Encoder]
    description: str


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(name: str, build: Callable[[], Encoder], description: str) -> None:
    """Make a backbone available under ``name`` to every trainer, the CLI and the GUI."""
    ENCODERS[name] = EncoderSpec(name, build, description)


register_encoder(
    "tiny",
    _tiny,
    "small ResNet, 1.2 M parameters: fast on a laptop CPU",
)
register_encoder(
    "resnet18",
    lambda: _from_torchvision(resnet.resnet18(weights=None)),
    "ResNet-18, 11 M parameters: the seed study's backbone size; wants a GPU",
)
register_encoder(
    "resnet50",
    lambda: _from_torchvision(resnet.resnet50(weights=None)),
    "ResNet-50, 24 M parameters: GPU only",
)


def build_encoder(name: str) -> Encoder:
    """A freshly initialised encoder of a registered kind."""
    try:
        spec = ENCODERS[name]
    except KeyError:
        known = ", ".join(sorted(ENCODERS))
        raise ValueError(f"Unknown encoder {name!r}: choose one of {known}.") from None
    return spec.build()


def load_encoder(
    path_or_modelfile: str | os.PathLike | ModelFile, where: str = "(in memory)"
) -> tuple[Encoder, ModelFile]:
    """The encoder stored in a model file, with its weights, in eval mode, and the file.

    Errors name the file: its path, or ``where`` for a model file already in memory.
    """
    if isinstance(path_or_modelfile, ModelFile):
        model = path_or_modelfile
    else:
        model, where = load_model(path_or_modelfile), str(path_or_modelfile)
    name = model.meta.encoder
    if name not in ENCODERS:
        raise ModelFileError(
            f"Model file {where} names encoder {name!r}, which this napari-nanowire does not "
            f"know ({', '.join(sorted(ENCODERS))}); update napari-nanowire."
        )
    encoder = build_encoder(name)
    model.load_part("encoder", encoder, where)
    return encoder.eval(), model
