"""The suggest command: which images of a collection to label next, from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nanowire.cli.main import main
from napari_nanowire.core.model.random_models import save_random_model


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Eight 64 px images of two kinds (smooth ramps a_*, fine stripes b_*), a classifier model
    file, and a labels table that labels one ramp."""
    root = tmp_path_factory.mktemp("suggest")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64] / 64.0
    for i in range(4):
        ramp = xx * (1 + i / 4) + 0.02 * rng.normal(size=xx.shape)
        stripes = np.sin(xx * 64 * (2.5 + i / 8)) + 0.3 * rng.normal(size=xx.shape)
        tifffile.imwrite(images / f"a_{i}.tif", ramp.astype(np.float32))
        tifffile.imwrite(images / f"b_{i}.tif", stripes.astype(np.float32))
    save_random_model(root / "model.nwmodel", class_names=("ramp", "stripes"))
    (images / "labels.csv").write_text("image,label\na_0.tif,ramp\n")
    return root


def run_suggest(collection, *options: str) -> int:
    folder = collection / "images"
    args = ["suggest", str(collection / "model.nwmodel"), str(folder), "--device", "cpu"]
    return main([*args, "--labels", str(folder / "labels.csv"), *options])


def test_suggest_ranks_the_kind_no_label_covers_first(collection, tmp_path, capsys):
    out = tmp_path / "ranked.csv"
    assert run_suggest(collection, "-n", "2", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "8 image(s), 1 labelled" in printed
    table = pd.read_csv(out)
    assert len(table) == 8 and set(table.columns) >= {"image", "predicted", "label next"}
    ranked = table.dropna(subset=["label next"]).sort_values("label next")
    assert list(ranked["label next"]) == [1, 2]
    names = [name.rsplit("/", 1)[-1] for name in ranked["image"]]
    assert names[0].startswith("b_")  # the stripes: a part no labelled image covers
    assert "a_0.tif" not in names  # labelled already
    assert table.loc[table["image"].str.endswith("a_0.tif"), "your label"].item() == "ramp"
    assert printed.index(names[0]) < printed.index(names[1])  # printed in rank order


def test_suggest_refuses_to_replace_a_table_and_names_a_missing_labelled_image(
    collection, tmp_path, capsys
):
    out = tmp_path / "ranked.csv"
    out.write_text("mine\n")
    assert run_suggest(collection, "--out", str(out)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "mine\n"  # the user's file is untouched
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\ngone.tif,ramp\n")
    args = ["suggest", str(collection / "model.nwmodel"), str(collection / "images")]
    assert main([*args, "--labels", str(labels), "--device", "cpu"]) == 2
    assert "gone.tif" in capsys.readouterr().err
