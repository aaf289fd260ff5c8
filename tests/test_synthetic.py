"""Ground truth of the synthetic TEM generator: consistent, physical, and true to each class.

Bounds were measured with the generator over seeds 0-9 (10 images per class each, 128 px, at
1 and 2 nm/px, difficulty 0 and 1) and set with a margin; each comment gives the measurement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from skimage.morphology import skeletonize

from napari_nanowire.cli.main import main
from napari_nanowire.core.data.synthetic import (
    CLASSES,
    WIDTH_RANGE_NM,
    generate_dataset,
    generate_image,
    write_dataset,
)
from napari_nanowire.core.errors import NanowireError

SIZE = 128


@pytest.fixture(scope="module")
def clean():
    """Eight 128 px images per class at 1 nm/px and difficulty 0."""
    return generate_dataset(8, size=SIZE, pixel_size_nm=1.0, seed=0)


@pytest.fixture(scope="module")
def hard():
    """Six 128 px images per class at 1 nm/px and difficulty 1."""
    return generate_dataset(6, size=SIZE, pixel_size_nm=1.0, difficulty=1.0, seed=0)


def of_class(items, label):
    return [item for item in items if item.label == label]


def drawn_area_nm2(item) -> float:
    """Area a wire sweeps inside the image: width x inside length, plus a half disc per end
    inside the field (the round caps of the swept disc)."""
    wires, field = item.wires, SIZE * item.pixel_size_nm

    def inside(x, y):
        return ((x >= 0) & (x < field) & (y >= 0) & (y < field)).astype(int)

    ends = inside(wires.x_start_nm, wires.y_start_nm) + inside(wires.x_end_nm, wires.y_end_nm)
    return float((wires.width_nm * wires.length_nm + ends * np.pi * wires.width_nm**2 / 8).sum())


def nematic_order(wires: pd.DataFrame) -> float:
    """2D nematic order parameter of the wires' axial orientations, weighted by length."""
    angle, weight = np.radians(2 * wires.orientation_deg), wires.length_nm
    order = np.hypot((weight * np.cos(angle)).sum(), (weight * np.sin(angle)).sum())
    return float(order / weight.sum())


def contrast_to_noise(item) -> float:
    """(background mean - wire mean) / background std, background kept 3 px off the wires."""
    wire = item.mask.astype(bool)
    background = item.image[~ndimage.binary_dilation(wire, iterations=3)]
    return float((background.mean() - item.image[wire].mean()) / background.std())


def test_arrays_and_tables_agree(clean, hard):
    for item in clean + hard:
        assert item.image.dtype == np.float32 and item.image.shape == (SIZE, SIZE)
        assert item.mask.dtype == np.uint8 and item.instances.dtype == np.uint16
        np.testing.assert_array_equal(item.mask == 1, item.instances > 0)
        assert set(np.unique(item.mask)) <= {0, 1}
        assert item.wires.wire_id.tolist() == list(range(1, len(item.wires) + 1))
        assert set(np.unique(item.instances)) - {0} <= set(item.wires.wire_id)
        assert (item.wires.length_nm > 0).all()
        assert (item.wires.length_nm <= item.wires.total_length_nm + 1e-9).all()
    # A wire shows in the instances unless later wires cover all of it: measured 0 of 5892
    # wires hidden at difficulty 0, 2 of 8088 at difficulty 1.
    for item in clean:
        assert set(np.unique(item.instances)) - {0} == set(item.wires.wire_id)


@pytest.mark.parametrize("pixel_size_nm", [1.0, 2.0])
def test_mask_area_matches_drawn_widths_and_lengths(pixel_size_nm):
    # Singular and dispersed wires do not touch, so the mask area is the sum of the swept
    # areas. Measured area / drawn area 0.921-1.020 per image (mean 0.990-0.997) over 400
    # images; bounds 0.12 per image, 0.03 on the mean.
    items = generate_dataset(6, SIZE, pixel_size_nm, seed=3, classes=("singular", "dispersed"))
    ratios = np.array([item.mask.sum() * pixel_size_nm**2 / drawn_area_nm2(item) for item in items])
    assert np.all(np.abs(ratios - 1) < 0.12), ratios
    assert abs(ratios.mean() - 1) < 0.03


def test_networks_percolate_and_separate_wires_never_do(clean, hard):
    # Measured: 400 of 400 networks percolate both ways, at difficulty 0 and 1; singular and
    # dispersed images never percolate (by construction, at every difficulty).
    for items in (clean, hard):
        networks = of_class(items, "network")
        assert np.mean([n.percolates_x and n.percolates_y for n in networks]) >= 0.9
        for label in ("singular", "dispersed"):
            for item in of_class(items, label):
                assert not item.percolates_x and not item.percolates_y, item.name


def test_percolation_flags_follow_the_mask(clean):
    for item in clean:
        labels, _ = ndimage.label(item.mask)
        left, right = set(labels[:, 0]) - {0}, set(labels[:, -1]) - {0}
        top, bottom = set(labels[0]) - {0}, set(labels[-1]) - {0}
        assert item.percolates_x == bool(left & right)
        assert item.percolates_y == bool(top & bottom)


def test_bundles_are_aligned_and_dispersed_wires_are_not(clean, hard):
    # Measured per bundle (>= 3 wires): order >= 0.985 at difficulty 0, mean 0.87 at 1;
    # dispersed images (>= 3 wires): mean 0.45 (random orientations).
    def per_bundle(items):
        return [
            nematic_order(group)
            for item in of_class(items, "bundle")
            for _, group in item.wires[item.wires.bundle_id > 0].groupby("bundle_id")
            if len(group) >= 3
        ]

    tight, loose = per_bundle(clean), per_bundle(hard)
    dispersed = [nematic_order(d.wires) for d in of_class(clean, "dispersed")]
    assert min(tight) > 0.95
    assert np.mean(dispersed) < 0.7
    assert np.mean(loose) < np.mean(tight) - 0.05
    for item in of_class(clean, "singular") + of_class(clean, "dispersed"):
        assert (item.wires.bundle_id == 0).all()


def test_same_seed_same_image_other_seed_other_image():
    a, b = generate_image("network", 96, seed=5), generate_image("network", 96, seed=5)
    for field in ("image", "mask", "instances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    pd.testing.assert_frame_equal(a.wires, b.wires)
    c = generate_image("network", 96, seed=6)
    assert not np.array_equal(a.mask, c.mask)
    assert not np.array_equal(a.image, c.image)


def test_dataset_seeds_do_not_depend_on_other_classes_or_counts():
    small = generate_dataset(2, 64, classes=("network",), seed=4)
    large = generate_dataset(3, 64, classes=("bundle", "network"), seed=4)
    by_name = {item.name: item for item in large}
    for item in small:
        np.testing.assert_array_equal(item.image, by_name[item.name].image)
    assert [i.name for i in large] == [
        f"{c}_{k:03d}" for c in ("bundle", "network") for k in range(3)
    ]


def test_widths_are_physical_and_scale_with_pixel_size(clean):
    low, high = WIDTH_RANGE_NM
    assert all(item.wires.width_nm.between(low, high).all() for item in clean)
    # The width seen in the mask (twice the distance transform on the skeleton), in nm, over
    # the true width of single-wire images: measured median 1.017 at 1 nm/px and 1.025 at
    # 2 nm/px; so the width in px halves when the pixel size doubles. Bounds 0.93-1.10.
    for pixel_size_nm in (1.0, 2.0):
        ratios = []
        for seed in range(12):
            item = generate_image("singular", SIZE, pixel_size_nm, seed=seed)
            if len(item.wires) == 1:
                wire = item.mask.astype(bool)
                width_px = 2 * np.median(ndimage.distance_transform_edt(wire)[skeletonize(wire)])
                ratios.append(width_px * pixel_size_nm / item.wires.width_nm.iloc[0])
        assert len(ratios) >= 4
        assert 0.93 < np.median(ratios) < 1.10, (pixel_size_nm, ratios)


def test_wires_are_dark_on_a_bright_background(clean):
    # Measured mean(background) - mean(wire) >= 0.106 at difficulty 0; bound 0.05.
    for item in clean:
        wire = item.mask.astype(bool)
        assert item.image[~wire].mean() - item.image[wire].mean() > 0.05, item.name
        assert 0.4 < np.median(item.image[~wire]) <= 1.0


def test_difficulty_lowers_contrast_to_noise(clean, hard):
    # Measured median contrast-to-noise per pixel: about 5 at difficulty 0, 0.7 at 1.
    easy = np.median([contrast_to_noise(item) for item in clean])
    noisy = np.median([contrast_to_noise(item) for item in hard])
    assert noisy < 0.5 * easy


def test_write_dataset_round_trip(tmp_path):
    items = generate_dataset(1, 64, pixel_size_nm=1.5, seed=2)
    out = write_dataset(items, tmp_path / "set")
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns) == ["image", "label"]
    assert labels.label.tolist() == list(CLASSES)
    truth = pd.read_csv(out / "truth.csv")
    spec = "image label pixel_size_nm percolates_x percolates_y area_fraction n_wires"
    assert list(truth.columns) == spec.split()
    wires = pd.read_csv(out / "wires.csv")
    assert list(wires.columns[:4]) == ["image", "wire_id", "width_nm", "length_nm"]
    assert len(wires) == sum(len(item.wires) for item in items) == truth.n_wires.sum()
    for item, row in zip(items, truth.itertuples(), strict=True):
        assert row.image == f"images/{item.name}.tif"
        assert row.area_fraction == pytest.approx(item.mask.mean())
        for folder, array in (
            ("images", item.image),
            ("masks", item.mask),
            ("instances", item.instances),
        ):
            path = out / folder / f"{item.name}.tif"
            np.testing.assert_array_equal(tifffile.imread(path), array)
            with tifffile.TiffFile(path) as tif:
                assert tif.imagej_metadata["unit"] == "nm"
                numerator, denominator = tif.pages[0].tags["XResolution"].value
                assert denominator / numerator == pytest.approx(1.5, rel=1e-5)
    assert not list(out.rglob("*.tmp"))


def test_write_dataset_refuses_duplicate_names(tmp_path):
    item = generate_image("singular", 64, seed=1, name="same")
    with pytest.raises(NanowireError, match="unique"):
        write_dataset([item, item], tmp_path)


def test_unknown_class_is_named():
    with pytest.raises(NanowireError, match="'nanotube'"):
        generate_image("nanotube")


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["synth", str(out), "--n-per-class", "1", "--size", "48", "--seed", "7"]
    assert main(args + ["--pixel-size", "2", "--difficulty", "0.5"]) == 0
    line = capsys.readouterr().out.strip()
    assert "wrote 4 images" in line and str(out) in line
    assert len(list((out / "images").glob("*.tif"))) == 4
    assert pd.read_csv(out / "truth.csv").pixel_size_nm.eq(2.0).all()


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--size", "31", "size 31 px"),
        ("--n-per-class", "0", "per class 0"),
        ("--difficulty", "1.5", "Difficulty 1.5"),
        ("--difficulty", "-0.1", "Difficulty -0.1"),
        ("--pixel-size", "0", "Pixel size 0.0 nm/px"),
        ("--pixel-size", "-1", "Pixel size -1.0 nm/px"),
    ],
)
def test_cli_bad_values_exit_2_naming_the_value(tmp_path, capsys, option, value, named):
    args = ["synth", str(tmp_path / "x"), "--n-per-class", "1", "--size", "48", option, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-nanowire synth: error:") and named in err
    assert not (tmp_path / "x").exists()
