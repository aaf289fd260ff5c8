"""Starting encoders from torchvision ResNet weights: the torch cache, a user's file, mismatches.

No network: the "ImageNet" file is a seeded random ResNet-18 state dict written into a
temporary torch cache, and downloading is replaced by a failure.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from torchvision.models import resnet

from napari_nanowire.cli.main import main
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.model.encoders import IMAGENET_WEIGHTS, build_encoder
from napari_nanowire.core.model.modelfile import load_model


@pytest.fixture(scope="module")
def resnet18_state():
    """A torchvision ResNet-18 state dict with seeded random weights (stands for ImageNet's)."""
    torch.manual_seed(7)
    return resnet.resnet18(weights=None).state_dict()


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    """An empty torch cache in tmp_path; downloading fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def check_mapped(encoder, state) -> None:
    """The encoder holds ``state``: conv1 summed over RGB, layers renamed to stages."""
    mine = encoder.state_dict()
    assert mine["stem.0.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(mine["stem.0.weight"], state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(mine["stem.1.running_var"], state["bn1.running_var"])
    torch.testing.assert_close(mine["stages.0.0.conv1.weight"], state["layer1.0.conv1.weight"])
    torch.testing.assert_close(mine["stages.3.1.bn2.bias"], state["layer4.1.bn2.bias"])


@pytest.mark.slow
def test_imagenet_weights_come_from_the_torch_cache(torch_cache, resnet18_state):
    torch_cache.mkdir(parents=True)
    torch.save(resnet18_state, torch_cache / IMAGENET_WEIGHTS["resnet18"].url.rsplit("/", 1)[-1])
    check_mapped(build_encoder("resnet18", "imagenet"), resnet18_state)


def test_offline_without_cached_weights_names_the_file_to_place(torch_cache):
    with pytest.raises(NanowireError) as error:
        build_encoder("resnet18", "imagenet")
    message = str(error.value)
    assert str(torch_cache / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


@pytest.mark.slow
def test_a_users_state_dict_is_mapped_by_key_names(tmp_path, resnet18_state):
    wrapped = {"state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}}
    torch.save(wrapped, tmp_path / "mine.pt")
    check_mapped(build_encoder("resnet18", tmp_path / "mine.pt"), resnet18_state)


def test_a_mismatched_state_dict_is_refused_listing_what_did_not_match(tmp_path, resnet18_state):
    state = dict(resnet18_state)
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(3)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(NanowireError) as error:
        build_encoder("resnet18", tmp_path / "bad.pt")
    message = str(error.value)
    assert "missing (1): stages.3.1.bn2.weight" in message
    assert "not in the encoder (1): extra.weight" in message
    assert "stages.0.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in message
    assert str(tmp_path / "bad.pt") in message


def test_starting_weights_need_a_resnet_and_a_readable_file(tmp_path):
    with pytest.raises(NanowireError, match="resnet18, resnet50 encoders, not 'tiny'"):
        build_encoder("tiny", "imagenet")
    with pytest.raises(NanowireError, match="do not exist"):
        build_encoder("resnet18", tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(NanowireError, match="Cannot read starting weights"):
        build_encoder("resnet18", tmp_path / "junk.pt")


@pytest.mark.slow
def test_pretrain_init_starts_from_the_file(tmp_path, resnet18_state):
    torch.save(resnet18_state, tmp_path / "start.pt")
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        write_tiff(images / f"{k}.tif", rng.random((48, 48)).astype(np.float32), 1.0)
    out = tmp_path / "enc.nwmodel"
    args = ["pretrain", str(images), "--out", str(out), "--encoder", "resnet18"]
    args += ["--init", str(tmp_path / "start.pt"), "--epochs", "1", "--steps-per-epoch", "1"]
    args += ["--batch-size", "2", "--image-size", "32", "--device", "cpu", "--lr", "1e-6"]
    assert main(args) == 0
    model = load_model(out)
    assert model.meta.ssl.extra["init"] == str(tmp_path / "start.pt")
    stem = model.part("encoder")["stem.0.weight"]
    # One step at lr 1e-6 moves weights by about 1e-6: still the summed RGB filters.
    torch.testing.assert_close(
        stem, resnet18_state["conv1.weight"].sum(1, keepdim=True), atol=1e-4, rtol=0
    )
