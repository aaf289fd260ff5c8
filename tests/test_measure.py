"""Domain measurements on shapes with known answers, edge cases, options and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_nanowire.cli.main import main
from napari_nanowire.core.data.synthetic import generate_image
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.measure.domain_shape import (
    hull_stats,
    skeleton_and_distance,
    skeleton_stats,
)
from napari_nanowire.core.measure.domains import domain_label_image
from napari_nanowire.core.measure.nematic import nematic_order
from napari_nanowire.core.measure.options import MeasureOptions
from napari_nanowire.core.measure.pruning import main_path, prune_spurs
from napari_nanowire.core.measure.selection import (
    auto_min_area_nm2,
    segmenter_min_area_nm2,
    weighted_median,
)
from napari_nanowire.core.measure.tables import (
    DOMAIN_COLUMNS,
    SUMMARY_COLUMNS,
    measure_domains,
    measure_masks,
    summarize_image,
)
from napari_nanowire.core.model.metadata import ModelMeta, SegmenterMeta
from napari_nanowire.core.model.modelfile import save_model
from napari_nanowire.core.model.random_models import random_model


def bar(shape, centre, length, width, angle_deg):
    """Pixels whose centre lies in a length x width rectangle at angle_deg (+x towards +y)."""
    t = np.deg2rad(angle_deg)
    along, across = np.array([np.sin(t), np.cos(t)]), np.array([np.cos(t), -np.sin(t)])
    rows, cols = np.indices(shape)
    offset = np.stack([rows - centre[0], cols - centre[1]], axis=-1)
    return (np.abs(offset @ along) < length / 2) & (np.abs(offset @ across) < width / 2)


def disc(shape, centre, radius):
    """Pixels whose centre lies within radius of centre."""
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def grid(size, spacing, width):
    """A mesh of horizontal and vertical lines spanning the image."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for start in range(spacing // 2, size, spacing):
        mask[start : start + width, :] = 1
        mask[:, start : start + width] = 1
    return mask


# --- analytic shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("radius", [20, 30])
def test_disc_area_and_equivalent_diameter_within_2_percent(radius):
    # Off-centre so the digitisation is not symmetric; measured errors <= 0.3 % for r = 20-40.
    d = measure_domains(disc((101, 101), (50.3, 49.6), radius)).iloc[0]
    assert d.area_nm2 == pytest.approx(math.pi * radius**2, rel=0.02)
    assert d.equivalent_diameter_nm == pytest.approx(2 * radius, rel=0.02)
    assert d.aspect_ratio == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    ("length", "width", "angle"), [(150, 9, 0), (150, 9, 30), (100, 5, 60), (120, 12, 45)]
)
def test_bar_length_width_and_orientation(length, width, angle):
    # Measured on 900 bars (lengths 40-200 px, widths 3-20 px with length >= 4 widths, angles
    # 0-180 deg in 7.3 deg steps): for lengths 100-200 px the length error is -5.0 % to +1.0 %
    # and the mean width error -1.0 % to +5.1 % (short, square-ended bars are worse: down to
    # -9.6 % and up to +11 % at 40 px). Bounds: 7 %.
    d = measure_domains(bar((220, 220), (110.3, 109.7), length, width, angle)).iloc[0]
    assert d.length_nm == pytest.approx(length, rel=0.07)
    assert d.width_mean_nm == pytest.approx(width, rel=0.07)
    # The median of the local widths is quantised by the distance transform: measured
    # -0.64 to +1.11 px on the same bars; bound 1.5 px.
    assert d.width_median_nm == pytest.approx(width, abs=1.5)
    # Measured within 0.27 deg of the drawn angle.
    assert d.orientation_deg == pytest.approx(angle, abs=1.0)
    assert (d.branch_points, d.end_points) == (0, 2)
    assert d.aspect_ratio == pytest.approx(length / width, rel=0.1)


def test_skeleton_length_counts_diagonal_steps_longer():
    # A one-pixel diagonal line of n pixels is (n - 1) sqrt(2) + 1 long (ends add half a px);
    # the corner-count weight 1.406 instead of sqrt(2) gives 0.6 % less (measured).
    n = 60
    crop = np.eye(n, dtype=bool)
    stats = skeleton_stats(crop, *skeleton_and_distance(crop))
    assert stats.length == pytest.approx((n - 1) * math.sqrt(2) + 1, rel=0.01)
    assert stats.length > 1.3 * n  # a pixel count would say n


def test_feret_diameters_of_axis_aligned_rectangle_are_exact():
    crop = np.ones((7, 40), dtype=bool)
    hull = hull_stats(crop)
    assert (hull.feret_max, hull.feret_min, hull.area) == pytest.approx((math.hypot(7, 40), 7, 280))
    d = measure_domains(np.pad(crop, 3)).iloc[0]
    assert (d.feret_max_nm, d.feret_min_nm) == pytest.approx((math.hypot(7, 40), 7.0))
    assert d.solidity == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feret_diameters_match_brute_force_over_angles(seed):
    rng = np.random.default_rng(seed)
    crop = np.zeros((30, 30), dtype=bool)
    for _ in range(6):
        crop |= disc(crop.shape, rng.uniform(5, 25, 2), rng.uniform(2, 6))
    rows, cols = np.nonzero(crop)
    corners = np.concatenate(
        [np.column_stack([rows + dr, cols + dc]) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)]
    )
    angles = np.deg2rad(np.arange(0.0, 180.0, 0.01))
    widths = np.ptp(corners @ np.stack([np.cos(angles), np.sin(angles)]), axis=0)
    hull = hull_stats(crop)
    assert hull.feret_min == pytest.approx(widths.min(), abs=1e-3)
    assert hull.feret_max == pytest.approx(widths.max(), abs=1e-3)


def test_pixel_size_scales_lengths_and_areas():
    mask = np.zeros((120, 120), dtype=np.uint8)
    mask[bar(mask.shape, (40, 60), 80, 7, 20)] = 1
    mask[disc(mask.shape, (90, 30), 10)] = 1
    s = 2.5
    one = measure_domains(mask, MeasureOptions(pixel_size_nm=1.0))
    scaled = measure_domains(mask, MeasureOptions(pixel_size_nm=s))
    lengths = [c for c in DOMAIN_COLUMNS if c.endswith("_nm")]
    np.testing.assert_allclose(scaled[lengths], one[lengths] * s, rtol=1e-12)
    np.testing.assert_allclose(scaled["area_nm2"], one["area_nm2"] * s**2, rtol=1e-12)
    unitless = ["aspect_ratio", "orientation_deg", "solidity", "branch_points", "end_points"]
    pd.testing.assert_frame_equal(scaled[unitless], one[unitless])
    sum_one = summarize_image(mask, MeasureOptions(pixel_size_nm=1.0))
    sum_scaled = summarize_image(mask, MeasureOptions(pixel_size_nm=s))
    assert sum_scaled.number_density_per_um2[0] == pytest.approx(
        sum_one.number_density_per_um2[0] / s**2
    )
    assert sum_scaled.width_median_nm[0] == pytest.approx(sum_one.width_median_nm[0] * s)


# --- robust shape measures (pruning, main path, caliper fallback) --------------------------


def test_pruning_removes_spurs_shorter_than_the_local_width_only():
    skel = np.zeros((40, 100), dtype=bool)
    skel[20, 10:90] = True  # the wire's centreline
    skel[21:24, 30] = True  # a 3 px spur: 4 px with the step, under the local width 8
    skel[5:20, 60] = True  # a 15 px side branch: longer than the width, kept
    distance = np.full(skel.shape, 4.0)
    pruned = prune_spurs(skel, distance)
    assert not pruned[21:24, 30].any()
    assert pruned[20, 10:90].all() and pruned[5:20, 60].all()
    # The same spur on a thin wire (width 2) is a real branch.
    assert prune_spurs(skel, np.full(skel.shape, 1.0))[21:24, 30].all()


def test_pruning_keeps_two_branches_at_every_junction():
    # A plus of four 3 px arms on a wide blob: every arm is a "spur", yet a line survives.
    skel = np.zeros((9, 9), dtype=bool)
    skel[4, 1:8] = True
    skel[1:8, 4] = True
    pruned = prune_spurs(skel, np.full(skel.shape, 10.0))
    assert pruned.sum() == 7 and pruned[4, 4]


def test_main_path_of_a_t_runs_along_its_bar():
    skel = np.zeros((30, 60), dtype=bool)
    skel[10, 5:55] = True
    skel[11:25, 30] = True
    path = main_path(skel)
    assert path[10, 5:55].all() and path.sum() == 50


def ragged_bar(seed: int) -> np.ndarray:
    """A 150 x 12 px bar at 20 deg with 30 bumps of radius 1-3 px on its outline."""
    rng = np.random.default_rng(seed)
    mask = bar((200, 200), (100.3, 99.7), 150, 12, 20)
    edge = np.argwhere(mask ^ ndimage.binary_erosion(mask))
    for centre in edge[rng.choice(len(edge), 30)]:
        mask |= disc(mask.shape, centre + rng.normal(0, 1, 2), rng.uniform(1, 3))
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ragged_outline_neither_branches_nor_lengthens_the_wire(seed):
    # Measured on seeds 0-5: no branch points after pruning (0-3 before), length +0.3 to
    # +3.8 % (+1.2 to +20 % on the unpruned skeleton) and median width +6.5 to +9.5 % (the
    # bumps add area); bounds 6 % and 15 %.
    d = measure_domains(ragged_bar(seed)).iloc[0]
    assert d.branch_points <= 1
    assert d.length_nm == pytest.approx(150, rel=0.06)
    assert d.skeleton_length_nm < 1.15 * 150
    assert d.width_median_nm == pytest.approx(12, rel=0.15)
    assert not d.short_skeleton


def test_curved_wire_length_follows_the_arc():
    # Half an annulus, centre radius 60 px, width 10 px: length pi * 60 = 188.5 px.
    # Measured 187.6 px and width 10.03 px; bounds 3 % and 5 %.
    rows, cols = np.indices((200, 200))
    radius = np.hypot(rows - 100.2, cols - 99.6)
    arc = (np.abs(radius - 60) < 5) & (rows > 100.2)
    d = measure_domains(arc).iloc[0]
    assert d.length_nm == pytest.approx(math.pi * 60, rel=0.03)
    assert d.width_mean_nm == pytest.approx(10, rel=0.05)
    assert d.width_median_nm == pytest.approx(10, rel=0.05)
    assert not d.short_skeleton and d.feret_min_nm > 60  # a caliper would call it 65 px wide


def test_stubby_domains_are_measured_by_calipers():
    # A 33 px wide wire stub cut by the top edge, 40 px long.
    stub = np.zeros((100, 100), dtype=np.uint8)
    stub[0:40, 30:63] = 1
    d = measure_domains(stub).iloc[0]
    assert d.short_skeleton and d.touches_border
    assert d.width_mean_nm == d.width_median_nm == pytest.approx(33.0)
    assert np.isnan(d.width_iqr_nm)
    assert d.length_nm == pytest.approx(math.hypot(33, 40))
    # A disc is short too: width and length are its diameter (within the pixel grid).
    d = measure_domains(disc((101, 101), (50.3, 49.6), 20)).iloc[0]
    assert d.short_skeleton
    assert d.width_median_nm == pytest.approx(40, abs=1.5)
    assert d.length_nm == pytest.approx(40, abs=2.5)


# --- defaults against specks ---------------------------------------------------------------


def test_default_minimum_area_follows_the_pixel_size_and_the_segmenter():
    assert auto_min_area_nm2(2.0) == 64.0  # 16 px of 4 nm^2
    assert auto_min_area_nm2(0.1) == 1.0  # 16 px would be 0.16 nm^2: the 1 nm^2 floor
    assert auto_min_area_nm2(1.0, model_min_area_nm2=50.0) == 50.0
    assert auto_min_area_nm2(1.0, model_min_area_nm2=5.0) == 16.0
    assert MeasureOptions(pixel_size_nm=0.5).min_area() == 4.0
    assert MeasureOptions(pixel_size_nm=0.5, min_area_nm2=0).min_area() == 0.0

    def meta(postprocess: dict | None) -> ModelMeta:
        return ModelMeta(encoder="tiny", segmenter=SegmenterMeta(tile=64, postprocess=postprocess))

    assert segmenter_min_area_nm2(meta({"min_object_nm2": 30.0, "enabled": True})) == 30.0
    assert segmenter_min_area_nm2(meta({"min_object_nm2": 30.0, "enabled": False})) is None
    assert segmenter_min_area_nm2(meta(None)) is None  # older models: no post-processing
    assert segmenter_min_area_nm2(ModelMeta(encoder="tiny")) is None  # no segmenter


def test_weighted_median_counts_each_value_by_its_weight():
    values = pd.Series([1.0, 2.0, 100.0, np.nan])
    assert weighted_median(values, pd.Series([1.0, 1.0, 10.0, 50.0])) == 100.0
    assert weighted_median(values, pd.Series([5.0, 1.0, 1.0, 1.0])) == 1.0
    assert np.isnan(weighted_median(values, pd.Series([0.0, 0.0, 0.0, 1.0])))


def test_summary_leaves_out_flagged_domains_and_counts_them():
    mask = np.zeros((200, 200), dtype=np.uint8)
    for row in (30, 60, 90):
        mask[bar(mask.shape, (row, 100), 120, 9, 0)] = 1  # three 120 x 9 px wires
    mask[150:190, 0:30] = 1  # a 30 px wide stub cut by the left edge
    rng = np.random.default_rng(0)
    specks = rng.integers(110, 200, (60, 2))
    mask[specks[:, 0], np.clip(specks[:, 1], 40, 199)] = 1  # 1 px specks
    domains = measure_domains(mask)
    small = int(domains.below_min_area.sum())
    assert small > 40 and domains[domains.below_min_area].area_nm2.max() < 16
    row = summarize_image(mask, domains=domains).iloc[0]
    assert (row.domain_count, row.excluded_small, row.length_excluded) == (4, small, 1)
    # Specks do not set the medians: the width is the wires' 9 px (the stub is 30 px).
    assert row.width_median_nm == pytest.approx(9, rel=0.1)
    assert row.length_median_nm == pytest.approx(120, rel=0.05)
    # Weighted by skeleton length the 40 px stub counts less than the three 120 px wires.
    assert row.width_weighted_median_nm == pytest.approx(9, rel=0.1)
    everything = summarize_image(mask, MeasureOptions(include_flagged=True), domains).iloc[0]
    assert everything.domain_count == 4 + small and everything.width_median_nm < 3


# --- edge cases ----------------------------------------------------------------------------


def test_empty_mask_gives_no_domains_and_a_defined_summary():
    mask = np.zeros((40, 50), dtype=np.uint8)
    domains = measure_domains(mask)
    assert len(domains) == 0 and list(domains.columns) == list(DOMAIN_COLUMNS)
    row = summarize_image(mask).iloc[0]
    assert (row.class_name, row.area_fraction, row.domain_count) == ("wire", 0.0, 0)
    assert row.number_density_per_um2 == 0.0
    assert not row.percolates_x and not row.percolates_y
    assert np.isnan([row.width_median_nm, row.length_q1_nm, row.nematic_order]).all()


def test_single_pixel_is_a_unit_domain():
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[4, 4] = 1
    d = measure_domains(mask, MeasureOptions(min_area_nm2=0)).iloc[0]
    # Shorter than two widths: measured by calipers, so its length is the max. Feret diameter.
    assert (d.area_nm2, d.width_mean_nm, d.width_median_nm) == (1, 1, 1)
    assert d.short_skeleton and not d.below_min_area
    assert d.length_nm == pytest.approx(math.sqrt(2))
    assert (d.feret_min_nm, d.feret_max_nm) == pytest.approx((1.0, math.sqrt(2)))
    assert np.isnan(d.orientation_deg) and d.aspect_ratio == 1.0
    assert (d.branch_points, d.end_points) == (0, 0)
    assert np.isfinite(summarize_image(mask).iloc[0].nematic_order)


def test_all_foreground_is_one_percolating_domain():
    mask = np.ones((30, 40), dtype=np.uint8)
    domains = measure_domains(mask)
    assert len(domains) == 1 and bool(domains.touches_border[0])
    assert domains.area_nm2[0] == 1200
    row = summarize_image(mask, domains=domains).iloc[0]
    assert row.area_fraction == 1.0 and row.percolates_x and row.percolates_y
    assert measure_domains(mask, MeasureOptions(exclude_border=True)).empty


# --- percolation and order -----------------------------------------------------------------


def test_mesh_percolates_and_is_disordered():
    row = summarize_image(grid(128, 20, 3)).iloc[0]
    assert row.percolates_x and row.percolates_y
    assert row.domain_count == 1
    # Measured S = 0.018 for this mesh (equal horizontal and vertical wire length); bound 0.1.
    assert row.nematic_order < 0.1


def test_scattered_parallel_wires_do_not_percolate_and_are_ordered():
    mask = np.zeros((128, 128), dtype=np.uint8)
    for centre in [(20, 30), (50, 80), (80, 40), (110, 90)]:
        mask[bar(mask.shape, centre, 40, 5, 30)] = 1
    row = summarize_image(mask).iloc[0]
    assert row.domain_count == 4
    assert not row.percolates_x and not row.percolates_y
    # Measured S = 0.88 here (0.97-0.98 for single 200 px bars: the blurred ends of these
    # short wires weigh more); bound 0.8.
    assert row.nematic_order > 0.8
    assert row.director_deg == pytest.approx(30, abs=2)


def test_one_spanning_wire_percolates_along_it_only():
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[30:35, :] = 1
    row = summarize_image(mask).iloc[0]
    assert row.percolates_x and not row.percolates_y


def test_connectivity_decides_whether_diagonal_contacts_join_domains():
    mask = np.eye(32, dtype=np.uint8)
    eight = summarize_image(mask, MeasureOptions(connectivity=2, min_area_nm2=0)).iloc[0]
    four = summarize_image(mask, MeasureOptions(connectivity=1, min_area_nm2=0)).iloc[0]
    assert (eight.domain_count, eight.percolates_x, eight.percolates_y) == (1, True, True)
    assert (four.domain_count, four.percolates_x, four.percolates_y) == (32, False, False)


def test_nematic_order_of_crossed_and_parallel_skeletons():
    skeleton = np.zeros((100, 100), dtype=bool)
    skeleton[50, 10:90] = True
    order, director = nematic_order(skeleton)
    # Measured S = 0.951 for this 80 px line (its blurred ends); bound 0.9.
    assert order > 0.9 and director == 0.0
    skeleton[10:90, 50] = True
    assert nematic_order(skeleton)[0] < 1e-6  # equal lengths at 90 deg cancel exactly
    assert np.isnan(nematic_order(np.zeros((5, 5), dtype=bool))).all()


def test_percolation_agrees_with_the_synthetic_truth():
    # The generator defines percolation with 4-connected clusters.
    for label, seed in [("network", 0), ("dispersed", 1), ("bundle", 2)]:
        image = generate_image(label, 128, 2.0, 0.0, seed)
        row = summarize_image(image.mask, MeasureOptions(2.0, connectivity=1)).iloc[0]
        assert (row.percolates_x, row.percolates_y) == (image.percolates_x, image.percolates_y)


# --- options and input checks --------------------------------------------------------------


def test_min_area_flags_and_exclude_border_drops_domains_but_not_area_fraction():
    mask = np.zeros((60, 60), dtype=np.uint8)
    mask[0:5, 10:30] = 1  # touches the border, 100 px
    mask[20:30, 20:40] = 1  # 200 px
    mask[50, 50] = 1  # 1 px
    opts = MeasureOptions(pixel_size_nm=2.0, min_area_nm2=10.0, exclude_border=True)
    domains = measure_domains(mask, opts)
    assert domains.area_nm2.tolist() == [800.0, 4.0]
    assert domains.below_min_area.tolist() == [False, True]
    row = summarize_image(mask, opts, domains).iloc[0]
    assert (row.domain_count, row.excluded_small, row.min_area_nm2) == (1, 1, 10.0)
    assert row.area_fraction == pytest.approx(301 / 3600)


def test_classes_are_measured_separately_with_their_names():
    mask = np.zeros((50, 50), dtype=np.uint8)
    mask[5:10, 5:45] = 1
    mask[20:30, 20:30] = 2
    opts = MeasureOptions(class_names={1: "wire", 2: "particle", 3: "bundle"})
    domains = measure_domains(mask, opts)
    assert domains[["class_value", "class_name"]].values.tolist() == [[1, "wire"], [2, "particle"]]
    summary = summarize_image(mask, opts, domains)
    assert summary.class_name.tolist() == ["wire", "particle", "bundle"]
    assert summary.domain_count.tolist() == [1, 1, 0]
    default = summarize_image(mask)
    assert default.class_name.tolist() == ["wire", "class_2"]


@pytest.mark.parametrize(
    ("mask", "options", "message"),
    [
        (np.zeros((2, 8, 8)), None, "2D"),
        (np.full((8, 8), 0.5), None, "threshold"),
        (np.full((8, 8), -1), None, "negative"),
        (np.full((8, 8), 2), MeasureOptions(class_names={1: "wire"}), "no name"),
    ],
)
def test_bad_masks_are_refused_with_a_reason(mask, options, message):
    with pytest.raises(NanowireError, match=message):
        measure_domains(mask, options)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pixel_size_nm": 0.0},
        {"connectivity": 3},
        {"min_area_nm2": -1.0},
        {"class_names": {0: "bg"}},
    ],
)
def test_bad_options_are_refused(kwargs):
    with pytest.raises(NanowireError):
        MeasureOptions(**kwargs)


def test_measure_masks_names_images_and_uses_each_pixel_size():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[10:20, 10:30] = 1
    domains, summary = measure_masks([("a", mask, 1.0), ("b", mask, 3.0), ("c", mask * 0, None)])
    assert domains.image.tolist() == ["a", "b"]
    assert domains.area_nm2.tolist() == [200.0, 1800.0]
    assert list(summary.columns) == ["image", *SUMMARY_COLUMNS]
    assert summary.image.tolist() == ["a", "b", "c"]
    with pytest.raises(NanowireError, match="^b: "):
        measure_masks([("a", mask, 1.0), ("b", mask - 2.0, 1.0)])


# --- command line --------------------------------------------------------------------------


def test_cli_writes_domain_and_summary_tables(tmp_path, capsys):
    one = np.zeros((64, 64), dtype=np.uint8)
    one[30:35, :] = 1
    two = np.zeros((2, 64, 64), dtype=np.uint8)
    two[:, 10:20, 10:50] = 1
    two[1, 40:50, 40:50] = 2
    write_tiff(tmp_path / "one.tif", one, 2.0)
    write_tiff(tmp_path / "two.tif", two, 0.5)
    out = tmp_path / "out"
    argv = ["measure", str(tmp_path / "one.tif"), str(tmp_path / "two.tif"), "--out", str(out)]
    assert main([*argv, "--class", "fibre", "--class", "particle"]) == 0
    assert "3 mask(s), 4 domains" in capsys.readouterr().out
    domains = pd.read_csv(out / "domains.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(p.name for p in out.iterdir()) == ["domains.csv", "measure.json", "summary.csv"]
    settings = json.loads((out / "measure.json").read_text())
    assert settings["min_area_nm2"] == "auto" and "16 px" in settings["min_area_rule"]
    # auto: 16 px of 4 nm^2 at 2 nm/px, 16 px of 0.25 nm^2 = 4 nm^2 at 0.5 nm/px
    assert summary.min_area_nm2.tolist() == [64.0] * 2 + [4.0] * 4
    names = [str(tmp_path / n) for n in ("one.tif", "two.tif[0]", "two.tif[1]")]
    assert summary.image.tolist() == [name for name in names for _ in range(2)]
    assert summary.class_name.tolist() == ["fibre", "particle"] * 3
    assert summary.domain_count.tolist() == [1, 0, 1, 0, 1, 1]
    fibres = summary[summary.class_name == "fibre"]
    assert fibres.pixel_size_nm.tolist() == pytest.approx([2.0, 0.5, 0.5])
    assert fibres.percolates_x.tolist() == [True, False, False]
    assert domains.area_nm2.tolist() == pytest.approx([1280.0, 100.0, 100.0, 25.0])
    assert main([*argv, "--pixel-size", "1", "--exclude-border"]) == 2  # out holds tables
    assert main([*argv, "--pixel-size", "1", "--exclude-border", "--overwrite"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    # Without --class, value 1 is "wire" and other values present are named by number.
    assert summary.class_name.tolist() == ["wire", "wire", "wire", "class_2"]
    assert summary.pixel_size_nm.tolist() == [1.0] * 4
    assert summary.domain_count.tolist() == [0, 1, 1, 1]
    # A model file's post-processing minimum raises the automatic one; a number overrides it.
    model = random_model(tile=64)
    model.meta.segmenter.postprocess = {"min_object_nm2": 150.0}
    save_model(model, tmp_path / "seg.nwmodel")
    model_args = ["--pixel-size", "1", "--model", str(tmp_path / "seg.nwmodel"), "--overwrite"]
    assert main([*argv, *model_args]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary.min_area_nm2.tolist() == [150.0] * 4
    assert summary.domain_count.tolist() == [1, 1, 1, 0]
    assert summary.excluded_small.tolist() == [0, 0, 0, 1]
    assert main([*argv, "--min-area-nm2", "0", "--overwrite"]) == 0
    assert pd.read_csv(out / "summary.csv").min_area_nm2.tolist() == [0.0] * 4
    with pytest.raises(SystemExit):
        main([*argv, "--min-area-nm2", "small"])
    assert "'small' is not 'auto'" in capsys.readouterr().err


def test_cli_without_any_pixel_size_says_to_pass_one(tmp_path, capsys):
    write_tiff(tmp_path / "bare.tif", np.ones((8, 8), dtype=np.uint8), None)
    code = main(["measure", str(tmp_path / "bare.tif"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "bare.tif" in err and "--pixel-size" in err
    assert not (tmp_path / "out").exists()


def test_area_weighted_diameter_is_not_set_by_small_false_domains():
    yy, xx = np.mgrid[:200, :200]
    mask = np.zeros((200, 200), dtype=np.uint8)
    for cy, cx in ((50, 50), (50, 150), (150, 100)):
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 20**2] = 1  # 40 px discs
    for k in range(5):
        mask[100 + 18 * k : 105 + 18 * k, 5:10] = 1  # 5 x 5 px false domains, above 16 px
    row = summarize_image(mask).iloc[0]
    assert row.domain_count == 8
    assert row.diameter_median_nm == pytest.approx(np.sqrt(4 * 25 / np.pi), rel=0.01)
    assert row.diameter_area_weighted_median_nm == pytest.approx(40, rel=0.03)


def test_split_touching_measures_each_disc_of_a_clump(tmp_path):
    yy, xx = np.mgrid[:120, :200]
    mask = np.zeros((120, 200), dtype=np.uint8)
    for cx in (50, 86, 122):  # three r = 20 discs, each overlapping the next by 4 px
        mask[(yy - 60) ** 2 + (xx - cx) ** 2 <= 20**2] = 1
    mask[10:14, 180:184] = 1  # a 4 x 4 square stays one domain
    whole = summarize_image(mask).iloc[0]
    split_options = MeasureOptions(split_touching=True)
    domains = measure_domains(mask, split_options)
    split = summarize_image(mask, split_options, domains).iloc[0]
    assert (whole.domain_count, split.domain_count) == (2, 4)
    discs = domains.nlargest(3, "area_nm2")
    assert discs.equivalent_diameter_nm.to_numpy() == pytest.approx(38, rel=0.06)
    assert whole.diameter_area_weighted_median_nm > 1.6 * 38  # the clump as one "particle"
    assert split.diameter_area_weighted_median_nm == pytest.approx(38, rel=0.06)
    labels = domain_label_image(mask, domains, 2, split_touching=True)
    assert len(np.unique(labels)) == 5 and set(np.unique(labels[mask == 0])) == {0}
    write_tiff(tmp_path / "clump.tif", mask, 1.0)
    assert (
        main(
            [
                "measure",
                str(tmp_path / "clump.tif"),
                "--split-touching",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t" / "measure.json").read_text())["split_touching"] is True
    assert len(pd.read_csv(tmp_path / "t" / "domains.csv")) == 4
