"""Mask measurements as classifier features, and a classifier that uses its segmenter's masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads import classify
from napari_nanowire.core.heads.classify import ClassifierConfig, train_classifier
from napari_nanowire.core.heads.morph_features import (
    DESCRIPTOR_SIZE,
    MORPH_NAMES,
    SPECTRUM_CROP,
    SPECTRUM_SIGMAS,
    SPECTRUM_SIZE,
    mask_features,
    scale_spectrum,
)
from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, load_model
from napari_nanowire.core.predict import Predictor

PX = 4.0


def features_of(mask: np.ndarray, px: float = 1.0) -> dict[str, float]:
    return dict(zip(MORPH_NAMES, mask_features(mask, px).tolist(), strict=True))


def test_a_bar_across_the_image_measures_its_size_shape_and_percolation():
    mask = np.zeros((60, 80), np.uint8)
    mask[20:30, :] = 1  # 10 px x 80 px, at 2 nm/px: 20 nm x 160 nm, spans x
    f = features_of(mask, 2.0)
    assert f["area_fraction"] == pytest.approx(10 / 60)
    assert f["log_domain_count"] == pytest.approx(np.log(2))
    assert np.expm1(f["log_width_median"]) == pytest.approx(20, rel=0.15)
    assert np.expm1(f["log_length_median"]) == pytest.approx(160, rel=0.15)
    assert np.exp(f["log_aspect_ratio_median"]) == pytest.approx(8, rel=0.1)
    assert f["percolates_x"] == 1 and f["percolates_y"] == 0
    assert f["nematic_order"] > 0.9 and f["solidity_median"] == pytest.approx(1, abs=0.02)


def test_round_particles_are_circular_and_counted():
    yy, xx = np.mgrid[:100, :100]
    mask = np.zeros((100, 100), np.uint8)
    for cy, cx in [(25, 25), (25, 75), (75, 25), (75, 75)]:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 1
    f = features_of(mask)
    assert np.expm1(f["log_domain_count"]) == pytest.approx(4)
    assert f["circularity_median"] > 0.85  # a disc: 1 in the continuum
    assert abs(f["log_aspect_ratio_median"]) < 0.1 and f["percolates_x"] == 0


def test_touching_particles_are_counted_one_by_one():
    """Two rows of three touching discs: two domains, but six particles, each round."""
    yy, xx = np.mgrid[:120, :200]
    mask = np.zeros((120, 200), np.uint8)
    for cy in (30, 90):
        for cx in (40, 77, 114):  # radius 20 discs 37 px apart: they overlap at narrow necks
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 20**2] = 1
    f = features_of(mask)
    assert np.expm1(f["log_domain_count"]) == pytest.approx(2)
    assert np.expm1(f["log_particle_count"]) == pytest.approx(6)
    assert np.exp(f["log_particle_aspect_ratio_median"]) < 1.3
    assert np.exp(f["log_aspect_ratio_median"]) > 2  # the merged rows look elongated


def test_a_subset_of_names_gives_those_columns_and_unknown_names_are_refused():
    mask = np.zeros((60, 80), np.uint8)
    mask[20:30, :] = 1
    older = MORPH_NAMES[:14]  # the columns of classifier files written before particle counts
    np.testing.assert_array_equal(mask_features(mask, 2.0, older), mask_features(mask, 2.0)[:14])
    with pytest.raises(NanowireError, match="'hexagonality'.*update napari-nanowire"):
        mask_features(mask, 2.0, [*older, "hexagonality"])


def test_an_empty_mask_gives_zeros():
    assert not mask_features(np.zeros((32, 32), np.uint8)).any()


@pytest.fixture(scope="module")
def with_segmenter(tmp_path_factory):
    """A tiny random-init encoder with a segmenter trained 3 steps on synthetic masks."""
    torch.manual_seed(0)
    base = ModelFile(ModelMeta(encoder="tiny", image_size=32))
    base.set_part("encoder", build_encoder("tiny"))
    items = generate_dataset(1, size=64, pixel_size_nm=PX, seed=2)
    out = tmp_path_factory.mktemp("seg") / "seg.nwmodel"
    config = SegmenterConfig(steps=3, tile=32, dense_masks=True, device="cpu", seed=0)
    images, masks = [i.image for i in items], [i.mask for i in items]
    list(train_segmenter(base, images, masks, out, [PX] * 4, config=config))
    return out, items


def test_classifier_appends_its_segmenters_measurements(with_segmenter, tmp_path):
    base, items = with_segmenter
    out = tmp_path / "c.nwmodel"
    images, labels = [i.image for i in items], [i.label for i in items]
    config = ClassifierConfig(epochs=20, measurements=True, device="cpu")
    list(train_classifier(base, images, labels, out, [PX] * 4, config))
    model = load_model(out)
    settings = model.meta.classifier
    assert model.meta.heads == ["classifier", "segmenter"]
    assert settings.measurements and settings.measurement_names == list(MORPH_NAMES)
    # tiny encoder: 256 per scale, then the image descriptors, the spectrum and the measurements
    blocks = [256 * len(settings.scales), DESCRIPTOR_SIZE, SPECTRUM_SIZE, len(MORPH_NAMES)]
    dim = sum(blocks)
    assert settings.blocks == blocks and settings.spectrum
    assert model.part("classifier")["linear.weight"].shape == (4, dim)
    prediction = Predictor(model, str(out), "cpu").classify(images, [PX] * 4)
    assert prediction.features.shape == (4, dim)
    np.testing.assert_allclose(prediction.probabilities.sum(1), 1, atol=1e-5)


def test_a_classifier_file_with_fewer_measurements_still_predicts(
    with_segmenter, tmp_path, monkeypatch
):
    """Files written before the particle columns store 14 measurement names: they get those."""
    base, items = with_segmenter
    out = tmp_path / "older.nwmodel"
    images, labels = [i.image for i in items], [i.label for i in items]
    monkeypatch.setattr(classify, "MORPH_NAMES", MORPH_NAMES[:14])
    config = ClassifierConfig(epochs=20, measurements=True, device="cpu")
    list(train_classifier(base, images, labels, out, [PX] * 4, config))
    monkeypatch.undo()
    model = load_model(out)
    assert model.meta.classifier.measurement_names == list(MORPH_NAMES[:14])
    prediction = Predictor(model, str(out), "cpu").classify(images, [PX] * 4)
    assert prediction.features.shape[1] == sum(model.meta.classifier.blocks)
    assert model.meta.classifier.blocks[-1] == 14
    np.testing.assert_allclose(prediction.probabilities.sum(1), 1, atol=1e-5)


def test_a_classifier_file_from_before_the_spectrum_still_predicts(with_segmenter, tmp_path):
    """Files written before the scale spectrum have no ``spectrum`` field and no such block."""
    base, items = with_segmenter
    out = tmp_path / "c.nwmodel"
    images, labels = [i.image for i in items], [i.label for i in items]
    list(train_classifier(base, images, labels, out, [PX] * 4, ClassifierConfig(epochs=20)))
    model = load_model(out)
    settings = model.meta.classifier
    encoder, descriptors, spectrum = settings.blocks
    keep = encoder + descriptors
    for key in ("mean", "scale", "linear.weight"):
        model.tensors[f"classifier.{key}"] = model.tensors[f"classifier.{key}"][..., :keep]
    settings.spectrum, settings.blocks = False, [encoder, descriptors]
    prediction = Predictor(model, str(out), "cpu").classify(images, [PX] * 4)
    assert prediction.features.shape == (4, encoder + descriptors)
    np.testing.assert_allclose(prediction.probabilities.sum(1), 1, atol=1e-5)


def test_the_classifier_sees_past_a_burned_in_scale_bar(with_segmenter, tmp_path):
    """A classifier trained with the defaults paints over a scale bar and its text before its
    features: they stay near those of the clean image, unlike a file's from before."""
    from test_segment_scale import micrograph_with_bar

    base, items = with_segmenter
    out = tmp_path / "c.nwmodel"
    images, labels = [i.image for i in items], [i.label for i in items]
    list(train_classifier(base, images, labels, out, [PX] * 4, ClassifierConfig(epochs=20)))
    model = load_model(out)
    assert model.meta.classifier.ignore_annotations
    clean, barred = micrograph_with_bar(bar=False), micrograph_with_bar()

    def shift() -> float:
        features = Predictor(model, str(out), "cpu").classify([clean, barred]).features
        return float(np.abs(features[1] - features[0]).sum())

    painted_over = shift()
    model.meta.classifier.ignore_annotations = False  # as a file from before reads
    assert painted_over < shift() / 20  # measured 0.44 against 55


def disc_field(radius: int, count: int, bright: bool = True, seed: int = 0) -> np.ndarray:
    """A 256 px field of ``count`` discs of ``radius`` px on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    image = rng.normal(0, 0.1, (256, 256))
    for cy, cx in rng.integers(radius, 256 - radius, size=(count, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] += 1.0 if bright else -1.0
    return image.astype(np.float32)


@pytest.mark.parametrize("sigma", [1.0, 8.0, 64.0])
def test_the_fast_hessian_is_skimages(sigma):
    """The spectrum's Hessian equals skimage's, whichever route each axis takes (at sigma 8 the
    40 px axis uses the banded matrix and the 300 px axis the direct filter)."""
    from skimage.feature import hessian_matrix

    from napari_nanowire.core.heads.morph_features import hessian

    image = np.random.default_rng(0).normal(size=(40, 300))  # float64: no rounding noise
    expected = hessian_matrix(image, sigma, order="rc", use_gaussian_derivatives=False)
    for ours, theirs in zip(hessian(image, sigma), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * np.abs(theirs).max())


def test_the_scale_spectrum_sees_particle_size_and_elongation_but_not_polarity():
    centre = len(SPECTRUM_SIGMAS)  # the energy-weighted mean log scale
    small, large = scale_spectrum(disc_field(4, 40)), scale_spectrum(disc_field(16, 6))
    assert small.shape == (SPECTRUM_SIZE,)
    # the centre moves up by 0.72-0.81 (seeds 0-2; noise and edges keep it below the discs'
    # log size ratio of 1.4)
    assert large[centre] - small[centre] > 0.5
    np.testing.assert_allclose(scale_spectrum(-disc_field(4, 40)), small, atol=1e-5)
    stripes = np.zeros((256, 256), np.float32)
    stripes[:, ::16] = stripes[:, 1::16] = stripes[:, 2::16] = stripes[:, 3::16] = 1.0
    at = np.searchsorted(SPECTRUM_SIGMAS, 2.0) + centre + 1  # anisotropy at sigma 2 px
    assert scale_spectrum(stripes)[at] > 0.9 and small[at] < 0.6  # measured 0.99 and 0.49


def test_measurements_need_a_segmenter_and_no_fine_tune(with_segmenter):
    base, items = with_segmenter
    images, labels = [i.image for i in items], [i.label for i in items]
    plain = ModelFile(ModelMeta(encoder="tiny", image_size=32))
    plain.set_part("encoder", build_encoder("tiny"))
    with pytest.raises(NanowireError, match="need a segmenter"):
        list(
            train_classifier(
                plain, images, labels, "x.nwmodel", config=ClassifierConfig(measurements=True)
            )
        )
    config = ClassifierConfig(measurements=True, fine_tune=True)
    with pytest.raises(NanowireError, match="exclude each other"):
        list(train_classifier(base, images, labels, "x.nwmodel", config=config))


def test_a_large_images_spectrum_comes_from_crops_and_matches_the_same_texture_small():
    small = disc_field(8, 25)
    large = np.tile(small, (6, 6))  # 1536 px: four 512 px crops, not 2.4 million pixels
    assert large.shape[0] > 2 * SPECTRUM_CROP
    np.testing.assert_allclose(scale_spectrum(large), scale_spectrum(small), atol=0.05)  # 0.017
