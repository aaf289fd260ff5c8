"""``napari-nanowire export``: a model file's segmenter or classifier for other software."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = sub.add_parser(
        "export",
        help="export a segmenter or classifier as a BioImage.IO package or a TorchScript file",
        description=(
            "Export the segmenter or the classifier of a model file (its only head, or the one "
            "--head names). --format bioimageio writes a BioImage.IO model package (spec 0.5: "
            "TorchScript weights, axes in nm, preprocessing, test tensors, cover, class names, "
            "citation) for deepImageJ, Fiji, ilastik and bioimageio.core; OUT ending in .zip "
            "gives a zip file, else a folder. Needs the [bioimageio] extra. --format "
            "torchscript writes one .pt file that needs only PyTorch, normalisation included: "
            "a segmenter takes raw (B, 1, Y, X) images at the model's pixel size and gives "
            "class probabilities per pixel; a classifier takes raw square images of its "
            "working size and gives calibrated class probabilities per image (classifiers "
            "that use hand-made descriptors or mask measurements are refused: those have no "
            "exact TorchScript form; train-classifier --no-descriptors trains one without)."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="model file")
    p.add_argument("--format", required=True, choices=("bioimageio", "torchscript"))
    p.add_argument("--out", required=True, type=Path, metavar="DIR_OR_ZIP_OR_PT", help="output")
    p.add_argument(
        "--head",
        choices=("segmenter", "classifier"),
        help="which head to export (needed only when MODEL holds both)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and say where the result is."""
    from napari_nanowire.cli.common import check_out

    check_out(args.out, args.overwrite)
    if args.format == "torchscript":
        from napari_nanowire.core.export import export_torchscript

        out = export_torchscript(args.model, args.out, args.head)
    else:
        from napari_nanowire.core.export.bioimageio import export_bioimageio

        out = export_bioimageio(args.model, args.out, args.head)
    print(f"wrote {out}")
    return 0
