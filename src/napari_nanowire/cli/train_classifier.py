"""``napari-nanowire train-classifier``: a few labelled images in, a classifier model file out."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from napari_nanowire.cli.common import (
    STEPS,
    add_common_options,
    check_out,
    given_options,
    int_range,
    read_labelled_paths,
    show_progress,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-classifier`` sub-command."""
    p = sub.add_parser(
        "train-classifier",
        help="train an image classifier on a pretrained encoder from a few labelled images",
        description=(
            "Fit a linear classifier on frozen encoder features (plus hand-made descriptors, "
            "unless --no-descriptors) of labelled images (seconds on "
            "a CPU; one image per class is enough to start), optionally fine-tuning the encoder. "
            "Writes one model file with the encoder and the classifier. If the --encoder file "
            "already holds a segmenter, it is kept (unless --fine-tune changes the encoder). "
            "Images may differ in size: those without a pixel size are resized to a common "
            "working size. Prints the accuracy estimated by predicting each labelled image "
            "with classifiers fitted without it, the range of accuracies that leaves "
            "plausible (95 %), and how it compares with always answering "
            "the most common class; the confidences of later predictions are calibrated on "
            "those held-out predictions."
        ),
    )
    p.add_argument("--encoder", required=True, type=Path, metavar="MODEL", help="encoder model")
    p.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="CSV",
        help="table with columns image and label (or class); one row per labelled image",
    )
    p.add_argument(
        "--images-root",
        type=Path,
        metavar="DIR",
        help="folder the image paths are relative to (default: the table's folder)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model file to write")
    p.add_argument("--fine-tune", action="store_true", help="also train the encoder end to end")
    p.add_argument(
        "--no-descriptors",
        dest="descriptors",
        action="store_false",
        help="use the encoder's features only, without the hand-made texture and shape "
        "descriptors and the scale spectrum, so that `napari-nanowire export` can write the "
        "classifier as TorchScript or BioImage.IO (unless --measurements is also given). The "
        "cost: on the synthetic benchmark, accuracy 0.53 instead of 0.69 at 8 labels a class; "
        "on a real particle sample (EMPS) 0.40 instead of 0.48 at 4 (benchmarks/RESULTS.md)",
    )
    p.add_argument(
        "--measurements",
        action="store_true",
        help="add measurements of the --encoder file's segmenter masks (area fraction, domain "
        "count, widths, lengths, shape, order, percolation) to the features (such a "
        "classifier cannot be exported)",
    )
    p.add_argument(
        "--no-ignore-scale-bar",
        dest="ignore_annotations",
        action="store_false",
        help="show the classifier burned-in scale bars, databars and label boxes as they are "
        "(by default they are painted over with the surrounding grey before features are "
        "computed, as the segmenter ignores them)",
    )
    p.add_argument("--epochs", type=STEPS, metavar="N", help="linear head steps (default 300)")
    p.add_argument("--fine-tune-epochs", type=STEPS, metavar="N", help="fine-tune passes (20)")
    p.add_argument(
        "--tile", type=int_range(32, 4096), metavar="PX", help="feature tile (default: encoder's)"
    )
    p.add_argument(
        "--working-size",
        type=int_range(32, 8192),
        metavar="PX",
        help="long side images without a pixel size are resized to (default 4 tiles); "
        "images of any size can be mixed",
    )
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the labelled images, train with a progress bar, report the metrics."""
    from napari_nanowire.core.heads.calibrate import describe_confidence
    from napari_nanowire.core.heads.classify import ClassifierConfig, train_classifier
    from napari_nanowire.core.io import output_lock

    check_out(args.out, args.overwrite)
    table, paths = read_labelled_paths(args.labels, args.images_root)
    images, sizes = read_labelled_images(paths, args.pixel_size)
    given = given_options(
        args, ("epochs", "fine_tune_epochs", "tile", "working_size", "device", "seed")
    )
    config = ClassifierConfig(
        fine_tune=args.fine_tune,
        descriptors=args.descriptors,
        measurements=args.measurements,
        ignore_annotations=args.ignore_annotations,
        **given,
    )
    counts = table["label"].value_counts().sort_index()
    print(
        f"training a classifier on {len(images)} image(s): "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
    )
    stop = threading.Event()
    events = train_classifier(
        args.encoder, images, list(table["label"]), args.out, sizes, config, stop
    )
    with output_lock(args.out):  # a second run on the same --out is refused
        last = show_progress(events, stop, enabled=True)
    if last is not None and last.done:
        print(describe_confidence(last.metrics))
    return 130 if stop.is_set() else 0


def read_labelled_images(paths: list[Path], pixel_size_nm: float | None) -> tuple[list, list]:
    """The 2D image and pixel size of each file, sizes free to differ; a stack is refused
    (one label per image)."""
    import numpy as np

    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import file_frames

    images, sizes = [], []
    for path in paths:
        found = list(file_frames([path], pixel_size_nm))
        if len(found) != 1:
            raise NanowireError(
                f"{path} is a stack of {len(found)} images, but a labels table gives one label "
                "per file; save the images as separate files and label each."
            )
        images.append(np.asarray(found[0].frame))
        sizes.append(found[0].pixel_size_nm)
    return images, sizes
