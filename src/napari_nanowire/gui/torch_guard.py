"""Importing torchvision inside a running napari without crashing it on Linux.

torchvision imports ``torch._dynamo``, which imports triton when it is installed (CUDA builds
of torch bring it along), and triton loads its own copy of LLVM. When napari's canvas is already
open on Mesa OpenGL (software rendering, Intel and AMD graphics on Linux), Mesa's LLVM is
already in the process and loading triton's kills napari with a segmentation fault. The project
never compiles kernels, so in that situation triton is hidden from torch while torchvision is
imported; torch then records that triton is unavailable and never loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

MAPS = Path("/proc/self/maps")


def llvm_loaded() -> bool:
    """True when an LLVM library (e.g. Mesa's) is mapped into this process (Linux only)."""
    try:
        return "libLLVM" in MAPS.read_text()
    except OSError:
        return False


def import_torchvision() -> None:
    """Import torch and torchvision, keeping triton out when it would clash with Mesa."""
    if "torchvision" in sys.modules:
        return
    hide = "triton" not in sys.modules and llvm_loaded()
    if hide:
        sys.modules["triton"] = None  # makes "import triton" raise ImportError
    try:
        import torchvision  # noqa: F401
    finally:
        if hide:
            del sys.modules["triton"]
