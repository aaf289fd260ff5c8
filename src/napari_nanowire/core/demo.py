"""The headless demo: the whole workflow on built-in synthetic data, ending in a report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .io import read_image
from .report import save_montage
from .synthetic import CLASSES, generate_dataset, write_dataset


@dataclass
class DemoConfig:
    """Sizes of the demo run; the defaults finish in minutes on a laptop CPU."""

    n_per_class: int = 6
    size: int = 256
    pixel_size_nm: float = 1.0
    difficulty: float = 0.3
    seed: int = 0


def run_demo(
    out_dir: str | Path, config: DemoConfig | None = None, log: Callable[[str], None] = print
) -> dict:
    """Generate data, read it back through the reader, and write a montage and a summary.

    Returns the summary that is also written to ``out_dir/summary.json``.
    """
    config = config or DemoConfig()
    out = Path(out_dir)
    started = time.perf_counter()
    items = generate_dataset(
        config.n_per_class,
        size=config.size,
        pixel_size_nm=config.pixel_size_nm,
        difficulty=config.difficulty,
        seed=config.seed,
    )
    data_dir = write_dataset(items, out / "data")
    log(f"wrote {len(items)} synthetic images to {data_dir}")

    stack = read_image(data_dir / "images")
    log(
        f"read back {stack.data.shape[0]} images of {stack.data.shape[1:]} px at "
        f"{stack.pixel_size_nm} nm/px"
    )
    labels = pd.read_csv(data_dir / "labels.csv")
    truth = pd.read_csv(data_dir / "truth.csv")

    picks = [i for c in CLASSES for i in [j for j, it in enumerate(items) if it.label == c][:3]]
    montage = save_montage(
        [items[i].image for i in picks],
        [items[i].name for i in picks],
        out / "montage.png",
        pixel_size_nm=config.pixel_size_nm,
        ncols=6,
    )
    log(f"montage: {montage}")

    summary = {
        "images": int(stack.data.shape[0]),
        "image_shape_px": list(stack.data.shape[1:]),
        "pixel_size_nm": stack.pixel_size_nm,
        "images_per_class": labels["label"].value_counts().sort_index().to_dict(),
        "mean_area_fraction_per_class": truth.groupby("label")["area_fraction"]
        .mean()
        .round(4)
        .to_dict(),
        "percolating_per_class": truth.groupby("label")["percolates_x"].sum().astype(int).to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"summary: {out / 'summary.json'}")
    return summary
