"""Inference speed and memory: seconds per image for classification and segmentation.

Each size runs in its own subprocess so that peak memory (ru_maxrss) belongs to it alone.
Segmentation is our streamed sliding window (:meth:`Predictor.segment`); the compute floor is
the network's FLOPs over all tiles (FlopCounterMode) divided by the measured float32
matrix-product rate. The peer: one naive forward of the whole image through the U-Net (sizes
where it fits), which has no tile overlap but holds every feature map at once.
Weights are random (core.batch.random_model): cost does not depend on them.

Usage: .venv/bin/python benchmarks/bench_inference.py [--sizes 1024 2048 4096] [--threads 2]
Writes benchmarks/out/bench_inference.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "bench_inference.json"


def matmul_gflops(torch) -> float:
    """Best float32 matrix-product rate over a few 1024^3 products, in GFLOP/s."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best / 1e9


def one_size(side: int, encoder: str, tile: int, naive: bool) -> dict:
    """Time classification and segmentation of one side x side image; FLOPs; peak RSS."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_nanowire.core.batch import random_model
    from napari_nanowire.core.predict import Predictor
    from napari_nanowire.core.tiling import tile_starts

    predictor = Predictor(random_model(encoder, tile=tile), "random", "cpu")
    image = np.random.default_rng(0).random((side, side), dtype=np.float32)
    row = {"side": side, "encoder": encoder, "tile": tile, "gflops_peak": matmul_gflops(torch)}
    start = time.perf_counter()
    predictor.classify([image])
    row["classify_s"] = time.perf_counter() - start
    start = time.perf_counter()
    predictor.segment(image)
    row["segment_s"] = time.perf_counter() - start
    n_tiles = len(tile_starts(side, tile, tile // 4)) ** 2
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        predictor.net(torch.zeros(1, 1, tile, tile))
    row["segment_gflop"] = counter.get_total_flops() * n_tiles / 1e9
    row["segment_floor_s"] = row["segment_gflop"] / row["gflops_peak"]
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if naive:
        start = time.perf_counter()
        with torch.inference_mode():
            predictor.net(torch.from_numpy(image)[None, None]).argmax(1)
        row["naive_whole_image_s"] = time.perf_counter() - start
        row["naive_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--encoder", default="tiny")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--naive-up-to", type=int, default=2048, help="largest size for the peer")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        row = one_size(args.child, args.encoder, args.tile, args.child <= args.naive_up_to)
        print(json.dumps(row))
        return
    rows = []
    for side in args.sizes:
        command = [sys.executable, __file__, "--child", str(side), "--encoder", args.encoder]
        command += ["--tile", str(args.tile), "--threads", str(args.threads)]
        command += ["--naive-up-to", str(args.naive_up_to)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| side | classify s | segment s | floor s | segment/floor | naive s | RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        naive = f"{r['naive_whole_image_s']:.2f}" if "naive_whole_image_s" in r else "-"
        ratio = r["segment_s"] / r["segment_floor_s"]
        print(
            f"| {r['side']} | {r['classify_s']:.2f} | {r['segment_s']:.2f} | "
            f"{r['segment_floor_s']:.2f} | {ratio:.1f} | {naive} | {r['peak_rss_mib']:.0f} |"
        )
    OUT.parent.mkdir(exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "threads": args.threads,
    }
    OUT.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
