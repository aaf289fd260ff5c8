"""``napari-nanowire synth``: write a synthetic TEM nanowire data set with its ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_nanowire.cli.common import SEED, check_out_dir, int_range


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    p = sub.add_parser(
        "synth",
        help="write synthetic TEM nanowire images with masks and truth tables",
        description=(
            "Write synthetic bright-field TEM images of the four morphology classes "
            "(singular, dispersed, bundle, network) to OUT: images/, masks/ and instances/ "
            "as ImageJ TIFFs with the pixel size, plus labels.csv, wires.csv and truth.csv."
        ),
    )
    p.add_argument("out", type=Path, help="output folder (created if missing)")
    p.add_argument("--n-per-class", type=int, default=10, help="images per class (default 10)")
    p.add_argument(  # the lower bound 32 is checked by the generator, with its reason
        "--size", type=int_range(1, 8192), default=256, help="image side in px (default 256)"
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument(
        "--pixel-size", type=float, default=1.0, help="pixel size in nm/px (default 1.0)"
    )
    p.add_argument(
        "--difficulty",
        type=float,
        default=0.0,
        help="0 = clean, separable classes; 1 = noisy, low contrast, overlapping classes",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate and write the data set, then print one summary line."""
    from napari_nanowire.core.data.synthetic import CLASSES, generate_dataset, write_dataset

    check_out_dir(args.out, (), overwrite=True)  # refuse a file in the way of the folder
    items = generate_dataset(
        args.n_per_class,
        size=args.size,
        pixel_size_nm=args.pixel_size,
        difficulty=args.difficulty,
        seed=args.seed,
    )
    out = write_dataset(items, args.out)
    print(
        f"wrote {len(items)} images ({args.n_per_class} per class: {', '.join(CLASSES)}; "
        f"{args.size} px at {args.pixel_size:g} nm/px, difficulty {args.difficulty:g}) to {out}"
    )
    return 0
