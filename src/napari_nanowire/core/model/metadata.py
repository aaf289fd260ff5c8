"""The model file's metadata as typed dataclasses, with the one check every loaded file passes.

A model file stores its settings as JSON (see :mod:`.modelfile`). :meth:`ModelMeta.from_json`
turns that JSON into these dataclasses and refuses anything a model cannot be used with (a
missing class list, a tile of 0, a NaN pixel size, a format newer than this code), raising a
ModelFileError that names the file and the field. :meth:`ModelMeta.to_json` writes the same
layout back (format version 1): keys this code does not know are kept in ``extra`` and written
back unchanged, so a file passes through an older or newer trainer without losing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .meta_fields import (
    DAMAGED,
    Fields,
    check_known,
    check_plain,
    kind_of,
    section,
    short,
)
from .preprocess import NORMALIZATION

FORMAT = "napari-nanowire-model"
FORMAT_VERSION = 1
HEADS = ("classifier", "segmenter")
CLASS_KEYS = {"classifier": "class_names", "segmenter": "mask_classes"}
"""The metadata field holding each head's class names."""
NORMALIZATIONS = (NORMALIZATION,)
"""Input normalisations this code can apply (the stored tag must be one of them)."""
MAX_SIDE = 8192
"""Largest tile or image size (px) a file may ask for: bigger is a damaged file."""
MAX_WIDTH = 4096
"""Largest decoder or projector width a file may ask for (the largest ResNet stage is 2048)."""


def _to_json(obj: Any) -> dict[str, Any]:
    """A dataclass as JSON-able dict: its fields (None left out) then its ``extra`` keys."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name == "extra" or value is None:
            continue
        out[f.name] = _to_json(value) if hasattr(value, "__dataclass_fields__") else value
    out.update(obj.extra)
    return out


@dataclass(kw_only=True)
class HeadMeta:
    """What a trained head records: its input tile, training settings, metrics and history."""

    tile: int
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    n_images: int | None = None
    stopped_early: bool = False
    train_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _common(cls, read: Fields) -> dict[str, Any]:
        return {
            "tile": read.integer("tile", 8, MAX_SIDE, required=True),
            "settings": read.mapping("settings"),
            "metrics": read.mapping("metrics"),
            "history": read.listing("history"),
            "n_images": read.integer("n_images", 0, 2**62),
            "stopped_early": bool(read.get("stopped_early", False)),
            "train_seconds": read.number("train_seconds", -1.0, 1e12),
            "extra": read.rest(cls),
        }


@dataclass(kw_only=True)
class ClassifierMeta(HeadMeta):
    """The linear classifier: tile and tile count of the pooled features, and their zoom."""

    max_tiles: int = 16
    zoom: float = 1.0
    class_counts: list[int] | None = None
    working_size: int | None = None
    """Long side images without a pixel size are resized to before features are computed."""
    scales: list[float] = field(default_factory=lambda: [1.0])
    """Scales of the pooled tile features (concatenated), relative to the working scale."""
    descriptors: bool = False
    """Hand-made image descriptors appended to the features."""
    spectrum: bool = False
    """The scale spectrum appended after the descriptors (files from 2026-12-07 on)."""
    ignore_annotations: bool = False
    """Burned-in scale bars and labels painted over before features (files from 2026-12-07 on)."""
    blocks: list[int] | None = None
    """Sizes of the feature blocks in order: encoder scales, descriptors, spectrum, measurements."""
    measurements: bool = False
    """Measurements of the segmenter's predicted mask appended to the features."""
    measurement_names: list[str] = field(default_factory=list)
    temperature: float = 1.0
    """Softmax temperature fitted on held-out labelled images (calibrated confidences)."""

    @classmethod
    def from_json(cls, read: Fields) -> ClassifierMeta:
        """Checked from the ``classifier`` object of a file."""
        return cls(
            **cls._common(read),
            max_tiles=read.integer("max_tiles", 1, 4096) or 16,
            zoom=read.number("zoom", 0.0, 100.0) or 1.0,
            class_counts=read.listing("class_counts") or None,
            working_size=read.integer("working_size", 8, MAX_SIDE),
            scales=_scales(read),
            descriptors=bool(read.get("descriptors", False)),
            spectrum=bool(read.get("spectrum", False)),
            ignore_annotations=bool(read.get("ignore_annotations", False)),
            blocks=read.listing("blocks") or None,
            measurements=bool(read.get("measurements", False)),
            measurement_names=read.texts("measurement_names", 0) or [],
            temperature=read.number("temperature", 0.0, 1e6) or 1.0,
        )


def _scales(read: Fields) -> list[float]:
    """Feature scales: numbers in (0, 1], at least one."""
    scales = read.listing("scales") or [1.0]
    for i, s in enumerate(scales):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1:
            read.fail(f"scales[{i}]", f"is {short(s)}, not a number in (0, 1]")
    return [float(s) for s in scales]


@dataclass(kw_only=True)
class SegmenterMeta(HeadMeta):
    """The U-Net decoder: its tile, the overlap of its sliding windows and its widths."""

    overlap: int = 0
    decoder_widths: list[int] | None = None
    labelled_pixels: int | None = None
    working: dict[str, Any] | None = None
    """The working scale it runs at (``heads.scale``); None: the model's pixel size."""
    postprocess: dict[str, Any] | None = None
    """Its mask post-processing (``heads.postprocess``); None: none."""
    ignore_scale_bar: bool = False

    @classmethod
    def from_json(cls, read: Fields) -> SegmenterMeta:
        """Checked from the ``segmenter`` object of a file."""
        common = cls._common(read)
        return cls(
            **common,
            overlap=read.integer("overlap", 0, common["tile"] - 1) or 0,
            decoder_widths=read.integers("decoder_widths", 5, MAX_WIDTH),
            labelled_pixels=read.integer("labelled_pixels", 0, 2**62),
            working=section(read, "working", False, _working),
            postprocess=section(read, "postprocess", False, _settings),
            ignore_scale_bar=bool(read.get("ignore_scale_bar", False)),
        )


def _working(read: Fields) -> dict[str, Any]:
    """A segmenter's working scale: nm per working pixel (if calibrated), original pixels per
    working pixel."""
    return {
        "pixel_size_nm": read.number("pixel_size_nm", 0.0, 1e6),
        "downsample": read.number("downsample", 0.0, MAX_SIDE, required=True),
    }


def _settings(read: Fields) -> dict[str, Any]:
    """Flat settings of numbers and switches (post-processing areas), each finite and >= 0;
    ``object_polarity`` is -1, 0 or 1."""
    for key, value in read.obj.items():
        if key == "object_polarity":
            read.integer(key, -1, 1)
        elif not isinstance(value, bool):
            read.number(key, -1e-300, 1e15)
    return dict(read.obj)


@dataclass(kw_only=True)
class SSLMeta:
    """Pretraining settings: those a later step reads, typed; the rest kept in ``extra``."""

    method: str | None = None
    encoder: str | None = None
    image_size: int | None = None
    steps_per_epoch: int | None = None
    projector_dims: list[int] | None = None
    crop_side_px_mean: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, read: Fields) -> SSLMeta:
        """Checked from the ``ssl`` object of a file."""
        dims = read.listing("projector_dims")
        return cls(
            method=read.text("method"),
            encoder=read.text("encoder"),
            image_size=read.integer("image_size", 8, MAX_SIDE),
            steps_per_epoch=read.integer("steps_per_epoch", 1, 2**40),
            projector_dims=read.integers("projector_dims", len(dims), MAX_WIDTH) if dims else None,
            crop_side_px_mean=read.number("crop_side_px_mean", 0.0, 1e6),
            extra=read.rest(cls),
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SSLMeta:
        """From a flat dict of pretraining settings (as the trainer records them)."""
        return cls.from_json(Fields(settings, "(being written)", "ssl."))


@dataclass(kw_only=True)
class ModelMeta:
    """Everything but the weights: architecture, classes, input handling, training record.

    ``heads`` lists the trained heads ("classifier", "segmenter"); a file without heads is an
    SSL encoder. ``class_names`` are the classifier's image classes, ``mask_classes`` the
    segmenter's mask classes (index = predicted mask value, 0 = background). ``history``,
    ``epoch``, ``step``, ``optimizer_groups`` and ``grad_scaler`` record pretraining.
    """

    encoder: str
    normalization: str = NORMALIZATION
    image_size: int | None = None
    pixel_size_nm: float | None = None
    heads: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    mask_classes: list[str] | None = None
    classifier: ClassifierMeta | None = None
    segmenter: SegmenterMeta | None = None
    ssl: SSLMeta | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int | None = None
    step: int | None = None
    optimizer_groups: list[dict[str, Any]] | None = None
    grad_scaler: dict[str, Any] | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The file's kind: "encoder", or its heads joined by "+" ("classifier+segmenter")."""
        return "+".join(self.heads) or "encoder"

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the file (format version 1 layout)."""
        out = _to_json(self)
        out.update(kind=self.kind, format=FORMAT, format_version=FORMAT_VERSION)
        if not self.heads:
            del out["heads"]
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str, known_encoders: Any = ()) -> ModelMeta:
        """Check a file's parsed metadata and type it; ModelFileError names file and field.

        ``known_encoders`` (names) are the encoders this code can build.
        """
        check_plain(obj, where)
        read = Fields(obj, where)
        _check_format(read)
        encoder = read.text("encoder", required=True)
        if known_encoders:
            check_known(read, "encoder", encoder, sorted(known_encoders))
        normalization = read.text("normalization") or NORMALIZATION
        check_known(read, "normalization", normalization, NORMALIZATIONS)
        heads = _heads(read)
        parsers = {"classifier": ClassifierMeta.from_json, "segmenter": SegmenterMeta.from_json}
        parts = {h: section(read, h, True, parsers[h]) if h in heads else None for h in HEADS}
        n_classes = 2 if "classifier" in heads else 1
        return cls(
            encoder=encoder,
            normalization=normalization,
            image_size=read.integer("image_size", 8, MAX_SIDE),
            pixel_size_nm=read.number("pixel_size_nm", 0.0, 1e6),
            heads=heads,
            class_names=read.texts("class_names", n_classes, required="classifier" in heads),
            mask_classes=read.texts("mask_classes", 2, required="segmenter" in heads),
            ssl=section(read, "ssl", False, SSLMeta.from_json),
            history=read.listing("history"),
            epoch=read.integer("epoch", 0, 2**40),
            step=read.integer("step", 0, 2**62),
            optimizer_groups=read.listing("optimizer_groups") or None,
            grad_scaler=read.mapping("grad_scaler") or None,
            extra={k: v for k, v in read.rest(cls).items() if k != "kind"},
            **parts,
        )


def _check_format(read: Fields) -> None:
    """Refuse another program's metadata and a format version newer than this code."""
    if read.obj.get("format") != FORMAT:
        read.fail("format", f"is {kind_of(read.obj.get('format'))}, not {FORMAT!r}", DAMAGED)
    version = read.integer("format_version", 1, 2**31, required=True)
    if version > FORMAT_VERSION:
        read.fail(
            "format_version",
            f"is {version}: the file was made by a newer napari-nanowire (this one reads up "
            f"to version {FORMAT_VERSION})",
            "update napari-nanowire",
        )


def _heads(read: Fields) -> list[str]:
    """The heads a file holds; one whose kind names heads must list them."""
    kind = read.text("kind") or "encoder"
    if kind != "encoder" and "heads" not in read.obj:
        read.fail("heads", f"is missing (the file is a {kind!r} model)")
    heads = read.texts("heads", 0) or []
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        read.fail("heads", f"names {unknown[0]!r}, not one of {', '.join(HEADS)}")
    return [h for h in HEADS if h in heads]
