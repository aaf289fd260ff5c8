"""What the command-line jobs share: options, the --out check, labels tables, the progress bar."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every training command shares: pixel size, device, seed, overwrite."""
    p.add_argument(
        "--pixel-size", type=float, metavar="NM", help="nm/px; overrides the files' calibration"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, mps")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def add_working_scale_options(p: argparse.ArgumentParser, default: str) -> None:
    """The segmenter's working scale and scale-bar options (train-segmenter and predict)."""
    p.add_argument(
        "--working-pixel-size",
        type=float,
        metavar="NM",
        help=f"nm/px the segmenter works at, for calibrated images ({default})",
    )
    p.add_argument(
        "--working-downsample",
        type=float,
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
        ignore_scale_bar=False if args.no_ignore_scale_bar else None,
    )
    return {k: v for k, v in options.items() if v is not None}


def given_options(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """The named options the user gave (left-out ones keep the config's defaults)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing model file unless asked to."""
    from napari_nanowire.core.errors import NanowireError

    if out.exists() and not overwrite:
        raise NanowireError(
            f"{out} exists; pass --overwrite to replace it or choose another --out."
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


def show_progress(events: Any, stop: threading.Event, *, enabled: bool) -> Any:
    """Drive a job's Progress events with a tqdm bar; return the last event.

    Ctrl-C requests a clean stop (the job ends after its current step); a second one aborts.
    """
    from tqdm import tqdm

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if enabled:
            tqdm.write("stopping after this step and saving (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, on_interrupt)
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
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    return last


def run_job(events: Iterable[Any], stop: threading.Event) -> int:
    """Show a job's progress to its end; the exit code: 0, or 130 when Ctrl-C stopped it."""
    show_progress(events, stop, enabled=True)
    return 130 if stop.is_set() else 0
