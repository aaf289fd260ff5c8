"""``napari-nanowire demo``: run the whole workflow headless on synthetic data."""

from __future__ import annotations

import argparse

from napari_nanowire.cli.common import SEED, STEPS, int_range


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="run the workflow headless on built-in synthetic data")
    p.add_argument("--out", default="demo_output", help="folder for data, models and report")
    p.add_argument(
        "--n-per-class", type=int_range(1, 100_000), default=12, help="synthetic images per class"
    )
    p.add_argument("--size", type=int_range(32, 8192), default=256, help="image size in px")
    p.add_argument("--epochs", type=STEPS, default=8, help="SSL pretraining epochs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--quick", action="store_true", help="a few training steps only: checks the plumbing"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where the report is."""
    from dataclasses import replace

    from napari_nanowire.core.demo import DemoConfig, run_demo

    config = DemoConfig(
        n_per_class=args.n_per_class,
        size=args.size,
        pretrain_epochs=args.epochs,
        device=args.device,
        seed=args.seed,
    )
    if args.quick:
        config = replace(
            config, segmenter_steps=4, classifier_epochs=20, pretrain_steps_per_epoch=2
        )
    run_demo(args.out, config)
    return 0
