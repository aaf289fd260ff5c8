"""``napari-nanowire train-segmenter``: images with stroke or dense masks in, a segmenter out."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from napari_nanowire.cli.common import (
    BATCH,
    POSITIVE,
    STEPS,
    TILE,
    add_common_options,
    add_working_scale_options,
    check_out,
    given_options,
    int_range,
    run_job,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-segmenter`` sub-command."""
    p = sub.add_parser(
        "train-segmenter",
        help="train a U-Net segmenter on a pretrained encoder from masks or a few strokes",
        description=(
            "Train a U-Net decoder (and, with a lower learning rate, the encoder) from masks "
            "matched to images by file name stem. Masks: 0 = not labelled, 1 = background, "
            "2.. = classes (a few painted strokes are enough); with --dense-masks, 0 = "
            "background and 1.. = classes. Writes one model file with encoder and segmenter; "
            "a classifier in the --encoder file is kept only with --freeze-encoder. Training "
            "and prediction run at a working scale (stored in the model file): by default the "
            "images' median long side is brought to about 384 px; burned-in scale bars and "
            "databars count as not labelled. With --semi-supervised, images without a mask "
            "(and those in --unlabelled) train the net too. One image, or a share of the "
            "strokes of a single image, is held out to validate; training stops when that "
            "stops improving, or at --max-seconds."
        ),
    )
    p.add_argument("--encoder", required=True, type=Path, metavar="MODEL", help="encoder model")
    p.add_argument("--images", required=True, type=Path, metavar="DIR", help="image folder")
    p.add_argument("--masks", required=True, type=Path, metavar="DIR", help="mask folder")
    p.add_argument("--dense-masks", action="store_true", help="masks: 0 = background, 1.. = class")
    p.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model file to write")
    p.add_argument(
        "--class-names",
        metavar="A,B",
        help="foreground class names, comma-separated, in mask "
        "value order (default 'foreground', or class_1, class_2, ...)",
    )
    p.add_argument(
        "--semi-supervised",
        action="store_true",
        help="also learn from the images without masks (FixMatch); off by default: it did "
        "not raise IoU in the benchmarks (benchmarks/RESULTS.md) and trains 1.5-2x longer",
    )
    p.add_argument(
        "--unlabelled",
        type=Path,
        metavar="DIR",
        help="more images without masks for semi-supervised training (implies --semi-supervised)",
    )
    p.add_argument("--steps", type=STEPS, metavar="N", help="most training steps (default 2000)")
    p.add_argument(
        "--max-seconds",
        type=POSITIVE,
        metavar="S",
        help="training time cap in seconds (default 90)",
    )
    p.add_argument(
        "--patience",
        type=int_range(0, 10**6),
        metavar="K",
        help="stop after K validations without improvement (default 6; 0: run all steps)",
    )
    p.add_argument("--batch-size", type=BATCH, metavar="B", help="crops per step (default 8)")
    p.add_argument(
        "--tile",
        type=TILE,
        metavar="PX",
        help="prediction tile side in working pixels, multiple of 32 (default: from the "
        "working images, at most 256)",
    )
    p.add_argument(
        "--crop",
        type=TILE,
        metavar="PX",
        help="training crop side in working pixels, multiple of 32 (default: the tile, at most "
        "128: small crops train several times faster)",
    )
    add_working_scale_options(p, "default: the images' median long side brought to about 384 px")
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Match masks to images, train with a progress bar, report the metrics."""
    from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter
    from napari_nanowire.core.io import output_lock

    check_out(args.out, args.overwrite)
    pairs, lonely = match_masks(args.images, args.masks)
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    images, masks, sizes = read_pairs(pairs, args.pixel_size, names, args.dense_masks)
    semi = args.semi_supervised or args.unlabelled is not None
    unlabelled_files = lonely if semi else []
    if args.unlabelled:
        unlabelled_files += unlabelled_images(args.unlabelled)
    unlabelled, u_sizes = read_unlabelled(unlabelled_files, args.pixel_size)
    options = ("steps", "batch_size", "tile", "crop", "device", "seed", "max_seconds", "patience")
    config = SegmenterConfig(
        dense_masks=args.dense_masks,
        freeze_encoder=args.freeze_encoder,
        semi_supervised=semi,
        working_pixel_size_nm=args.working_pixel_size,
        working_downsample=args.working_downsample,
        ignore_scale_bar=not args.no_ignore_scale_bar,
        **given_options(args, options),
    )
    print(
        f"training a segmenter on {len(images)} image(s) with masks and {len(unlabelled)} "
        f"without, at most {config.steps} steps and {config.max_seconds} s"
    )
    stop = threading.Event()
    events = train_segmenter(
        args.encoder, images, masks, args.out, sizes, names, config, stop, unlabelled, u_sizes
    )
    with output_lock(args.out):  # a second run on the same --out is refused
        return run_job(events, stop)


def match_masks(images_dir: Path, masks_dir: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, mask) file pairs with the same stem, and the images without a mask."""
    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import image_files

    for folder, what in ((images_dir, "--images"), (masks_dir, "--masks")):
        if not folder.is_dir():
            raise NanowireError(f"{what} {folder} is not a folder; pass the folder of files.")
    images = {p.stem: p for p in image_files(images_dir)}
    masks = {p.stem: p for p in image_files(masks_dir)}
    pairs = [(images[s], masks[s]) for s in images if s in masks]
    lonely_images = sorted(s for s in images if s not in masks)
    lonely_masks = sorted(s for s in masks if s not in images)
    if not pairs:
        raise NanowireError(
            f"No mask in {masks_dir} has the file name (without extension) of an image in "
            f"{images_dir}: name each mask like its image, e.g. images/a.tif and masks/a.tif."
        )
    if lonely_images:
        print(f"images without a mask: {', '.join(lonely_images)}")
    if lonely_masks:
        print(f"masks without an image (not used): {', '.join(lonely_masks)}")
    return pairs, [images[s] for s in lonely_images]


def unlabelled_images(folder: Path) -> list[Path]:
    """The image files of the --unlabelled folder."""
    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import image_files

    if not folder.is_dir():
        raise NanowireError(f"--unlabelled {folder} is not a folder; pass a folder of images.")
    return image_files(folder)


def read_unlabelled(paths: list[Path], pixel_size_nm: float | None) -> tuple[list, list]:
    """The 2D frames of images without masks, and their pixel sizes."""
    import numpy as np

    from napari_nanowire.core.io import file_frames

    found = list(file_frames(paths, pixel_size_nm)) if paths else []
    return [np.asarray(f.frame) for f in found], [f.pixel_size_nm for f in found]


def read_pairs(
    pairs: list[tuple[Path, Path]],
    pixel_size_nm: float | None,
    class_names: list[str] | None = None,
    dense: bool = False,
) -> tuple[list, list, list]:
    """2D images, masks and pixel sizes (a stack pairs frame by frame with a mask stack).

    Mask values are checked against ``class_names`` as each file is read, naming the file.
    """
    import numpy as np

    from napari_nanowire.core.errors import NanowireError
    from napari_nanowire.core.io import file_frames
    from napari_nanowire.core.masks import check_mask_values, check_shape, label_mask

    images, masks, sizes = [], [], []
    for image_path, mask_path in pairs:
        image_frames = list(file_frames([image_path], pixel_size_nm))
        mask_frames = list(file_frames([mask_path]))
        if len(mask_frames) != len(image_frames):
            raise NanowireError(
                f"Mask {mask_path} holds {len(mask_frames)} frame(s) but image {image_path} "
                f"holds {len(image_frames)}; give one mask frame per image frame."
            )
        for image, mask in zip(image_frames, mask_frames, strict=True):
            frame_mask = np.asarray(mask.frame)
            check_shape(
                frame_mask.shape,
                np.shape(image.frame),
                f"Mask {mask.label}",
                f"image {image.label}",
            )
            check_mask_values(frame_mask, mask.label, class_names, dense)
            try:
                masks.append(label_mask(frame_mask, floats=False))
            except NanowireError as err:
                raise NanowireError(f"Mask {mask.label}: {err}") from None
            images.append(np.asarray(image.frame))
            sizes.append(image.pixel_size_nm)
    return images, masks, sizes
