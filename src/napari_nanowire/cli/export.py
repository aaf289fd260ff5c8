"""``napari-nanowire export``: a model file's segmenter for other software."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = sub.add_parser(
        "export",
        help="export a segmenter as a BioImage.IO package or a TorchScript file",
        description=(
            "Export the segmenter of a model file. --format bioimageio writes a BioImage.IO "
            "model package (spec 0.5: TorchScript weights, axes in nm, preprocessing, test "
            "tensors, cover, class names, citation) for deepImageJ, Fiji, ilastik and "
            "bioimageio.core; OUT ending in .zip gives a zip file, else a folder. Needs the "
            "[bioimageio] extra. --format torchscript writes one .pt file that needs only "
            "PyTorch: raw (B, 1, Y, X) images at the model's pixel size in, class "
            "probabilities out, normalisation included."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="model file with a segmenter")
    p.add_argument("--format", required=True, choices=("bioimageio", "torchscript"))
    p.add_argument("--out", required=True, type=Path, metavar="DIR_OR_ZIP_OR_PT", help="output")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and say where the result is."""
    from napari_nanowire.cli.common import check_out

    check_out(args.out, args.overwrite)
    if args.format == "torchscript":
        from napari_nanowire.core.export import export_torchscript

        out = export_torchscript(args.model, args.out)
    else:
        from napari_nanowire.core.export.bioimageio import export_bioimageio

        out = export_bioimageio(args.model, args.out)
    print(f"wrote {out}")
    return 0
