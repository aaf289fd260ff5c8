"""Encoders, devices and normalisation: the pieces every model stands on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire.core.devices import describe_devices, resolve_device
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.model.encoders import ENCODERS, build_encoder
from napari_nanowire.core.model.preprocess import normalize


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoders_take_one_channel_and_give_five_scales(name):
    encoder = build_encoder(name).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        maps = encoder.features(x)
        pooled = encoder(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]
    assert tuple(m.shape[1] for m in maps) == encoder.stage_channels
    assert pooled.shape == (2, encoder.out_dim)


def test_unknown_encoder_lists_the_known_ones():
    with pytest.raises(ValueError, match="tiny"):
        build_encoder("vgg")


def test_auto_device_falls_back_to_what_exists():
    device = resolve_device("auto")
    if not torch.cuda.is_available():
        assert device.type in ("mps", "cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert describe_devices()[-1][0] == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")


def test_normalize_is_robust_and_refuses_nan():
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 50, (64, 64)).astype(np.uint16)
    image[0, 0] = 65535
    out = normalize(image)
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    assert out.max() < 4
    assert np.all(normalize(np.full((8, 8), 7.0)) == 0)
    image = image.astype(float)
    image[3, 3] = np.nan
    with pytest.raises(NanowireError, match="NaN"):
        normalize(image)
