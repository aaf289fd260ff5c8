"""A model file's segmenter or classifier as a BioImage.IO model package (spec 0.5), for
deepImageJ, Fiji, ilastik, QuPath and bioimageio.core.

A segmenter's package holds the TorchScript weights of :mod:`.torchscript`, the axes (batch,
channel, y, x; y and x in nm at the model's pixel size), the preprocessing (zero mean and unit
variance per image; the weights then clip to the 0.5-99.5 percentiles and normalise again, which
is exactly this package's normalisation, as clipping at percentiles commutes with it), the class
names as output channels, test input and output made by running the exported weights on a
synthetic image, a cover picture, a README and the citation of the method. A classifier's
package takes one fixed square input (its working size, see :mod:`.classifier`) and gives
(batch, class) probabilities. Needs the ``[bioimageio]`` extra (bioimageio.core and
bioimageio.spec).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic import generate_dataset
from ..errors import NanowireError, import_extra
from ..model.modelfile import ModelFile, load_model
from .classifier import input_pixel_size, input_side
from .torchscript import (
    MIN_SIDE,
    STEP,
    choose_head,
    example_side,
    head_metadata,
    network_pixel_size,
    save_traced,
    trace_head,
)

CITATION = (
    "Lu, Montz, Emrick and Jayaraman, Semi-supervised machine learning workflow for analysis "
    "of nanowire morphologies from transmission electron microscopy images, Digital Discovery "
    "1 (2022) 816-833"
)
CITATION_DOI = "10.1039/D2DD00066K"
EPSILON = 1e-6


def export_bioimageio(
    model_path: str | os.PathLike, out: str | os.PathLike, head: str | None = None
) -> Path:
    """Write the BioImage.IO package of a model file's ``head`` (or its only head) to ``out``:
    a ``.zip`` file, or else a folder (with ``rdf.yaml``). Returns ``out``."""
    check_bioimageio()
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    model, out = load_model(model_path), Path(out)
    head = choose_head(model, head, str(model_path))
    with tempfile.TemporaryDirectory(prefix="nanowire-bioimageio-") as tmp:
        descr = describe(model, Path(model_path), Path(tmp), head)
        if out.suffix == ".zip":
            save_bioimageio_package(descr, output_path=out)
        else:
            save_bioimageio_package_as_folder(descr, output_path=out)
    return out


def check_bioimageio() -> None:
    """Refuse, saying what to install, when bioimageio.spec is missing or cannot write here.

    bioimageio.spec 0.5.12 (the one bioimageio.core 0.11 requires) fails to serialise any file
    entry with pydantic 2.12 or later (measured: works with 2.10.6, fails with 2.14.4; spec
    0.5.14 fixes it but no bioimageio.core release accepts it yet). npe2 excludes pydantic 2.11,
    so the ``[bioimageio]`` extra holds pydantic 2.10. This check catches environments that
    upgraded pydantic afterwards.
    """
    spec = import_extra("bioimageio.spec", "bioimageio", "BioImage.IO export")
    import pydantic

    pydantic_version = tuple(int(p) for p in pydantic.VERSION.split(".")[:2])
    if spec.__version__.startswith("0.5.12") and pydantic_version >= (2, 12):
        raise NanowireError(
            f"bioimageio.spec {spec.__version__} cannot write packages with pydantic "
            f"{pydantic.VERSION} (it needs pydantic below 2.12); reinstall the extra "
            '(pip install "napari-nanowire[bioimageio]", which brings pydantic 2.10), '
            "or use --format torchscript."
        )


def sample_input(model: ModelFile, head: str = "segmenter") -> np.ndarray:
    """A raw synthetic network image, (1, 1, S, S) float32, at the exported input's pixel size
    and size."""
    if head == "classifier":
        side, px = input_side(model), input_pixel_size(model) or 1.0
    else:
        side, px = example_side(model), network_pixel_size(model) or 1.0
    item = generate_dataset(1, size=side, pixel_size_nm=px, seed=0, classes=("network",))[0]
    return item.image.astype(np.float32)[None, None]


def describe(model: ModelFile, model_path: Path, folder: Path, head: str = "segmenter"):
    """The bioimageio ModelDescr of ``head``, with its files written to ``folder``."""
    from bioimageio.spec.model import v0_5 as bio

    traced = trace_head(model, head, str(model_path))
    weights = save_traced(traced, folder / "weights.pt", head_metadata(model, head))
    raw = sample_input(model, head)
    preprocessed = (raw - raw.mean()) / (raw.std() + EPSILON)  # what the consumer feeds in
    with torch.no_grad():
        probabilities = traced(torch.from_numpy(preprocessed)).numpy()
    np.save(folder / "test_input.npy", raw)
    np.save(folder / "test_output.npy", probabilities)
    write_cover(raw[0, 0], probabilities[0], folder / "cover.png")
    classifier = head == "classifier"
    classes = [str(c) for c in (model.meta.class_names if classifier else model.meta.mask_classes)]
    px = input_pixel_size(model) if classifier else network_pixel_size(model)
    text = classifier_readme if classifier else readme
    (folder / "README.md").write_text(text(model_path, classes, px, model), encoding="utf-8")

    def space(axis: str, size):
        cls = bio.SpaceOutputAxis if isinstance(size, bio.SizeReference) else bio.SpaceInputAxis
        calibration = {"scale": float(px), "unit": "nanometer"} if px else {}
        return cls(id=bio.AxisId(axis), size=size, **calibration)

    raw_id = bio.TensorId("raw")
    side = input_side(model) if classifier else bio.ParameterizedSize(min=MIN_SIDE, step=STEP)
    input_descr = bio.InputTensorDescr(
        id=raw_id,
        description="raw grayscale TEM image"
        + (f", {side} x {side} px," if classifier else "")
        + " at the model's pixel size",
        axes=[
            bio.BatchAxis(),
            bio.ChannelAxis(channel_names=["gray"]),
            *(space(a, side) for a in "yx"),
        ],
        test_tensor=bio.FileDescr(source=folder / "test_input.npy"),
        preprocessing=[
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
            bio.ZeroMeanUnitVarianceDescr(
                kwargs=bio.ZeroMeanUnitVarianceKwargs(
                    axes=[bio.AxisId("channel"), bio.AxisId("y"), bio.AxisId("x")],
                    eps=EPSILON,
                )
            ),
        ],
    )
    spatial = (
        []
        if classifier
        else [space(a, bio.SizeReference(tensor_id=raw_id, axis_id=bio.AxisId(a))) for a in "yx"]
    )
    output_descr = bio.OutputTensorDescr(
        id=bio.TensorId("probabilities"),
        description=(
            "calibrated class probabilities of the image"
            if classifier
            else "class probabilities; the mask is their argmax over channels"
        ),
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=classes), *spatial],
        test_tensor=bio.FileDescr(source=folder / "test_output.npy"),
    )
    task = "classification" if classifier else "segmentation"
    what = "Classifies" if classifier else "Segments"
    return bio.ModelDescr(
        name=package_name(model_path, head),
        description=(
            f"{what} TEM images of nanowires into {', '.join(classes)}; trained with "
            "napari-nanowire (few labels on a self-supervised encoder)."
        )[:1024],
        authors=[bio.Author(name="napari-nanowire user")],
        cite=[bio.CiteEntry(text=CITATION, doi=bio.Doi(CITATION_DOI))],
        license=bio.LicenseId("BSD-3-Clause"),
        documentation=bio.FileDescr(source=folder / "README.md"),
        covers=[bio.FileDescr(source=folder / "cover.png")],
        tags=["electron-microscopy", "tem", "nanowires", task, "2d", "napari-nanowire"],
        inputs=[input_descr],
        outputs=[output_descr],
        weights=bio.WeightsDescr(
            torchscript=bio.TorchscriptWeightsDescr(
                source=weights, pytorch_version=bio.Version(torch.__version__.split("+")[0])
            )
        ),
        config={"napari_nanowire": head_metadata(model, head)},
    )


def package_name(model_path: Path, head: str = "segmenter") -> str:
    """A valid package name from the model file's name."""
    stem = re.sub(r"[^A-Za-z0-9 _\-()]+", " ", model_path.stem).strip() or "model"
    return f"napari-nanowire {head} {stem}"[:128]


def write_cover(image: np.ndarray, probabilities: np.ndarray, path: Path) -> None:
    """A 2:1 cover picture: the test image beside its predicted mask (classes as gray levels),
    or, for class probabilities, beside one bar per class."""
    import imageio.v3 as iio

    low, high = np.percentile(image, [0.5, 99.5])
    left = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    if probabilities.ndim == 1:  # a classifier: bars as long as the probabilities
        side = image.shape[0]
        rows = np.arange(side) * len(probabilities) // side
        columns = np.arange(image.shape[1])[None] + 0.5
        mask = (columns < probabilities[rows][:, None] * image.shape[1]) * 0.8
        mask[np.diff(rows, prepend=-1) != 0] = 0  # a gap between bars
    else:
        mask = probabilities.argmax(0) / max(probabilities.shape[0] - 1, 1)
    picture = np.concatenate([left, mask], axis=1)
    zoom = -(-256 // picture.shape[0])  # at least 256 px high, pixels kept sharp
    picture = picture.repeat(zoom, axis=0).repeat(zoom, axis=1)
    iio.imwrite(path, (picture * 255).astype(np.uint8))


def readme(model_path: Path, classes: list[str], px: float | None, model=None) -> str:
    """The package's documentation: what goes in, what comes out, where it came from."""
    scale = f"{px} nm/px" if px else "the pixel size of its training images (not recorded)"
    return f"""# {package_name(model_path)}

Exported by napari-nanowire from `{model_path.name}`.

- Input `raw`: a grayscale TEM image (batch, channel, y, x), float32, at {scale}; y and x of
  64 + 32 n px. Rescale images of another pixel size first.
- Preprocessing: zero mean and unit variance per image (declared); the weights then clip to the
  0.5-99.5 percentiles and normalise again, as napari-nanowire does.
- Output `probabilities`: one channel per class ({", ".join(classes)}); the mask is the argmax
  over channels (0 = {classes[0]}).
- Large images: predict in overlapping tiles (deepImageJ and bioimageio.core tile for you).

Method: {CITATION}, doi:{CITATION_DOI}.
"""


def classifier_readme(model_path: Path, classes: list[str], px: float | None, model) -> str:
    """A classifier package's documentation: its fixed input, its output, what it leaves out."""
    side = input_side(model)
    settings = model.meta.classifier
    scale = f"{px:g} nm/px" if px else "no recorded pixel size"
    return f"""# {package_name(model_path, "classifier")}

Exported by napari-nanowire from `{model_path.name}`.

- Input `raw`: one grayscale TEM image (batch, channel, y, x), float32, of exactly {side} x {side}
  px ({scale}). napari-nanowire gives the same probabilities for a square image of {side} px
  without a pixel size, or for a {side} px image at {scale}. Resample or crop other images to
  that first: the package does not (napari-nanowire resamples any image to its working scale).
- Preprocessing: zero mean and unit variance per image (declared); the weights then clip to the
  0.5-99.5 percentiles and normalise again, as napari-nanowire does.
- Inside: encoder features averaged over up to {settings.max_tiles} tiles of {settings.tile} px
  at scales {", ".join(f"{s:g}" for s in settings.scales)} of the input (Gaussian anti-aliasing,
  bilinear resampling), a linear head, and a softmax at the calibrated temperature
  {settings.temperature:.3g}.
- Output `probabilities`: (batch, class) for {", ".join(classes)}.

Method: {CITATION}, doi:{CITATION_DOI}.
"""
