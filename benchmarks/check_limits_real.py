"""Check that the input limits refuse no genuine real micrograph, and what they do refuse.

Reads every image of a real data set (e.g. /work/shared/data/emps_train_sample: RGB PNGs and
16-bit instance masks in segmaps/) with the decoded-size check on, and counts the masks whose
number of distinct values exceeds the class cap that ``measure`` and training masks apply
(instance masks are not class masks: binarise them first).

Run:  .venv/bin/python benchmarks/check_limits_real.py /work/shared/data/emps_train_sample
Writes benchmarks/out/check_limits_real.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import image_files, read_image
from napari_nanowire.core.io.limits import max_frame_pixels
from napari_nanowire.core.names import MAX_CLASSES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with images/ and segmaps/")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = p.parse_args()
    start = time.perf_counter()
    refused, largest = [], 0
    for path in image_files(args.data / "images"):
        try:
            image = read_image(path)
            largest = max(largest, int(np.prod(image.data.shape[-2:])))
        except NanowireError as err:
            refused.append(f"{path.name}: {err}")
    images = len(image_files(args.data / "images"))
    counts = [len(np.unique(read_image(m).data)) - 1 for m in image_files(args.data / "segmaps")]
    result = {
        "date": str(date.today()),
        "machine": platform.platform(),
        "images": images,
        "images_refused": refused,
        "largest_frame_px": largest,
        "frame_limit_px": max_frame_pixels(),
        "masks": len(counts),
        "mask_values_median": float(np.median(counts)),
        "mask_values_max": int(max(counts)),
        "masks_over_class_cap": int(sum(c > MAX_CLASSES for c in counts)),
        "class_cap": MAX_CLASSES,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"{'images read':28s} {images - len(refused)} of {images}")
    print(f"{'largest frame (px)':28s} {largest:,} (limit {result['frame_limit_px']:,})")
    print(f"{'instances per mask':28s} median {result['mask_values_median']:g}, max {max(counts)}")
    print(f"{'masks over the class cap':28s} {result['masks_over_class_cap']} of {len(counts)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check_limits_real.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
