"""What the command-line jobs share: options, the --out check, labels tables, the progress bar."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SEED_MAX = 2**32 - 1
"""Largest --seed: numpy and torch both take seeds in [0, 2^32 - 1] without complaint."""


def int_range(low: int, high: int, multiple: int = 1) -> Callable[[str], int]:
    """An argparse ``type`` taking whole numbers in [low, high] (and multiples of ``multiple``).

    Out-of-range values fail while parsing, before any file is read or model is loaded.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high or value % multiple:
            of = f"a multiple of {multiple} " if multiple > 1 else "a whole number "
            raise argparse.ArgumentTypeError(f"{value} is not {of}from {low} to {high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def float_range(low: float, high: float = math.inf, *, open_low: bool = False) -> Callable:
    """An argparse ``type`` taking finite numbers in [low, high] (or (low, high] if open_low)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value > low if open_low else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bound = "above" if open_low else "at least"
            top = f" and at most {high:g}" if math.isfinite(high) else ""
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {bound} {low:g}{top}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = float_range(0.0, open_low=True)
"""A finite number above 0 (pixel sizes, learning rates)."""
STEPS = int_range(1, 10**7)
"""A count of steps, epochs or passes."""
BATCH = int_range(1, 4096)
"""A batch size."""
TILE = int_range(32, 4096, multiple=32)
"""A network tile side: the U-Net halves it five times, so it is a multiple of 32."""
IMAGE_SIZE = int_range(32, 2048)
"""A crop side fed to the network (larger crops do not fit a batch in memory)."""
SEED = int_range(0, SEED_MAX)


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every training command shares: pixel size, device, seed, overwrite."""
    p.add_argument(
        "--pixel-size", type=POSITIVE, metavar="NM", help="nm/px; overrides the files' calibration"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, mps")
    p.add_argument("--seed", type=SEED, help=f"random seed, 0 to {SEED_MAX}")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def add_working_scale_options(p: argparse.ArgumentParser, default: str) -> None:
    """The segmenter's working scale and scale-bar options (train-segmenter and predict)."""
    p.add_argument(
        "--working-pixel-size",
        type=POSITIVE,
        metavar="NM",
        help=f"nm/px the segmenter works at, for calibrated images ({default})",
    )
    p.add_argument(
        "--working-downsample",
        type=float_range(1.0, 1024.0),
        metavar="F",
        help=f"original pixels per working pixel, for uncalibrated images ({default})",
    )
    p.add_argument(
        "--no-ignore-scale-bar",
        action="store_true",
        help="do not detect burned-in scale bars and databars (ignored by default)",
    )


def segment_options(args: argparse.Namespace) -> dict:
    """The segmenter overrides ``predict`` gives :meth:`Predictor.configure` (None keeps)."""
    names = ("min_object_nm2", "min_hole_nm2", "min_object_px2", "min_hole_px2")
    options = {k: getattr(args, k) for k in names}
    options.update(
        working_pixel_size_nm=args.working_pixel_size,
        working_downsample=args.working_downsample,
        postprocess=False if args.no_postprocess else None,
        fill_holes=args.fill_holes,
        refine_intensity=args.refine_intensity,
        ignore_scale_bar=False if args.no_ignore_scale_bar else None,
    )
    return {k: v for k, v in options.items() if v is not None}


def given_options(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """The named options the user gave (left-out ones keep the config's defaults)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def check_out(out: Path, overwrite: bool, what: str = "model file") -> None:
    """Refuse to replace an existing output file unless asked to, and never a folder."""
    from napari_nanowire.core.errors import NanowireError

    if out.is_dir():
        raise NanowireError(f"--out {out} is a folder; give the path of a {what} to write.")
    if out.exists() and not overwrite:
        raise NanowireError(
            f"{out} exists; pass --overwrite to replace it or choose another --out."
        )


def check_out_dir(out: Path, outputs: tuple[str, ...], overwrite: bool) -> None:
    """Refuse an --out that is a file, or a folder already holding our ``outputs``.

    Without ``--overwrite`` a second run never mixes its files with an earlier run's.
    """
    from napari_nanowire.core.errors import NanowireError

    if out.exists() and not out.is_dir():
        raise NanowireError(f"--out {out} is a file; give a folder for the results.")
    present = [name for name in outputs if (out / name).exists()]
    if present and not overwrite:
        raise NanowireError(
            f"--out {out} already holds {', '.join(present)} from an earlier run; pass "
            "--overwrite to replace them, or choose another --out."
        )


def read_label_table(path: Path):
    """The (image, label) table of a labels CSV; the label column may be called 'class'."""
    import pandas as pd

    from napari_nanowire.core.errors import NanowireError

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise NanowireError(f"Cannot read labels table {path}: {err}") from None
    column = next((c for c in ("label", "class") if c in table.columns), None)
    if "image" not in table.columns or column is None:
        raise NanowireError(
            f"Labels table {path} needs columns 'image' and 'label' (or 'class'); it has "
            f"{', '.join(map(str, table.columns)) or 'none'}."
        )
    table = table.rename(columns={column: "label"})[["image", "label"]]
    table = table[(table["image"].str.strip() != "") & (table["label"].str.strip() != "")]
    if table.empty:
        raise NanowireError(f"Labels table {path} has no labelled rows; add image,label rows.")
    return table


def check_label_rows(table: Any, path: Path, key: Callable[[str], str] = str) -> None:
    """Refuse a labels table listing an image twice: duplicates count twice in training and in
    cross-validation (a copy in both folds scores itself), conflicting labels are a typo.

    ``key`` maps an image cell to what identifies the image (pretrain matches by file stem).
    """
    from napari_nanowire.core.errors import NanowireError

    images = table["image"].map(lambda cell: key(cell.strip()))
    repeated = images[images.duplicated(keep=False)]
    if repeated.empty:
        return
    first = repeated.iloc[0]
    rows = table[images == first]
    labels = sorted(set(rows["label"]))
    what = f"with different labels ({', '.join(labels)})" if len(labels) > 1 else "twice"
    lines = ", ".join(str(i + 2) for i in rows.index)  # +2: the header, and 1-based lines
    raise NanowireError(
        f"Labels table {path} lists image {first!r} {what} (lines {lines}; "
        f"{repeated.nunique()} image(s) are listed more than once); keep one row per image."
    )


def check_under_root(paths: list[Path], root: Path, labels: Path) -> None:
    """Refuse label paths that lead outside the images root (``..``, absolute paths elsewhere)."""
    from napari_nanowire.core.errors import NanowireError

    base = root.resolve()
    for path in paths:
        if not path.resolve().is_relative_to(base):
            raise NanowireError(
                f"Labels table {labels} names {path}, outside the images root {root}; give "
                "paths relative to the root (the table's folder, or --images-root DIR)."
            )


def read_labelled_paths(labels: Path, images_root: Path | None) -> tuple[Any, list[Path]]:
    """A labels table (:func:`read_label_table`, checked by :func:`check_label_rows`) and the
    path of each row's image under ``images_root`` (default: the table's folder)."""
    table = read_label_table(labels)
    check_label_rows(table, labels)
    root = images_root or labels.parent
    paths = [root / cell.strip() for cell in table["image"]]
    check_under_root(paths, root, labels)
    return table, paths


def show_progress(events: Any, stop: threading.Event, *, enabled: bool) -> Any:
    """Drive a job's Progress events with a tqdm bar; return the last event.

    Ctrl-C or SIGTERM (a batch system ending the job) requests a clean stop: the job ends
    after its current step and saves; a second one aborts.
    """
    from tqdm import tqdm

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if enabled:
            tqdm.write("stopping after this step and saving (Ctrl-C again to abort)")

    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar, last = None, None
    try:
        for event in events:
            if bar is None:
                first = max(0, event.step - 1)
                bar = tqdm(total=event.total_steps, initial=first, unit="step", disable=not enabled)
            bar.update(event.step - bar.n)
            if event.loss is not None:
                bar.set_postfix(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.1f}")
            if event.metrics or (event.message and event.message != "stopped"):
                shown = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
                bar.write(f"{event.message}{'; ' if shown else ''}{shown}")
            last = event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    return last


def run_job(events: Iterable[Any], stop: threading.Event) -> int:
    """Show a job's progress to its end; the exit code: 0, or 130 when Ctrl-C stopped it."""
    show_progress(events, stop, enabled=True)
    return 130 if stop.is_set() else 0
