"""Pretraining throughput: our pipeline against the usual one, and against bare training loops.

Phases, each in its own subprocess so that peak memory (ru_maxrss) belongs to that phase alone:

- ``matmul``: float32 matrix-product peak of this machine (GFLOP/s), the ceiling for the rest;
- ``bare``: the same network and loss on random tensors, default memory format;
- ``bare_cl``: the same in channels_last (the fastest bare float32 loop found on CPUs);
- ``reference``: the usual way: torchvision per-image transforms in a DataLoader (workers =
  cores) and lightly's NTXentLoss / BarlowTwinsLoss, same encoder, projector, optimizer,
  crop size and batch;
- ``ours``: ``napari_nanowire.core.ssl.pretrain.pretrain`` on the same images.

Throughput is in view pairs per second (one pair = one image sample, 2 network inputs);
GFLOP/s counts the forward and backward of the network (FlopCounterMode). Phases run
``--repeats`` times in alternating order; the median run counts (the lower of the two middle
ones), with the range over runs beside it, because load on shared machines comes and goes.

Usage: .venv/bin/python benchmarks/bench_pretrain.py [--image-size 112] [--steps 6] ...
Writes benchmarks/out/bench_pretrain.json.
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

PHASES = ("matmul", "bare", "bare_cl", "reference", "ours")
OUT = Path(__file__).parent / "out" / "bench_pretrain.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("simclr", "barlow"), default="simclr")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--source-size",
        type=int,
        default=512,
        help="side of the 16 synthetic micrographs crops are taken from (camera frames: 2048-4096)",
    )
    p.add_argument("--steps", type=int, default=6, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=1, help="runs of every phase (median counts)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ref-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, help="torch threads per phase (default: torch's)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--out", type=Path, default=OUT, help="JSON report (default: %(default)s)")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # child process
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # child process
    return p.parse_args(argv)


# --- child side: one phase ---------------------------------------------------------------


def _images(size: int, n_per_class: int = 4):
    """16 synthetic ``size`` px micrographs (1 nm/px): the data of both pipelines."""
    from napari_nanowire.core.data.synthetic import generate_dataset

    return [item.image for item in generate_dataset(n_per_class, size=size, seed=0)]


def _network(args: argparse.Namespace, channels_last: bool, fused: bool = True):
    """Encoder + projector exactly as pretrain() builds them, with an AdamW optimizer.

    ``fused`` AdamW is what pretrain() and the fastest bare loop use; the reference uses the
    default (per-tensor) AdamW, as most training scripts do.
    """
    import torch

    from napari_nanowire.core.model.encoders import build_encoder
    from napari_nanowire.core.ssl.losses import build_projector, projector_dims
    from napari_nanowire.core.ssl.pretrain import SSLNet

    torch.manual_seed(0)
    encoder = build_encoder(args.encoder)
    dims = projector_dims(args.method, encoder.out_dim)
    net = SSLNet(encoder, build_projector(args.method, encoder.out_dim, *dims)).to(args.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3, fused=fused or None)


def _flops_per_step(args: argparse.Namespace) -> float:
    """Forward + backward FLOPs of one step of 2 * batch views."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net, _ = _network(args, channels_last=False)
    x = torch.randn(2 * args.batch_size, 1, args.image_size, args.image_size, device=args.device)
    with FlopCounterMode(display=False) as counter:
        net(x).square().mean().backward()
    return float(counter.get_total_flops())


def _timed(step, args: argparse.Namespace) -> float:
    """Seconds for ``args.steps`` calls of ``step`` after ``args.warmup`` untimed ones."""
    import torch

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return time.perf_counter() - start


def phase_matmul(args: argparse.Namespace) -> dict:
    import torch

    n = 2048
    a, b = (torch.randn(n, n, device=args.device) for _ in range(2))
    args = argparse.Namespace(**{**vars(args), "warmup": 2, "steps": 10})
    seconds = _timed(lambda: a @ b, args)
    return {"gflop_s": 2 * n**3 * 10 / seconds / 1e9}


def phase_bare(args: argparse.Namespace, channels_last: bool = False) -> dict:
    import torch

    from napari_nanowire.core.ssl.losses import ssl_loss

    net, opt = _network(args, channels_last)
    n, s = args.batch_size, args.image_size
    x = torch.randn(2 * n, 1, s, s, device=args.device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        z = net(x)
        loss = ssl_loss(args.method, z[:n], z[n:], temperature=0.2, offdiag_weight=5e-3)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"seconds": _timed(step, args)}


class _PairDataset:
    """Two independently transformed views of an image, per item (the usual SSL dataset)."""

    def __init__(self, images: list, transform, length: int) -> None:
        self.images, self.transform, self.length = images, transform, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        image = self.images[i % len(self.images)]
        return self.transform(image), self.transform(image)


def phase_reference(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    import torchvision.transforms.v2 as v2
    from lightly.loss import BarlowTwinsLoss, NTXentLoss
    from torch.utils.data import DataLoader

    images = []
    for image in _images(args.source_size):
        lo, hi = np.percentile(image, [0.5, 99.5])
        images.append(torch.from_numpy(np.clip((image - lo) / (hi - lo), 0, 1))[None].float())
    transform = v2.Compose(
        [
            v2.RandomResizedCrop(args.image_size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.GaussianBlur(13, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=0.3, contrast=0.3)], p=0.8),
            v2.RandomApply([v2.GaussianNoise(sigma=0.05, clip=False)], p=0.5),
            v2.Normalize(mean=[0.5], std=[0.25]),
        ]
    )
    n_items = args.batch_size * (args.warmup + args.steps + 1)
    loader = DataLoader(
        _PairDataset(images, transform, n_items),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.ref_workers,
    )
    loss_fn = NTXentLoss(temperature=0.2) if args.method == "simclr" else BarlowTwinsLoss(5e-3)
    net, opt = _network(args, channels_last=False, fused=False)
    batches = iter(loader)

    def step() -> None:
        x1, x2 = next(batches)
        z = net(torch.cat([x1, x2]).to(args.device))
        loss = loss_fn(z[: len(x1)], z[len(x1) :])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = _timed(step, args)
    batches = None  # the workers exit, so their peak memory is counted below
    return {"seconds": seconds}


def phase_ours(args: argparse.Namespace) -> dict:
    from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(
        method=args.method,
        encoder=args.encoder,
        epochs=1,
        batch_size=args.batch_size,
        image_size=args.image_size,
        steps_per_epoch=args.warmup + args.steps + 1,  # stopped before the epoch-end save
        device=args.device,
    )
    with tempfile.TemporaryDirectory() as tmp:
        events = pretrain(_images(args.source_size), config, Path(tmp) / "bench.nwmodel")
        start = time.perf_counter()
        for event in events:
            if event.step == args.warmup:
                start = time.perf_counter()
            if event.step == args.warmup + args.steps:
                seconds = time.perf_counter() - start
                break
        events.close()
    return {"seconds": seconds}


def run_phase(args: argparse.Namespace) -> dict:
    """Run one phase in this process and add its throughput and peak memory."""
    import torch

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = {
        "matmul": phase_matmul,
        "bare": phase_bare,
        "bare_cl": lambda a: phase_bare(a, channels_last=True),
        "reference": phase_reference,
        "ours": phase_ours,
    }[args.phase]
    result = runner(args)
    if "seconds" in result:
        result["pairs_s"] = args.batch_size * args.steps / result["seconds"]
    result["rss_after_import_mb"] = rss_start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["workers_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["threads"] = torch.get_num_threads()
    return result


# --- parent side: all phases, table, JSON --------------------------------------------------


def _child(argv: list[str], phase: str, flops_per_step: float, steps: int) -> dict:
    """Run ``phase`` in a fresh interpreter and return its result, with GFLOP/s achieved."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, __file__, *argv, "--phase", phase, "--result", str(result_file)]
        subprocess.run(command, check=True)
        result = json.loads(result_file.read_text())
    if "seconds" in result:
        result["gflop_s"] = flops_per_step * steps / result["seconds"] / 1e9
    return result


def _machine() -> dict:
    import torch

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_before": os.getloadavg(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor()


def _speed(run: dict) -> float:
    return run.get("pairs_s", run.get("gflop_s", 0.0))


def median_run(runs: list[dict]) -> dict:
    """The run of median speed (the slower middle one for an even count), with the range."""
    ordered = sorted(runs, key=_speed)
    speeds = [_speed(r) for r in ordered]
    return {**ordered[(len(ordered) - 1) // 2], "range": [speeds[0], speeds[-1]]}


def thread_counts(typical: dict) -> str:
    """The torch thread count(s) the phases ran with."""
    return "/".join(sorted({str(r["threads"]) for r in typical.values()}))


def _table(typical: dict, args: argparse.Namespace) -> str:
    peak = typical.get("matmul", {}).get("gflop_s")
    bare = [typical[p]["pairs_s"] for p in ("bare", "bare_cl") if p in typical]
    fastest_bare = max(bare, default=0)
    reference = typical.get("reference", {}).get("pairs_s")
    rows = [
        f"{args.encoder} {args.method}, {args.image_size} px crops of {args.source_size} px "
        f"images, batch {args.batch_size} pairs, {args.steps} timed steps, device "
        f"{args.device}, {thread_counts(typical)} torch threads, median of {args.repeats} runs",
        f"{'phase':<10} {'pairs/s':>8} {'range':>13} {'GFLOP/s':>8} {'% peak':>7} {'vs ref':>7} "
        f"{'vs bare':>8} {'peak RSS MB':>12} {'workers MB':>11}",
    ]
    for phase in [p for p in PHASES if p in typical and p != "matmul"]:
        r = typical[phase]
        low, high = r["range"]
        rows.append(
            f"{phase:<10} {r['pairs_s']:>8.2f} {f'{low:.2f}-{high:.2f}':>13} {r['gflop_s']:>8.1f} "
            f"{100 * r['gflop_s'] / peak if peak else float('nan'):>6.1f}% "
            f"{r['pairs_s'] / reference if reference else float('nan'):>7.2f} "
            f"{r['pairs_s'] / fastest_bare if fastest_bare else float('nan'):>8.2f} "
            f"{r['peak_rss_mb']:>12.0f} {r['workers_peak_rss_mb']:>11.0f}"
        )
    if peak:
        rows.append(f"float32 matmul peak (fastest run): {peak:.1f} GFLOP/s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.phase:
        args.result.write_text(json.dumps(run_phase(args)))
        return 0
    machine = _machine()
    flops = _flops_per_step(args)
    runs: dict[str, list[dict]] = {p: [] for p in args.phases}
    for repeat in range(args.repeats):
        order = args.phases if repeat % 2 == 0 else args.phases[::-1]
        for phase in order:
            print(f"run {repeat + 1}/{args.repeats}: {phase} ...", flush=True)
            runs[phase].append(_child(argv, phase, flops, args.steps))
    typical = {p: median_run(rs) for p, rs in runs.items()}
    if "matmul" in runs:  # a ceiling: its fastest run
        typical["matmul"] = max(runs["matmul"], key=_speed)
    table = _table(typical, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("phase", "result", "out")}
    report = {"machine": machine, "settings": settings, "flops_per_step": flops}
    report.update(typical=typical, runs=runs)
    report["machine"]["load_avg_after"] = os.getloadavg()
    report["table"] = table
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
