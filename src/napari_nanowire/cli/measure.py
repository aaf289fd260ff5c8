"""``napari-nanowire measure``: domain sizes, shapes and percolation of masks, as CSV tables."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from napari_nanowire.cli.common import POSITIVE, check_out_dir


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``measure`` sub-command."""
    p = sub.add_parser(
        "measure",
        help="measure domains in masks (widths, lengths, areas in nm, percolation)",
        description=(
            "Measure every connected domain of dense label masks (0 = background, 1, 2, ... = "
            "classes) and summarise each image. Writes OUT/domains.csv (one row per domain, with "
            "flags below_min_area, touches_border, short_skeleton), OUT/summary.csv (one row per "
            "image and class; flagged domains left out and counted) and OUT/measure.json (the "
            "settings and rules)."
        ),
    )
    p.add_argument(
        "masks", nargs="+", help="mask files or folders (a stack gives one mask per plane)"
    )
    p.add_argument(
        "--pixel-size",
        type=POSITIVE,
        metavar="NM",
        help="pixel size in nm/px; overrides the files' calibration (needed if they have none)",
    )
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="NAME",
        help="name of mask value 1, then 2, ... (repeat: --class wire --class particle); "
        "default: 1 = wire",
    )
    p.add_argument(
        "--connectivity",
        type=int,
        choices=(1, 2),
        default=2,
        help="1 = 4-connected domains, 2 = 8-connected (default)",
    )
    p.add_argument(
        "--exclude-border", action="store_true", help="leave out domains touching the image edge"
    )
    p.add_argument(
        "--split-touching",
        action="store_true",
        help="measure touching particles one by one (watershed of the distance transform, as "
        "ImageJ's binary watershed); default: a clump of touching particles is one domain",
    )
    p.add_argument(
        "--min-area-nm2",
        "--min-area",
        dest="min_area",
        type=_min_area,
        default=None,
        metavar="NM2",
        help="flag domains smaller than this area in nm^2 and leave them out of the summary; "
        "default 'auto': max(16 px, 1 nm^2, the --model's post-processing minimum)",
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="the segmenter model file the masks came from: its post-processing minimum object "
        "area (if it records one) raises the automatic minimum area",
    )
    p.add_argument(
        "--include-flagged",
        action="store_true",
        help="count flagged domains (small, cut by the edge, stubs) in the summary statistics",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV tables")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the tables of an earlier run in DIR"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure the masks, write both tables and say where they are."""
    from napari_nanowire.core.measure import MeasureOptions
    from napari_nanowire.core.measure.tables import measure_masks, write_tables

    check_out_dir(Path(args.out), ("domains.csv", "summary.csv"), args.overwrite)
    names = dict(enumerate(args.classes, start=1)) if args.classes else None
    options = MeasureOptions(
        connectivity=args.connectivity,
        exclude_border=args.exclude_border,
        min_area_nm2=args.min_area,
        class_names=names,
        model_min_area_nm2=_model_min_area(args.model),
        include_flagged=args.include_flagged,
        split_touching=args.split_touching,
    )
    domains, summary = measure_masks(_read_masks(args.masks, args.pixel_size), options)
    domains_csv, summary_csv = write_tables(domains, summary, args.out, options)
    print(
        f"Measured {summary['image'].nunique()} mask(s), {len(domains)} domains "
        f"({int(summary['excluded_small'].sum())} below the minimum area left out of the "
        f"summary): {domains_csv}, {summary_csv}"
    )
    return 0


def _min_area(text: str) -> float | None:
    """``auto`` (None) or a non-negative area in nm^2, for argparse."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or an area >= 0 in nm^2")
    return value


def _model_min_area(path: str | None) -> float | None:
    """The segmenter's post-processing minimum area from a model file, if it records one."""
    if path is None:
        return None
    from napari_nanowire.core.measure.selection import segmenter_min_area_nm2
    from napari_nanowire.core.model.modelfile import load_model

    return segmenter_min_area_nm2(load_model(path).meta)


def _read_masks(paths: list[str], pixel_size_nm: float | None) -> Iterator[tuple]:
    """(name, mask, pixel size) per mask plane, read one file at a time."""
    import numpy as np

    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import file_frames

    for found in file_frames(paths, pixel_size_nm):
        if found.pixel_size_nm is None:
            raise NanowireError(
                f"{found.path} has no pixel size in its metadata; pass --pixel-size NM (nm per "
                "pixel) so that the measurements are in nm."
            )
        yield found.label, np.asarray(found.frame), found.pixel_size_nm
