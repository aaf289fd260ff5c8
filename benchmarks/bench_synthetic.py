"""Speed of the synthetic TEM generator: seconds per image by class, size, pixel size, difficulty.

Targets (issue 2): a 256 px image well under 0.1 s, a 1024 px image under about 1 s. Each
setting generates ``--n`` images per class (different seeds) after one warm-up image; the table
gives the median and the slowest.

Usage: .venv/bin/python benchmarks/bench_synthetic.py [--n 5]
Writes benchmarks/out/bench_synthetic.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np

from napari_nanowire.core.data.synthetic import CLASSES, generate_image, image_seed

OUT = Path(__file__).parent / "out" / "bench_synthetic.json"
SETTINGS = ((256, 1.0, 0.0), (256, 1.0, 1.0), (1024, 1.0, 0.0), (1024, 2.0, 0.0), (1024, 2.0, 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="images per class and setting")
    args = parser.parse_args()
    generate_image("network", 64)
    rows = []
    print(f"{'size':>5} {'nm/px':>5} {'diff':>4} {'class':>10} {'median s':>9} {'max s':>7}")
    for size, pixel_size_nm, difficulty in SETTINGS:
        for label in CLASSES:
            seconds = []
            for index in range(args.n):
                rng = image_seed(0, label, index)
                start = time.perf_counter()
                generate_image(label, size, pixel_size_nm, difficulty, rng)
                seconds.append(time.perf_counter() - start)
            row = dict(
                size=size,
                pixel_size_nm=pixel_size_nm,
                difficulty=difficulty,
                label=label,
                median_s=float(np.median(seconds)),
                max_s=float(np.max(seconds)),
            )
            rows.append(row)
            print(
                f"{size:>5} {pixel_size_nm:>5g} {difficulty:>4g} {label:>10} "
                f"{row['median_s']:>9.3f} {row['max_s']:>7.3f}"
            )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            dict(
                date=datetime.date.today().isoformat(),
                machine=f"{platform.machine()} {platform.system()}",
                python=platform.python_version(),
                images_per_setting=args.n,
                rows=rows,
            ),
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
