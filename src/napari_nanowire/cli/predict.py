"""``napari-nanowire predict``: classes and/or masks for image files from one model file."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from napari_nanowire.cli.common import (
    POSITIVE,
    TILE,
    add_working_scale_options,
    check_out_dir,
    int_range,
)

OUTPUTS = ("predictions.csv", "masks", "uncertainty")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser(
        "predict",
        help="classify and/or segment images with a trained model file",
        description=(
            "Run every head of a model file over image files (folders: every image in them). "
            "A classifier writes OUT/predictions.csv with columns image, class, confidence, "
            "prob_<class> per class, entropy (0 = sure, 1 = uniform) and margin (top-1 minus "
            "top-2 probability). A segmenter writes OUT/masks/<stem>.tif (uint8: 0 = "
            "background, k = mask class k, with the pixel size) and adds the columns mask and "
            "mask_entropy (mean per-pixel entropy) to predictions.csv. Stacks are predicted "
            "frame by frame (files larger than 1 GiB are read lazily), so memory stays that of "
            "one frame whatever the stack's length; the progress bar counts frames. Each "
            "file's rows are added to predictions.csv as it finishes: after a kill, --resume "
            "skips the files done. A DIR with earlier results needs --resume or --overwrite. "
            "Masks are predicted at the model's working scale and post-processed (specks "
            "dropped, pinholes filled); burned-in scale bars and databars are set to background "
            "and listed in the column ignored."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="classifier/segmenter model file")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGES", help="image files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument(
        "--pixel-size", type=POSITIVE, metavar="NM", help="nm/px; overrides the files' calibration"
    )
    p.add_argument("--tile", type=TILE, metavar="PX", help="segmentation tile (default: model's)")
    add_working_scale_options(p, "default: the model's, which it was trained at")
    p.add_argument(
        "--min-object-nm2",
        type=POSITIVE,
        metavar="NM2",
        help="post-processing: drop objects smaller than this (calibrated images; default: "
        "the model's, 16 working pixels)",
    )
    p.add_argument(
        "--min-hole-nm2", type=POSITIVE, metavar="NM2", help="fill holes smaller than this"
    )
    p.add_argument(
        "--min-object-px2", type=POSITIVE, metavar="PX2", help="as --min-object-nm2, uncalibrated"
    )
    p.add_argument(
        "--min-hole-px2", type=POSITIVE, metavar="PX2", help="as --min-hole-nm2, uncalibrated"
    )
    p.add_argument(
        "--fill-holes",
        action=argparse.BooleanOptionalAction,
        help="fill every enclosed hole up to a quarter of the image (particles; not for wire "
        "networks, which enclose background); default: as the model chose on its held-out labels",
    )
    p.add_argument(
        "--refine-intensity",
        action=argparse.BooleanOptionalAction,
        help="refine the net's probabilities with each image's grey levels (sharper borders "
        "where objects and background differ in grey level); default: as the model file says "
        "(on for segmenters trained since the refinement exists)",
    )
    p.add_argument(
        "--no-postprocess",
        action="store_true",
        help="keep the raw mask (no refinement, specks and holes)",
    )
    p.add_argument(
        "--save-uncertainty", action="store_true", help="write OUT/uncertainty/<stem>.tif maps"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (e.g. tcp://host:8786), one task per file; "
        "workers must see the images and DIR at the same paths",
    )
    p.add_argument(
        "--retries",
        type=int_range(0, 100),
        default=2,
        metavar="N",
        help="with --scheduler: retries per file",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped or killed run into DIR: files already in predictions.csv are "
        "skipped",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh in a DIR that holds earlier results"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict every image with a progress bar; say where the results are."""
    from napari_nanowire.cli.common import run_job, segment_options
    from napari_nanowire.core.io import input_files
    from napari_nanowire.core.predict import predict_files

    check_out_dir(args.out, OUTPUTS, args.overwrite or args.resume)
    paths = input_files(args.images)
    stop = threading.Event()
    options = {
        "pixel_size_nm": args.pixel_size,
        "tile": args.tile,
        "save_uncertainty": args.save_uncertainty,
        "stop": stop,
        "resume": args.resume,
        "segment_options": segment_options(args),
    }
    if args.scheduler:
        from napari_nanowire.core.predict.cluster import predict_distributed

        events = predict_distributed(
            args.model, paths, args.out, args.scheduler, retries=args.retries, **options
        )
    else:
        events = predict_files(args.model, paths, args.out, device=args.device, **options)
    return run_job(events, stop)
