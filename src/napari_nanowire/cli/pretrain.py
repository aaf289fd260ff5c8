"""``napari-nanowire pretrain``: self-supervised pretraining of an encoder on unlabeled images.

Works the same under ``torchrun --nproc_per_node N`` (DistributedDataParallel); process 0 shows
the progress bar and writes the model file, holding ``.MODEL.lock`` so that a second run on
the same --out is refused. Ctrl-C or SIGTERM stops after the current step and saves.
"""

from __future__ import annotations

import argparse
import os
import threading
from contextlib import nullcontext
from pathlib import Path

from napari_nanowire.cli.common import (
    IMAGE_SIZE,
    POSITIVE,
    SEED,
    STEPS,
    check_label_rows,
    given_options,
    int_range,
    read_label_table,
    show_progress,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` sub-command."""
    p = sub.add_parser(
        "pretrain",
        help="pretrain an image encoder on unlabeled images (SimCLR or Barlow Twins)",
        description=(
            "Pretrain an encoder with self-supervised learning on your own TEM images, so that "
            "a few labels are enough later. Writes one model file (written at every epoch end "
            "and on Ctrl-C; continue with --resume). Settings left out use the defaults of "
            "napari_nanowire.core.ssl.pretrain.PretrainConfig; the first line printed shows them."
        ),
    )
    p.add_argument("images", nargs="+", help="image files or folders (every image in a folder)")
    p.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model file to write")
    p.add_argument("--method", choices=("simclr", "barlow"), help="SSL method (default simclr)")
    p.add_argument("--encoder", metavar="NAME", help="tiny (default, CPU), resnet18 or resnet50")
    p.add_argument(
        "--init",
        metavar="imagenet|FILE",
        help="starting weights of a resnet18/resnet50 encoder (default random): imagenet "
        "(torchvision's, downloaded once into the torch cache; offline, the error says which "
        "file to place where) or a torchvision-compatible ResNet state dict file",
    )
    p.add_argument("--epochs", type=STEPS, metavar="E", help="passes over the images")
    p.add_argument(
        "--batch-size",
        type=int_range(2, 4096),
        metavar="B",
        help="view pairs per step (per process), at least 2",
    )
    p.add_argument(
        "--image-size", type=IMAGE_SIZE, metavar="PX", help="crop side fed to the network"
    )
    p.add_argument("--steps-per-epoch", type=STEPS, metavar="N", help="default: cover images once")
    p.add_argument("--lr", type=POSITIVE, help="peak learning rate (default scales with batch)")
    p.add_argument(
        "--crop-nm",
        type=POSITIVE,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="crop side range in nm for images with a pixel size (default: relative crops)",
    )
    p.add_argument(
        "--pixel-size", type=POSITIVE, metavar="NM", help="nm/px; overrides the files' calibration"
    )
    p.add_argument(
        "--device", help="auto (default: CUDA, then Apple MPS, then CPU), cpu, cuda, mps"
    )
    p.add_argument("--seed", type=SEED, help="random seed of weights and crops")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="table with columns image and label (or class) for a k-NN accuracy per epoch",
    )
    p.add_argument("--resume", action="store_true", help="continue training the --out file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


_CONFIG_ARGS = ("method", "encoder", "init", "epochs", "batch_size", "image_size")
_CONFIG_ARGS += ("steps_per_epoch", "lr", "device", "seed")


def run(args: argparse.Namespace) -> int:
    """Read the images, pretrain with a progress bar, report where the model is."""
    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import file_frames, output_lock
    from napari_nanowire.core.ssl.augment import AugmentConfig
    from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

    if args.out.is_dir():
        raise NanowireError(f"--out {args.out} is a folder; give the path of a model file.")
    if args.out.exists() and not (args.resume or args.overwrite):
        raise NanowireError(
            f"{args.out} exists; pass --resume to continue training it or --overwrite to "
            "replace it."
        )
    # planes of big (lazily read) files stay unread: pretraining reads them one at a time
    found = list(file_frames(args.images, args.pixel_size))
    names, images = [f.name for f in found], [f.frame for f in found]
    sizes = [f.pixel_size_nm for f in found]
    labels = _read_labels(args.labels, names) if args.labels else None
    given = given_options(args, _CONFIG_ARGS)
    augment = AugmentConfig(crop_fov_nm=tuple(args.crop_nm) if args.crop_nm else None)
    config = PretrainConfig(**given, augment=augment)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        print(
            f"pretraining {config.method} on {len(images)} image(s): encoder {config.encoder}, "
            f"{config.image_size} px crops, batch {config.batch_size}, {config.epochs} epochs, "
            f"device {config.device}"
        )
    stop = threading.Event()
    with output_lock(args.out) if main_process else nullcontext():
        events = pretrain(
            images,
            config,
            args.out,
            pixel_sizes_nm=sizes,
            labels=labels,
            stop=stop,
            resume=args.resume,
        )
        last = show_progress(events, stop, enabled=main_process)
    if main_process and last is not None:
        state = "stopped" if last.message == "stopped" else "finished"
        print(f"{state} after {last.step}/{last.total_steps} steps; model file: {args.out}")
        if state == "stopped":
            print("continue with the same command and --resume")
    return 130 if last is not None and last.message == "stopped" else 0


def _read_labels(path: Path, names: list[str]) -> list[str | None]:
    """Label per image name from a CSV (image, label or class); unlisted images get None."""
    from napari_nanowire.core.errors import NanowireError

    table = read_label_table(path)
    check_label_rows(table, path, key=lambda cell: Path(cell).stem)
    by_name = {Path(img).stem: lab for img, lab in zip(table["image"], table["label"], strict=True)}
    labels = [by_name.get(name) for name in names]
    if not any(labels):
        raise NanowireError(
            f"No image in labels table {path} matches the images given (e.g. {names[0]!r})."
        )
    return labels
