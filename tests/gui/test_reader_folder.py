"""A folder with one unreadable file opens the rest and names the bad file."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_nanowire.core.io import ReadError
from napari_nanowire.gui import reader


def test_a_corrupt_png_is_left_out_and_named(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(reader, "show_warning", warnings.append)
    rng = np.random.default_rng(0)
    for i in range(3):
        iio.imwrite(tmp_path / f"img{i}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    (tmp_path / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut off" * 3)
    ((data, kwargs, kind),) = reader.read_layers(str(tmp_path))
    assert kind == "image" and data.shape == (2, 16, 16)
    assert kwargs["name"] == tmp_path.name and kwargs["metadata"]["names"] == ["img0", "img2"]
    assert len(warnings) == 1 and "img1.png" in warnings[0] and "1 of 3" in warnings[0]


def test_a_folder_of_only_bad_files_is_still_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ReadError, match="a.png"):
        reader.read_layers(str(tmp_path))
