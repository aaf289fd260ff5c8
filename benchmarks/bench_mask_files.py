"""Size of mask files on real masks: compressed, marked mask TIFFs against uncompressed ones.

Reads the 16-bit instance maps of a folder of real EM masks (``segmaps/*.png`` of the EMPS
sample) and writes each one as napari-nanowire writes masks now
(:func:`~napari_nanowire.core.io.labels.write_labels`: zlib-compressed ImageJ TIFF, uint8 or
uint16 as needed, pixel size, class names) and as it wrote them before (uncompressed ImageJ
TIFF), both as the instance map (uint8, or uint16 above 255 particles) and as a
semantic mask (0 = background, 1 = particle, uint8: what ``predict`` writes). Every file is
read back and compared with what was written. Prints a table and writes JSON.

Usage: .venv/bin/python benchmarks/bench_mask_files.py /work/shared/data/emps_train_sample
       [--out benchmarks/out/bench_mask_files.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_nanowire.core.io import read_image, write_tiff
from napari_nanowire.core.io.labels import LabelsInfo, labels_dtype, read_labels_info, write_labels

OUT = Path(__file__).parent / "out" / "bench_mask_files.json"


def sizes(mask: np.ndarray, folder: Path, info: LabelsInfo) -> dict:
    """Bytes and write seconds of one mask, compressed-marked and uncompressed; checked."""
    row = {}
    for name, write in (
        ("compressed", lambda p: write_labels(p, mask, 1.0, info)),
        ("uncompressed", lambda p: write_tiff(p, mask.astype(labels_dtype(mask)), 1.0)),
    ):
        path = folder / f"{name}.tif"
        start = time.perf_counter()
        write(path)
        row[f"{name}_s"] = time.perf_counter() - start
        row[f"{name}_bytes"] = path.stat().st_size
        back = read_image(path)
        assert np.array_equal(back.data, mask) and back.pixel_size_nm == 1.0, path
    assert read_labels_info(folder / "compressed.tif") == info
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder with segmaps/*.png (16-bit instance maps)")
    p.add_argument("--out", type=Path, default=OUT, help=f"JSON report (default {OUT})")
    args = p.parse_args()
    files = sorted((args.data / "segmaps").glob("*.png"))
    if not files:
        raise SystemExit(f"no segmaps/*.png in {args.data}")
    totals: dict[str, dict[str, float]] = {"instances": {}, "semantic": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for file in files:
            instances = iio.imread(file)
            semantic = (instances > 0).astype(np.uint8)
            for kind, mask, info in (
                ("instances", instances, LabelsInfo(["background", "particle"])),
                ("semantic", semantic, LabelsInfo(["background", "particle"])),
            ):
                for key, value in sizes(mask, Path(tmp), info).items():
                    totals[kind][key] = totals[kind].get(key, 0.0) + value
    print(f"{len(files)} masks from {args.data}")
    print("| masks | uncompressed MiB | compressed MiB | ratio | write s (uncompressed) |")
    print("|---|---|---|---|---|")
    for kind, t in totals.items():
        raw, packed = t["uncompressed_bytes"], t["compressed_bytes"]
        print(
            f"| {kind} | {raw / 2**20:.2f} | {packed / 2**20:.2f} | {raw / packed:.1f} | "
            f"{t['compressed_s']:.2f} ({t['uncompressed_s']:.2f}) |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "data": str(args.data),
        "files": len(files),
    }
    args.out.write_text(json.dumps({"meta": meta, "totals": totals}, indent=1))


if __name__ == "__main__":
    main()
