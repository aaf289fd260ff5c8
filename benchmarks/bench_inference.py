"""Inference speed and memory: seconds per image for classification and segmentation.

Each size runs in its own subprocess so that peak memory (ru_maxrss) belongs to it alone.
Segmentation is our streamed sliding window (:meth:`Predictor.segment`); the compute floor is
the network's FLOPs over all tiles (FlopCounterMode) divided by the measured float32
matrix-product rate. The peer: one naive forward of the whole image through the U-Net (sizes
where it fits), which has no tile overlap but holds every feature map at once.
Weights are random (core.batch.random_model): cost does not depend on them.

The stack figure: images/s and peak RSS of ``predict_files`` (the CLI's code path) over an
N-frame stack file, written zlib-compressed page by page and read lazily (the child lowers
``io.LAZY_BYTES`` to 0, as for a stack larger than memory), for each N of --stack-frames:
peak RSS should be flat in N ("growth" is peak RSS over what the process held before the
first frame: imports, model). For single images, B/px is that growth per pixel of the image.
The stack rows also give the size of the mask file written (and of the uncertainty maps with
--save-uncertainty) against its uncompressed size; the model's output layer is made steep so
that its masks are about half wire, in noise: a worst case for compression.

Usage: .venv/bin/python benchmarks/bench_inference.py [--sizes 1024 2048 4096] [--threads 2]
       [--stack-frames 20 100] [--stack-side 1024]
An 8k x 8k image: --sizes 8192 (about 1.3 GB over the imports; the naive whole-image peer
runs only up to --naive-up-to, 2048 by default, as it holds every feature map at once).
Writes benchmarks/out/bench_inference.json (--out to choose).
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
import tempfile
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


def rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(side: int, encoder: str, tile: int, naive: bool) -> dict:
    """Time classification and segmentation of one side x side image; FLOPs; peak RSS."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_nanowire.core.heads.tiling import tile_starts
    from napari_nanowire.core.model.random_models import random_model
    from napari_nanowire.core.predict import Predictor

    predictor = Predictor(random_model(encoder, tile=tile), "random", "cpu")
    predictor.segment(np.zeros((tile, tile), np.float32))  # first-call allocations, once
    base = rss_mib()
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
    row["peak_rss_mib"] = rss_mib()
    row["base_rss_mib"] = base
    row["bytes_per_px"] = (row["peak_rss_mib"] - base) * 2**20 / side**2
    if naive:
        start = time.perf_counter()
        with torch.inference_mode():
            predictor.net(torch.from_numpy(image)[None, None]).argmax(1)
        row["naive_whole_image_s"] = time.perf_counter() - start
        row["naive_peak_rss_mib"] = rss_mib()
    return row


def one_stack(frames: int, side: int, encoder: str, tile: int, uncertainty: bool) -> dict:
    """Predict an N-frame compressed stack file read lazily, as the CLI does; time, peak RSS,
    and the sizes of the mask (and uncertainty) files written."""
    import numpy as np
    import tifffile

    from napari_nanowire.core.io import reading as io
    from napari_nanowire.core.model.modelfile import save_model
    from napari_nanowire.core.model.random_models import random_model
    from napari_nanowire.core.predict import predict_files

    io.LAZY_BYTES = 0  # read lazily, as a stack larger than memory is
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.tif"
        rng = np.random.default_rng(0)
        with tifffile.TiffWriter(path) as tif:
            for _ in range(frames):  # page by page: the benchmark never holds the stack
                page = rng.integers(0, 4096, (side, side), dtype=np.uint16)
                tif.write(page, compression="zlib", metadata=None)
        net = random_model(encoder, tile=tile)
        # random weights predict background everywhere (a file of zeros compresses to nothing);
        # a steeper output layer gives masks about half wire, in noise: a worst case for size
        net.tensors["segmenter.out.weight"] *= 200
        model = save_model(net, Path(tmp) / "model.nwmodel")
        base = rss_mib()
        start = time.perf_counter()
        out = Path(tmp) / "out"
        for _ in predict_files(model, [path], out, device="cpu", save_uncertainty=uncertainty):
            pass
        elapsed = time.perf_counter() - start
        peak = rss_mib()
        masks = tifffile.TiffFile(out / "masks" / "stack.tif").series[0].shape
        mask_mib = (out / "masks" / "stack.tif").stat().st_size / 2**20
        maps = out / "uncertainty" / "stack.tif"
        maps_mib = maps.stat().st_size / 2**20 if uncertainty else None
        wire = float(tifffile.imread(out / "masks" / "stack.tif", key=0).mean())
    assert masks == (frames, side, side), masks
    return {
        "frames": frames,
        "side": side,
        "encoder": encoder,
        "tile": tile,
        "total_s": elapsed,
        "s_per_image": elapsed / frames,
        "images_per_s": frames / elapsed,
        "base_rss_mib": base,
        "peak_rss_mib": peak,
        "growth_mib": peak - base,
        "mask_file_mib": mask_mib,
        "mask_raw_mib": frames * side**2 / 2**20,
        "mask_wire_fraction": wire,
        "uncertainty_file_mib": maps_mib,
    }


def run_child(args: argparse.Namespace, *extra: str) -> dict:
    """Run this script in a fresh process (its own peak RSS) and return its JSON row."""
    command = [sys.executable, __file__, *extra, "--encoder", args.encoder]
    command += ["--tile", str(args.tile), "--threads", str(args.threads)]
    command += ["--naive-up-to", str(args.naive_up_to), "--stack-side", str(args.stack_side)]
    command += ["--save-uncertainty"] if args.save_uncertainty else []
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--encoder", default="tiny")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--naive-up-to", type=int, default=2048, help="largest size for the peer")
    p.add_argument(
        "--stack-frames", type=int, nargs="*", default=[20, 100], help="stack lengths (none: skip)"
    )
    p.add_argument("--stack-side", type=int, default=1024, help="frame size of the stacks")
    p.add_argument(
        "--save-uncertainty", action="store_true", help="stacks: write uncertainty maps too"
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"JSON report (default {OUT})")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stack-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child or args.stack_child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child:
            row = one_size(args.child, args.encoder, args.tile, args.child <= args.naive_up_to)
        else:
            row = one_stack(
                args.stack_child, args.stack_side, args.encoder, args.tile, args.save_uncertainty
            )
        print(json.dumps(row))
        return
    load_start = os.getloadavg()
    rows = [run_child(args, "--child", str(side)) for side in args.sizes]
    stacks = [run_child(args, "--stack-child", str(n)) for n in args.stack_frames]
    print("| side | classify s | segment s | floor s | segment/floor | naive s | RSS MiB | B/px |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        naive = f"{r['naive_whole_image_s']:.2f}" if "naive_whole_image_s" in r else "-"
        ratio = r["segment_s"] / r["segment_floor_s"]
        print(
            f"| {r['side']} | {r['classify_s']:.2f} | {r['segment_s']:.2f} | "
            f"{r['segment_floor_s']:.2f} | {ratio:.1f} | {naive} | {r['peak_rss_mib']:.0f} | "
            f"{r['bytes_per_px']:.1f} |"
        )
    if stacks:
        print(
            "\n| frames | side | s/image | images/s | RSS before MiB | peak MiB | growth MiB "
            "| mask file MiB (raw) | uncertainty file MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
    for r in stacks:
        maps = r.get("uncertainty_file_mib")
        print(
            f"| {r['frames']} | {r['side']} | {r['s_per_image']:.2f} | {r['images_per_s']:.2f} | "
            f"{r['base_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | {r['growth_mib']:.0f} | "
            f"{r['mask_file_mib']:.2f} ({r['mask_raw_mib']:.1f}) | "
            f"{'-' if maps is None else f'{maps:.1f}'} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load": os.getloadavg(),
        "threads": args.threads,
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "stacks": stacks}, indent=1))


if __name__ == "__main__":
    main()
