"""Entry point of the ``napari-nanowire`` command.

Each sub-command lives in its own module of this package with ``register(subparsers)``, which
adds its parser and sets ``func`` to a ``run(args) -> int``. Modules import the heavy core
(torch, napari) inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_nanowire import __version__
from napari_nanowire.core.errors import NanowireError

COMMANDS: tuple[str, ...] = (
    "demo",
    "export",
    "gui",
    "measure",
    "predict",
    "pretrain",
    "suggest",
    "synth",
    "train-classifier",
    "train-segmenter",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="napari-nanowire",
        description="Few-label analysis of TEM images of nanowires.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"napari_nanowire.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; problems with the user's input print one clear line, exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NanowireError as err:
        print(f"napari-nanowire {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-nanowire {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
