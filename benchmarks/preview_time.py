"""Seconds of the GUI's slice preview (core.heads.preview) on 512 and 1024 px frames.

Three synthetic frames of the given size carry simulated strokes; each size gets a first
preview from the encoder (a new decoder) and a second one that continues the first's weights,
as pressing "Preview slice" twice does. Prints a table with the machine's load average and
writes JSON. The encoder is the tiny one with random weights: time does not depend on them.

    PYTHONPATH=src python benchmarks/preview_time.py --out benchmarks/out/preview_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from napari_nanowire.core.data.synthetic import generate_dataset, simulate_strokes
from napari_nanowire.core.heads.preview import preview_slice
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, save_model
from napari_nanowire.core.progress import result_of


def encoder_file(folder: Path, name: str = "tiny") -> Path:
    """An encoder-only model file with random weights."""
    torch.manual_seed(0)
    model = ModelFile(ModelMeta(encoder=name, image_size=96, pixel_size_nm=1.0))
    model.set_part("encoder", build_encoder(name).eval())
    return save_model(model, folder / "encoder.nwmodel")


def run(size: int, folder: Path, encoder: Path) -> list[dict]:
    """Two previews (from the encoder, then continued) on ``size`` px frames."""
    items = generate_dataset(1, size=size, pixel_size_nm=1.0, seed=3)[:3]
    images = [i.image for i in items]
    masks = [simulate_strokes(i.mask, k, stroke_px=size // 8) for k, i in enumerate(items)]
    out = folder / f"preview-{size}.nwmodel"
    rows = []
    start = encoder
    for attempt in ("first (from encoder)", "second (continued)"):
        began = time.perf_counter()
        job = preview_slice(start, images, masks, images[0], out, [1.0] * 3, 1.0, ["wire"])
        result = result_of(job)
        total = time.perf_counter() - began
        load = os.getloadavg()[0]
        rows.append(
            {
                "frame_px": size,
                "preview": attempt,
                "continued": result.continued,
                "steps": result.steps,
                "train_s": round(result.train_seconds, 2),
                "predict_s": round(result.predict_seconds, 2),
                "total_s": round(total, 2),
                "load_1min": round(load, 2),
            }
        )
        start = out
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the GUI: 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/preview_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        encoder = encoder_file(folder)
        for size in args.sizes:
            rows += run(size, folder, encoder)
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
