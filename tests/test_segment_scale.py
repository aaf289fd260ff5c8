"""Segmentation at a working scale: resampling rule, post-processing in nm, scale-bar regions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads.postprocess import (
    PostProcess,
    default_postprocess,
    postprocess_from_meta,
    postprocess_mask,
)
from napari_nanowire.core.heads.scale import (
    WorkingScale,
    default_tile,
    default_working_scale,
    probabilities_to_original,
    resample_mask,
    to_working,
    working_from_meta,
)
from napari_nanowire.core.heads.scalebar import fill_annotations, find_annotations
from napari_nanowire.core.model.metadata import ModelMeta, SegmenterMeta


def test_default_working_scale_brings_long_side_to_target_without_calibration():
    working = default_working_scale([(1024, 768), (1024, 1024), (2048, 1024)], [None] * 3)
    assert working.pixel_size_nm is None and working.downsample == pytest.approx(1024 / 384, 1e-3)
    image, mask = to_working(np.random.default_rng(0).random((1024, 768)), None, None, working)
    assert image.shape == (384, 288) and image.dtype == np.float32 and mask is None
    # small images are never enlarged
    assert default_working_scale([(200, 300)]).downsample == 1.0


def test_working_pixel_size_follows_calibration_and_overrides():
    working = default_working_scale([(1024, 1024)], [0.054], pixel_size_nm=0.216)
    assert working.downsample == pytest.approx(4.0) and working.pixel_size_nm == 0.216
    # calibrated images go to the nm size, whatever their own pixel size ...
    assert working.factor(0.108) == pytest.approx(0.5)
    assert working.working_pixel_nm(0.108) == 0.216
    # ... uncalibrated ones are shrunk by the stored factor
    assert working.factor(None) == pytest.approx(0.25)
    derived = default_working_scale([(1024, 1024)], [0.05, None])
    assert derived.pixel_size_nm == pytest.approx(0.05 * 1024 / 384, 1e-3)
    with pytest.raises(NanowireError, match="positive"):
        WorkingScale(pixel_size_nm=-1.0)


def test_working_scale_round_trips_through_model_meta():
    working = WorkingScale(0.3, 2.5)
    meta = ModelMeta(encoder="tiny", segmenter=SegmenterMeta(tile=64, working=working.to_meta()))
    assert working_from_meta(meta) == working
    # a segmenter from before working scales ran at the model's pixel size, full resolution
    old = ModelMeta(encoder="tiny", pixel_size_nm=2.0, segmenter=SegmenterMeta(tile=64))
    assert working_from_meta(old) == WorkingScale(2.0, 1.0)


def test_thin_strokes_survive_shrinking_and_masks_keep_their_values():
    mask = np.zeros((400, 400), np.uint8)
    mask[100, 20:380] = 2  # a 1 px wire stroke
    mask[300:302, 20:380] = 1  # a 2 px background stroke
    small = resample_mask(mask, (100, 100), unlabelled=0)
    assert (small[25, 5:95] == 2).all() and (small[75, 5:95] == 1).all()
    # a plain vote (no unlabelled value) drops a stroke covering 1/4 of each footprint
    assert not (resample_mask(mask, (100, 100)) == 2).any()
    dense = np.zeros((64, 64), np.uint16)
    dense[10:40, 10:40] = 7
    big = resample_mask(dense, (128, 128))
    assert big.dtype == np.uint16 and set(np.unique(big)) == {0, 7}
    assert (big == 7).sum() == 4 * 30 * 30


def test_probabilities_come_back_to_the_original_grid():
    probs = np.zeros((2, 8, 8), np.float32)
    probs[0], probs[1, :, 4:] = 1.0, 1.0
    probs[0, :, 4:] = 0.0
    up = probabilities_to_original(probs, (32, 30))
    assert up.shape == (2, 32, 30)
    assert np.allclose(up.sum(0), 1.0)
    assert (up.argmax(0)[:, :14] == 0).all() and (up.argmax(0)[:, 16:] == 1).all()


def test_default_tile_follows_the_working_image():
    assert default_tile([(384, 288)]) == 256
    assert default_tile([(100, 90)]) == 128
    assert default_tile([(20, 30)]) == 64


def test_postprocess_removes_specks_and_fills_holes_by_area_in_nm():
    mask = np.zeros((100, 100), np.uint8)
    mask[20:60, 20:60] = 1
    mask[30:32, 30:32] = 0  # 4 px hole
    mask[40:46, 21:27] = 0  # 36 px hole by the edge (inside solid object it would be filled)
    mask[80, 80] = 1  # 1 px speck
    mask[5:10, 80:90] = 2  # 50 px object of class 2
    settings = PostProcess(min_object_nm2=4 * 10.0, min_hole_nm2=4 * 10.0)
    out = postprocess_mask(mask, settings, pixel_size_nm=2.0)  # 4 nm^2 per px: 10 px minimum
    assert out[80, 80] == 0 and (out[30:32, 30:32] == 1).all()
    assert (out[40:46, 21:27] == 0).all() and (out[5:10, 80:90] == 2).all()
    assert out.dtype == np.uint8 and mask[80, 80] == 1  # input untouched
    # at 0.5 nm/px the same nm^2 are 160 px: the 50 px object and the 36 px hole go as well
    finer = postprocess_mask(mask, settings, pixel_size_nm=0.5)
    assert (finer[5:10, 80:90] == 0).all() and (finer[40:46, 21:27] == 1).all()
    # uncalibrated images use the px^2 sizes; disabled settings change nothing
    assert postprocess_mask(mask, PostProcess(min_object_px2=2))[80, 80] == 0
    assert (postprocess_mask(mask, PostProcess(min_object_px2=2, enabled=False)) == mask).all()


def test_fill_holes_fills_every_enclosed_hole_but_not_open_background():
    mask = np.zeros((100, 100), np.uint8)
    mask[10:90, 10:60] = 1
    mask[20:80, 20:50] = 0  # a 1800 px ring hole, as a net leaves in a large particle
    mask[0:40, 70:100] = 1
    mask[10:20, 85:100] = 0  # a notch open to the image edge: background, not a hole
    sized = postprocess_mask(mask, PostProcess(min_hole_px2=100))
    assert (sized[20:80, 20:50] == 0).all()  # above the minimum hole: kept
    filled = postprocess_mask(mask, PostProcess(min_hole_px2=100, fill_holes=True))
    assert (filled[20:80, 20:50] == 1).all() and (filled[10:20, 85:100] == 0).all()
    assert (filled[mask > 0] == 1).all() and not filled[95:, :].any()
    framed = np.ones((100, 100), np.uint8)
    framed[2:-2, 2:-2] = 0  # a false frame around the field encloses all of its background
    framed[40:60, 40:60] = 1
    framed[45:55, 45:55] = 0  # and a particle's inside
    out = postprocess_mask(framed, PostProcess(fill_holes=True))
    assert (out[45:55, 45:55] == 1).all() and (out[10:30, 10:30] == 0).all()
    # stored in a model file's settings and read back
    meta = ModelMeta(
        encoder="tiny",
        segmenter=SegmenterMeta(tile=64, postprocess=PostProcess(fill_holes=True).to_meta()),
    )
    assert postprocess_from_meta(meta).fill_holes


def test_a_hole_inside_a_solid_particle_is_filled_and_a_network_opening_is_not():
    yy, xx = np.mgrid[:200, :200]
    particle = ((yy - 60) ** 2 + (xx - 60) ** 2 < 40**2).astype(np.uint8)
    particle[(yy - 60) ** 2 + (xx - 60) ** 2 < 12**2] = 0  # a bright centre the net left out
    mesh = np.zeros((200, 200), np.uint8)
    mesh[110:200:30, 100:200] = mesh[110:200, 100:200:30] = 1  # wires 1 px wide, 29 px openings
    mesh = ndimage.binary_dilation(mesh, iterations=2).astype(np.uint8)  # 5 px wide
    out = postprocess_mask(np.maximum(particle, mesh), PostProcess(min_hole_px2=100))
    assert (out[55:65, 55:65] == 1).all()  # 450 px hole, far above the minimum, filled
    assert (out[120:135, 110:125] == 0).all()  # the mesh's openings stay background
    unclean = postprocess_mask(np.maximum(particle, mesh), PostProcess(min_hole_px2=0))
    assert (unclean[55:65, 55:65] == 0).all()  # no hole filling asked for: none
    bundle = np.zeros((200, 200), np.uint8)
    bundle[20:28, 20:180] = bundle[31:39, 20:180] = 1  # two touching wires, a 3 px gap
    bundle[28:31, 20:24] = bundle[28:31, 176:180] = 1  # joined at both ends
    out = postprocess_mask(bundle, PostProcess(min_hole_px2=100))
    assert (out[28:31, 30:170] == 0).all()  # the long sliver between them stays background


def test_postprocess_defaults_follow_the_working_scale():
    settings = default_postprocess(WorkingScale(0.2, 4.0), 0.05)
    assert settings.min_object_nm2 == pytest.approx(16 * 0.2**2)
    assert settings.min_object_px2 == 16 * 16
    # in original pixels both forms agree for an image at the training pixel size
    assert settings.areas_px(0.05)[0] == pytest.approx(settings.min_object_px2)
    old = ModelMeta(encoder="tiny", segmenter=SegmenterMeta(tile=64))
    assert postprocess_from_meta(old).enabled is False
    with pytest.raises(NanowireError, match="min_hole_nm2"):
        PostProcess(min_hole_nm2=-1)


def micrograph_with_bar(seed: int = 0, bar: bool = True) -> np.ndarray:
    """A noisy grey 256 px picture with dark blobs, and a white bar with 'text' (glyphs)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(120, 15, (256, 320)).clip(20, 220)
    yy, xx = np.mgrid[:256, :320]
    for cy, cx in rng.integers(30, 220, (5, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 15**2] = 40
    if bar:
        image[228:234, 220:300] = 255
        for x in range(222, 296, 12):  # digits and unit above the bar
            image[212:222, x : x + 7] = 255
            image[215:219, x + 2 : x + 5] = 120
    return image.astype(np.uint8)


def test_scale_bar_and_its_text_are_found_and_nothing_else():
    region, found = find_annotations(micrograph_with_bar())
    assert [a.kind for a in found] == ["bar"]
    assert region[230, 250] and region[216, 224] and region[216, 290]  # bar and glyphs
    assert region.sum() < 0.05 * region.size and not region[100:200, :200].any()
    for seed in range(3):
        assert find_annotations(micrograph_with_bar(seed, bar=False))[1] == []


def with_dark_glyphs(heights: list[int], x: int, y: int = 232) -> np.ndarray:
    """A figure with a white bar (rows 200-205, columns 220-300) and dark glyphs of
    ``heights`` from column ``x``, their bottoms on row ``y``: the other polarity, 17 px and
    more under the bar (by default), beyond where :func:`_with_text` looks."""
    image = micrograph_with_bar(bar=False)
    image[200:205, 220:300] = 255
    for k, h in enumerate(heights):
        image[y - h : y, x + 11 * k : x + 11 * k + 7] = 0
    return image


def test_the_bars_length_written_further_off_in_the_other_polarity_is_found_as_text():
    region, found = find_annotations(with_dark_glyphs([10] * 5, 226))
    assert [a.kind for a in found] == ["bar", "text"]
    assert region[227, 229] and region[227, 273] and not region[100:190, :].any()
    filled = fill_annotations(with_dark_glyphs([10] * 5, 226))
    assert filled[222:232, 226:280].min() > 60  # the text is grey like the film around it
    for heights, x in (
        ([10] * 5, 20),  # the same line beside the bar, not over or under it
        ([10, 10], 240),  # two blobs: not a line of text
        ([4, 16, 6, 18, 5], 226),  # blobs of unlike heights
    ):
        assert [a.kind for a in find_annotations(with_dark_glyphs(heights, x))[1]] == ["bar"]


def test_specks_that_barely_stand_out_from_a_white_film_are_not_text():
    image = with_dark_glyphs([], 0)  # the bar alone
    for film, kinds in ((238, ["bar"]), (120, ["bar", "text"])):
        image[212:240, 200:310] = film  # white film under the bar (not painted: < 240), or grey
        for k in range(5):  # five specks a little brighter than it (painted: >= 240)
            image[222:232, 226 + 11 * k : 233 + 11 * k] = 247
        assert [a.kind for a in find_annotations(image)[1]] == kinds


def test_the_soft_bar_of_a_resized_figure_is_found_and_an_elongated_highlight_is_not():
    for seed in range(3):  # a bar blurred by resizing: its top and bottom rows are soft
        soft = ndimage.gaussian_filter(micrograph_with_bar(seed).astype(float), 1.5)
        assert [a.kind for a in find_annotations(soft)[1]] == ["bar"]  # the area rule: none
    yy, xx = np.mgrid[:256, :320]
    for half_height in (3, 4, 5, 6):  # a saturated ellipse, 8-12 x longer than tall
        image = micrograph_with_bar(bar=False)
        image[((yy - 230) / half_height) ** 2 + ((xx - 250) / 36) ** 2 <= 1] = 255
        assert find_annotations(image)[1] == []


def test_a_label_box_near_an_edge_is_found_and_a_lettered_square_in_the_middle_is_not():
    """A white box with a dark letter a few pixels in from the corner (as panel letters of
    real figures sit 1.4-4.3 % in) is an annotation; the same box in the middle is not."""

    def with_box(y: int, x: int) -> np.ndarray:
        image = micrograph_with_bar(bar=False)
        image[y : y + 30, x : x + 30] = 255
        image[y + 8 : y + 22, x + 10 : x + 20] = 30  # the letter
        return image

    for y, x in ((0, 0), (8, 10), (220, 280)):  # on the edge, 3 % in, 3 % from the far corner
        region, found = find_annotations(with_box(y, x))
        assert [a.kind for a in found] == ["box"] and region[y + 15, x + 15]
    assert find_annotations(with_box(110, 140))[1] == []


def test_fill_annotations_paints_over_the_bar_and_its_text_with_the_surrounding_grey():
    image = micrograph_with_bar()
    region, _ = find_annotations(image)
    filled = fill_annotations(image)
    assert filled.dtype == np.float32 and find_annotations(filled)[1] == []
    np.testing.assert_array_equal(filled[~region], image[~region])  # the specimen untouched
    # the background around the bar is grey 120 (noise 15); its dark blobs lie elsewhere
    assert abs(float(np.median(filled[region])) - 120) < 10
    assert filled[region].std() < 8  # smooth: no bar, no glyphs (measured 3.4-3.6, 3 seeds)
    plain = micrograph_with_bar(bar=False)
    assert fill_annotations(plain) is plain


def test_a_databar_is_filled_across_its_whole_height():
    image = micrograph_with_bar(bar=False)
    image[236:] = 0
    image[242:250, 20:200:6] = 255
    filled = fill_annotations(image)
    assert filled[236:].min() > 60 and filled[236:].max() < 180  # grey, neither black nor white


def test_databar_is_found():
    image = micrograph_with_bar(bar=False)
    image[236:] = 0
    image[242:250, 20:200:6] = 255  # white text on the black band
    region, found = find_annotations(image)
    assert [a.kind for a in found] == ["databar"] and region[236:].all()


@pytest.fixture(scope="module")
def working_model(tmp_path_factory):
    """A tiny segmenter trained at half resolution (working downsample 2) on 128 px images."""
    from helpers import PX, encoder_file
    from napari_nanowire.core.data.synthetic import generate_dataset
    from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter

    train = generate_dataset(1, size=128, pixel_size_nm=PX, difficulty=0.3, seed=0)
    out = tmp_path_factory.mktemp("model") / "seg.nwmodel"
    config = SegmenterConfig(
        steps=30, batch_size=4, dense_masks=True, device="cpu", working_downsample=2.0
    )
    images, masks = [i.image for i in train], [i.mask for i in train]
    list(train_segmenter(encoder_file(), images, masks, out, [PX] * len(train), config=config))
    return out


def test_model_file_records_working_scale_tile_and_postprocessing(working_model):
    from helpers import PX
    from napari_nanowire.core.model.modelfile import load_model

    settings = load_model(working_model).meta.segmenter
    assert settings.working == {"pixel_size_nm": 2 * PX, "downsample": 2.0}
    assert settings.tile == 64  # 128 px images at half resolution
    assert settings.postprocess["min_object_nm2"] == pytest.approx(16 * (2 * PX) ** 2)
    assert settings.postprocess["min_object_px2"] == 64 and settings.ignore_scale_bar


def test_predictor_segments_at_working_scale_and_cleans_the_mask(working_model):
    from helpers import PX
    from napari_nanowire.core.data.synthetic import generate_dataset
    from napari_nanowire.core.heads.segment import iou_dice
    from napari_nanowire.core.heads.unet import predict_classes
    from napari_nanowire.core.predict import Predictor

    item = generate_dataset(1, size=96, pixel_size_nm=PX, difficulty=0.3, seed=7)[2]
    predictor = Predictor.load(working_model, device="cpu")
    raw = predictor.configure(postprocess=False).segment(item.image[:, :80], PX)
    assert raw.mask.shape == (96, 80) and raw.mask.dtype == np.uint8
    # the same as predicting the half-size image by hand and enlarging its classes
    half, _ = to_working(item.image[:, :80], None, PX, predictor.working)
    assert half.shape == (48, 40)
    by_hand = resample_mask(predict_classes(predictor.net, half, 64, 16), (96, 80))
    assert (by_hand != raw.mask).mean() < 0.05  # bilinear vs nearest at class borders
    # an image at twice the pixel size is enlarged to the same working pixel size
    coarse = predictor.segment(item.image[::2, ::2], 2 * PX)
    assert coarse.mask.shape == (48, 48)
    # post-processed (the model's default: 64 px^2 at 2 nm/px): no piece below the minimum
    clean = predictor.configure(postprocess=True).segment(item.image, PX).mask
    pieces, n = ndimage.label(clean)
    assert n == 0 or np.bincount(pieces.ravel())[1:].min() >= 64
    # 30 steps on one image learn something: above the wire fraction of the image
    iou, _ = iou_dice(clean, item.mask, 2)
    assert iou > item.mask.mean()


def test_predictor_sets_scale_bar_to_background_and_reports_it(working_model):
    from napari_nanowire.core.predict import Predictor, describe

    image = micrograph_with_bar()
    predictor = Predictor.load(working_model, device="cpu").configure(postprocess=False)
    result = predictor.segment(image)
    assert [a.kind for a in result.ignored] == ["bar"]
    assert not result.mask[228:234, 220:300].any()
    assert describe(result.ignored).startswith("bar ")
    kept = predictor.configure(ignore_scale_bar=False).segment(image)
    assert kept.ignored == []


def test_predict_files_passes_segment_options(working_model, tmp_path):
    import pandas as pd

    from napari_nanowire.core.io import read_image, write_tiff
    from napari_nanowire.core.predict import predict_files

    write_tiff(tmp_path / "bar.tif", micrograph_with_bar(), None)
    out = tmp_path / "out"
    # every object is smaller than 10^5 px^2 of this 256 x 320 image: all background
    options = {"min_object_px2": 1e5, "ignore_scale_bar": False}
    list(predict_files(working_model, [tmp_path / "bar.tif"], out, "cpu", segment_options=options))
    assert not read_image(out / "masks" / "bar.tif").data.any()
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert table["ignored"].tolist() == [""]
    list(predict_files(working_model, [tmp_path / "bar.tif"], out / "2", "cpu"))
    assert pd.read_csv(out / "2" / "predictions.csv")["ignored"][0].startswith("bar ")


def test_predict_cli_fill_holes_and_refinement_reach_the_predictor():
    import argparse

    from napari_nanowire.cli import predict
    from napari_nanowire.cli.common import segment_options

    sub = argparse.ArgumentParser().add_subparsers()
    predict.register(sub)
    parser = sub.choices["predict"]
    args = parser.parse_args(["m.nwmodel", "x.tif", "--out", "o", "--fill-holes"])
    assert segment_options(args) == {"fill_holes": True}
    args = parser.parse_args(["m.nwmodel", "x.tif", "--out", "o", "--no-fill-holes"])
    assert segment_options(args) == {"fill_holes": False}
    args = parser.parse_args(["m.nwmodel", "x.tif", "--out", "o", "--no-refine-intensity"])
    assert segment_options(args) == {"refine_intensity": False}
    assert segment_options(parser.parse_args(["m.nwmodel", "x.tif", "--out", "o"])) == {}
