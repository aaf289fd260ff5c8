"""One-channel image encoders that expose multi-scale feature maps.

Every encoder maps a (B, 1, H, W) float image batch to five feature maps at strides
2, 4, 8, 16 and 32 (for U-Net skip connections) and to a pooled feature vector (for SSL
projectors and linear classifiers). Encoders start from random initialisation, from one of our
model files, or (ResNets) from torchvision-compatible weights: ImageNet's, downloaded once into
the torch cache on request, or a user's state dict (see :func:`initial_weights`).

Adding a backbone is one :func:`register_encoder` call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock

from ..errors import NanowireError
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


IMAGENET_WEIGHTS = {
    "resnet18": resnet.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": resnet.ResNet50_Weights.IMAGENET1K_V1,
}
"""The torchvision ImageNet weights ``init="imagenet"`` loads, per encoder."""


def build_encoder(name: str, init: str | os.PathLike | None = None) -> Encoder:
    """A freshly initialised encoder of a registered kind.

    ``init``: None for random weights, ``"imagenet"`` or the path of a torchvision ResNet state
    dict for a ResNet encoder (see :func:`initial_weights`).
    """
    try:
        spec = ENCODERS[name]
    except KeyError:
        known = ", ".join(sorted(ENCODERS))
        raise ValueError(f"Unknown encoder {name!r}: choose one of {known}.") from None
    encoder = spec.build()
    if init is not None:
        encoder.load_state_dict(initial_weights(name, init, encoder))
    return encoder


def initial_weights(
    name: str, init: str | os.PathLike, encoder: Encoder
) -> dict[str, torch.Tensor]:
    """Torchvision ResNet weights mapped onto ``encoder``'s keys, its first conv made 1-channel.

    ``init`` is ``"imagenet"`` (torchvision's weights from the torch cache, downloaded there once
    when missing) or a file holding a torchvision-compatible ResNet state dict (optionally
    under "state_dict" or "model", keys optionally prefixed "module."). The RGB filters of the
    first convolution are summed, so a gray image gives the response the RGB net gave to the
    same gray image. The classifier ``fc.*`` is ignored; anything else that does not fit
    (missing, unknown or differently shaped keys) is refused, listing what did not match.
    """
    if name not in IMAGENET_WEIGHTS:
        raise NanowireError(
            f"Pretrained starting weights exist for {', '.join(IMAGENET_WEIGHTS)} encoders, not "
            f"{name!r}: choose one of those, or leave the starting weights out."
        )
    if str(init) == "imagenet":
        state, source = _imagenet_state(name), f"the ImageNet weights of {name}"
    else:
        state, source = _read_state_dict(Path(init)), str(init)
    return _map_torchvision(state, encoder.state_dict(), source)


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict for ``name``, from the cache or downloaded once."""
    weights = IMAGENET_WEIGHTS[name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(path), progress=False)
        except Exception as exc:  # offline, proxy, disk: all end in the same advice
            raise NanowireError(
                f"Could not download the ImageNet weights of {name} ({exc}). Without network, "
                f"download {weights.url} on another machine and place it at {path}."
            ) from exc
    return _read_state_dict(path)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor state dict from a torch file (loaded without running code from it)."""
    if not path.is_file():
        raise NanowireError(f"Starting weights {path} do not exist; check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NanowireError(
            f"Cannot read starting weights {path} ({exc}): expected a torch file of a ResNet "
            "state dict (torch.save(model.state_dict(), path))."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise NanowireError(f"Starting weights {path} hold a {type(state).__name__}, not a dict.")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def _map_torchvision(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename torchvision ResNet keys to :class:`Encoder` keys and check every one fits."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        if key == "conv1.weight" and value.ndim == 4 and value.shape[1] == 3:
            value = value.sum(1, keepdim=True)
        new = key.replace("conv1.", "stem.0.", 1) if key.startswith("conv1.") else key
        new = new.replace("bn1.", "stem.1.", 1) if key.startswith("bn1.") else new
        if key.startswith("layer") and key[5:6].isdigit():
            new = f"stages.{int(key[5]) - 1}{key[6:]}"
        renamed[new] = value
    missing = sorted(set(target) - set(renamed))
    unknown = sorted(set(renamed) - set(target))
    shapes = sorted(
        f"{k} {tuple(renamed[k].shape)} vs {tuple(target[k].shape)}"
        for k in set(renamed) & set(target)
        if renamed[k].shape != target[k].shape
    )
    if missing or unknown or shapes:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"
            for label, keys in (
                ("missing", missing),
                ("not in the encoder", unknown),
                ("other shape", shapes),
            )
            if keys
        ]
        raise NanowireError(
            f"Starting weights from {source} do not fit this encoder: {'; '.join(problems)}. "
            "Give a state dict of the same torchvision ResNet (resnet18 or resnet50)."
        )
    return renamed


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
