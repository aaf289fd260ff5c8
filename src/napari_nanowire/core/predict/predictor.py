"""A loaded model file that classifies and segments 2D images and stacks in memory.

:class:`Predictor` loads a classifier and/or segmenter model file once; the GUI, scripts and
:mod:`.files` (the CLI and the dask tasks) all predict through it, frame by frame.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..devices import resolve_device
from ..errors import NanowireError
from ..heads.classify import FeatureRecipe, measured_features
from ..heads.feature_cache import FEATURES, FeatureCache, extractor_digest
from ..heads.features import encoder_from
from ..heads.linear import LinearHead, class_probabilities
from ..heads.morph_features import MORPH_NAMES
from ..heads.postprocess import PostProcess, postprocess_from_meta, postprocess_mask
from ..heads.refine import refine_probabilities
from ..heads.scale import WorkingScale, to_working, upsampled_rows, working_from_meta
from ..heads.scalebar import Annotation, find_annotations
from ..heads.tiling import assemble
from ..heads.unet import load_segmenter, probability_strips
from ..io import frames
from ..model.modelfile import ModelFile, load_model
from ..progress import stop_requested
from .results import ClassPrediction, FramePrediction, MaskPrediction, entropy


class Predictor:
    """A loaded model file, ready to classify and/or segment images of any size."""

    def __init__(self, model: ModelFile, path: str = "", device: str = "auto") -> None:
        self.model, self.path = model, path
        self.meta = model.meta
        self.heads = list(self.meta.heads)
        if not self.heads:
            raise NanowireError(
                f"Model file {path} holds no classifier or segmenter (kind "
                f"{self.meta.kind!r}); train one with train-classifier or train-segmenter."
            )
        _check_finite_weights(model, path)
        self.device = resolve_device(device)
        self.pixel_size_nm = self.meta.pixel_size_nm
        self.encoder = encoder_from(model, path)
        self._extractor: bytes | None = None  # digest of encoder and feature recipe, when used
        self.features_kept: FeatureCache | None = FEATURES
        """Where classifier features are kept between runs (:mod:`..heads.feature_cache`);
        None for one pass over a large collection, where keeping them only costs memory."""
        self.head: LinearHead | None = None
        if "classifier" in self.heads:
            self.class_names = list(self.meta.class_names or ())
            weight = model.part("classifier").get("linear.weight")
            in_dim = self.encoder.out_dim if weight is None else weight.shape[1]
            self.head = LinearHead(in_dim, len(self.class_names))
            model.load_part("classifier", self.head, path)
            self.head.eval()
        self.net = load_segmenter(model, path) if "segmenter" in self.heads else None
        if self.net is not None:
            self.mask_classes = list(self.meta.mask_classes or ())
            self.net.encoder = self.encoder  # one encoder serves both heads
            self.working: WorkingScale = working_from_meta(self.meta)
            self.postprocess: PostProcess = postprocess_from_meta(self.meta)
            self.ignore_scale_bar = self.meta.segmenter.ignore_scale_bar

    def configure(
        self,
        working_pixel_size_nm: float | None = None,
        working_downsample: float | None = None,
        postprocess: bool | None = None,
        min_object_nm2: float | None = None,
        min_hole_nm2: float | None = None,
        min_object_px2: float | None = None,
        min_hole_px2: float | None = None,
        fill_holes: bool | None = None,
        refine_intensity: bool | None = None,
        ignore_scale_bar: bool | None = None,
    ) -> Predictor:
        """Override the segmenter settings stored in the model file (None keeps them).

        The working scale changes what the net sees: the stored one is what it was trained at.
        """
        self.require("segmenter")
        if working_pixel_size_nm is not None or working_downsample is not None:
            self.working = WorkingScale(
                working_pixel_size_nm or self.working.pixel_size_nm,
                working_downsample or self.working.downsample,
            )
        cleanup = (
            min_object_nm2,
            min_hole_nm2,
            min_object_px2,
            min_hole_px2,
            fill_holes,
            refine_intensity,
        )
        if postprocess is None and any(v is not None for v in cleanup):
            postprocess = True  # clean-up asked for: post-process even if the file says no
        self.postprocess = self.postprocess.replace(
            enabled=postprocess,
            min_object_nm2=min_object_nm2,
            min_hole_nm2=min_hole_nm2,
            min_object_px2=min_object_px2,
            min_hole_px2=min_hole_px2,
            fill_holes=fill_holes,
            refine_intensity=refine_intensity,
        )
        if ignore_scale_bar is not None:
            self.ignore_scale_bar = ignore_scale_bar
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> Predictor:
        """Load a model file from disk."""
        return cls(load_model(path), str(path), device)

    def require(self, head: str) -> None:
        """Refuse a task whose head the model file lacks, saying how to get one."""
        if head not in self.heads:
            raise NanowireError(
                f"Model file {self.path} has no {head} head (it has: {', '.join(self.heads)}); "
                f"train one with train-{head}."
            )

    def classify(
        self, images: Sequence[np.ndarray], pixel_sizes_nm: Sequence[float | None] | None = None
    ) -> ClassPrediction:
        """Class probabilities of 2D images (features pooled over tiles, as in training; kept
        for the next prediction of the same images, see :mod:`..heads.feature_cache`)."""
        self.require("classifier")
        settings = self.meta.classifier
        sizes = list(pixel_sizes_nm) if pixel_sizes_nm is not None else [None] * len(images)
        recipe = FeatureRecipe.of(settings, self.pixel_size_nm)
        if self._extractor is None:
            self._extractor = extractor_digest(self.encoder, recipe)
        feats = recipe.features(
            self.encoder, images, sizes, self.device, self._extractor, self.features_kept
        )
        if settings.measurements:
            self.require("segmenter")
            segment = lambda image, px: self.segment(image, px).mask  # noqa: E731
            names = settings.measurement_names or MORPH_NAMES
            measured = [
                measured_features(segment, image, px, settings.working_size, names)
                for image, px in zip(images, sizes, strict=True)
            ]
            feats = np.concatenate([feats, np.stack(measured).astype(np.float32)], 1)
        probs = class_probabilities(self.head, feats, settings.temperature)
        _check_finite_output(probs, self.path)
        return ClassPrediction(self.class_names, probs, feats)

    def predict_frame(
        self,
        frame: np.ndarray,
        pixel_size_nm: float | None = None,
        heads: Sequence[str] | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
    ) -> FramePrediction:
        """Class and/or mask, with their uncertainty, of one 2D image, by ``heads`` (default:
        every head of the model); ``entropy_map`` and ``tile`` as in :meth:`segment`."""
        heads = self.heads if heads is None else heads
        for head in heads:
            self.require(head)
        image = np.asarray(frame)
        result = FramePrediction()
        if "classifier" in heads:
            result.classes = self.classify([image], [pixel_size_nm])
        if "segmenter" in heads:
            result.mask = self.segment(image, pixel_size_nm, entropy_map, tile)
        return result

    def predict_stack(
        self,
        data,
        pixel_size_nm: float | None = None,
        indices: Sequence[int] | None = None,
        heads: Sequence[str] | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[int, FramePrediction]]:
        """(index, prediction) of each frame of (Y, X) or (N, Y, X) ``data`` (those at
        ``indices``, or all), one frame at a time, so a lazy stack is never read whole.

        A stop request ends the iteration before the next frame.
        """
        if indices is None:
            indices = range(1 if np.ndim(data) == 2 else len(data))
        planes = zip(indices, frames(data, indices), strict=True)
        items = ((index, plane, pixel_size_nm) for index, plane in planes)
        yield from self.predict_each(items, heads, entropy_map, tile, stop)

    def predict_each(
        self,
        items: Iterable[tuple[int, np.ndarray, float | None]],
        heads: Sequence[str] | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[int, FramePrediction]]:
        """(index, prediction) of each (index, 2D frame, pixel size) of ``items``, one frame at
        a time, each at its own pixel size (the images of a series differ). A stop request ends
        the iteration before the next frame."""
        for index, plane, pixel_size_nm in items:
            if stop_requested(stop):
                return
            yield index, self.predict_frame(plane, pixel_size_nm, heads, entropy_map, tile)

    def segment(
        self,
        image: np.ndarray,
        pixel_size_nm: float | None = None,
        entropy_map: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int = 8,
    ) -> MaskPrediction:
        """Mask of a 2D image: resampled to the working scale, predicted there by blended
        sliding windows, refined with the image's grey levels if the model says so
        (:mod:`~napari_nanowire.core.heads.refine`), resampled back to the image's grid and
        argmaxed; then burned-in scale bars are set to background and the mask post-processed
        (the model's settings, see :meth:`configure`). Memory: the working-scale probabilities
        (when resampled or refined) and blocks or strips of the full-size ones, never the
        full-size map.
        """
        self.require("segmenter")
        settings = self.meta.segmenter
        tile = tile or settings.tile
        overlap = settings.overlap if overlap is None else overlap
        prepared, _ = to_working(image, None, pixel_size_nm, self.working)
        strips = probability_strips(self.net, prepared, tile, overlap, batch_size, self.device)
        shape = np.shape(image)
        refine = self.postprocess.enabled and self.postprocess.refine_intensity
        if refine or prepared.shape != shape:  # keep the working map, upsample it in blocks
            probs = assemble(strips)
            if refine:
                probs = refine_probabilities(prepared, probs, self.postprocess.object_polarity)
            strips = upsampled_rows(probs, shape) if prepared.shape != shape else iter([(0, probs)])
        del prepared
        mask = np.empty(shape, np.uint8)
        ent = np.empty(shape, np.float32) if entropy_map else None
        total = 0.0
        for row, block in strips:
            _check_finite_output(block, self.path)
            rows = slice(row, row + block.shape[1])
            mask[rows] = block.argmax(0)
            block_entropy = entropy(block, 0)
            total += float(block_entropy.sum(dtype=np.float64))
            if ent is not None:
                ent[rows] = block_entropy
        ignored: list[Annotation] = []
        if self.ignore_scale_bar:
            region, ignored = find_annotations(image)
            mask[region] = 0
        mask = postprocess_mask(mask, self.postprocess, pixel_size_nm)
        return MaskPrediction(mask, total / mask.size, ent, ignored)


def _check_finite_weights(model: ModelFile, path: str) -> None:
    """Refuse a model whose weights hold NaN or infinity (a diverged training): it predicts junk."""
    bad = [
        name
        for name, t in model.tensors.items()
        if t.is_floating_point() and not t.isfinite().all()
    ]
    if bad:
        raise NanowireError(
            f"Model file {path} has NaN or infinite weights (in {len(bad)} tensor(s), e.g. "
            f"{bad[0]}): its training diverged or the file is damaged. Train it again, with a "
            "lower learning rate if its loss became NaN."
        )


def _check_finite_output(probs: np.ndarray, path: str) -> None:
    """Refuse NaN probabilities instead of reporting a class with an empty confidence."""
    if not np.isfinite(probs).all():
        raise NanowireError(
            f"Model file {path} gave NaN or infinite probabilities for this image; check the "
            "image's values, or train the model again."
        )
