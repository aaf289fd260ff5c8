"""Classifier features kept between predictions of the same images (labelling in rounds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.heads.classify import ClassifierConfig, FeatureRecipe, train_classifier
from napari_nanowire.core.heads.feature_cache import FEATURES, FeatureCache, extractor_digest
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile
from napari_nanowire.core.predict import Predictor

PX = 4.0


def test_the_cache_computes_only_what_it_does_not_hold_and_forgets_the_oldest():
    calls = []

    def compute(images, sizes):
        calls.append(len(images))
        return np.stack(
            [
                np.full(4, image.sum() + (px or 0), np.float32)
                for image, px in zip(images, sizes, strict=True)
            ]
        )

    cache = FeatureCache(max_bytes=3 * 16)  # three rows of 4 float32
    a, b, c = (np.full((5, 5), v, np.uint8) for v in (1, 2, 3))
    first = cache.features(b"e", [a, b], [None, None], compute)
    again = cache.features(b"e", [b, a, c], [None, None, None], compute)
    assert calls == [2, 1]  # only c was new
    np.testing.assert_array_equal(again[:2], first[::-1])
    cache.features(b"e", [a], [2.0], compute)  # another pixel size: another image
    cache.features(b"other encoder", [a], [None], compute)
    assert calls == [2, 1, 1, 1] and len(cache) == 3  # b, the oldest, was forgotten
    cache.features(b"e", [b], [None], compute)
    assert calls[-1] == 1


@pytest.fixture
def trained(tmp_path_factory):
    """A tiny classifier, the images it was trained on (one a class) and four others."""
    torch.manual_seed(0)
    base = ModelFile(ModelMeta(encoder="tiny", image_size=32, pixel_size_nm=PX))
    base.set_part("encoder", build_encoder("tiny"))
    items = generate_dataset(1, size=64, pixel_size_nm=PX, seed=1)
    out = tmp_path_factory.mktemp("cache") / "c.nwmodel"
    images, labels = [i.image for i in items], [i.label for i in items]
    list(train_classifier(base, images, labels, out, [PX] * 4, ClassifierConfig(epochs=20)))
    unseen = [i.image for i in generate_dataset(1, size=64, pixel_size_nm=PX, seed=2)]
    return out, images, unseen


def count_computes(monkeypatch) -> list[int]:
    calls: list[int] = []
    compute = FeatureRecipe.compute

    def counted(self, encoder, prepared, device):
        calls.append(len(prepared))
        return compute(self, encoder, prepared, device)

    monkeypatch.setattr(FeatureRecipe, "compute", counted)
    return calls


def test_predicting_a_collection_again_reuses_its_features(trained, monkeypatch):
    """The second prediction of the same images computes no features and gives the same
    probabilities; so does a new Predictor of the same file (the Predict widget makes one per
    run). Training kept the labelled images' features: predicting them computes none."""
    out, labelled, unseen = trained
    calls = count_computes(monkeypatch)
    first = Predictor.load(out, "cpu").classify(unseen, [PX] * 4)
    assert calls == [4]
    again = Predictor.load(out, "cpu").classify(unseen, [PX] * 4)
    np.testing.assert_array_equal(again.probabilities, first.probabilities)
    Predictor.load(out, "cpu").classify(labelled, [PX] * 4)
    assert calls == [4]
    FEATURES.clear()
    fresh = Predictor.load(out, "cpu").classify(unseen, [PX] * 4)
    np.testing.assert_array_equal(fresh.features, first.features)


def test_another_encoder_or_setting_is_never_served_kept_features(trained):
    out, _, unseen = trained
    predictor = Predictor.load(out, "cpu")
    recipe = FeatureRecipe.of(predictor.meta.classifier, predictor.pixel_size_nm)
    digest = extractor_digest(predictor.encoder, recipe)
    other = build_encoder("tiny")
    assert extractor_digest(other, recipe) != digest
    assert recipe.ignore_annotations  # the default: images with scale bars differ without
    keep_bars = FeatureRecipe(**{**vars(recipe), "ignore_annotations": False})
    assert extractor_digest(predictor.encoder, keep_bars) != digest
    before = predictor.classify(unseen[:1], [PX]).features
    model = predictor.model
    name = next(k for k in model.tensors if k.startswith("encoder.") and "weight" in k)
    model.tensors[name] = model.tensors[name] + 1.0  # a changed encoder, e.g. after fine-tuning
    changed = Predictor(model, str(out), "cpu").classify(unseen[:1], [PX]).features
    assert not np.allclose(changed, before)


def test_one_pass_over_files_keeps_no_features(trained, tmp_path):
    """predict over files (the CLI, dask) sees each frame once: nothing is kept."""
    from napari_nanowire.core.io import write_tiff
    from napari_nanowire.core.predict.files import predict_files

    out, _, unseen = trained
    FEATURES.clear()
    paths = [write_tiff(tmp_path / f"u{i}.tif", image, PX) for i, image in enumerate(unseen)]
    list(predict_files(out, paths, tmp_path / "out", device="cpu"))
    assert len(FEATURES) == 0
    Predictor.load(out, "cpu").classify(unseen, [PX] * 4)
    assert len(FEATURES) == 4
