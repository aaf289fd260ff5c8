"""torchvision imported after napari's canvas exists must not crash napari (Mesa LLVM clash)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import napari
from napari_nanowire.gui.torch_guard import import_torchvision, llvm_loaded
viewer = napari.Viewer(show=False)
print("llvm", llvm_loaded(), flush=True)
import_torchvision()
from napari_nanowire.core.model.encoders import build_encoder
build_encoder("tiny")
viewer.close()
print("survived", flush=True)
"""


@pytest.mark.slow  # 12 s under load
def test_torchvision_after_the_canvas_does_not_crash_napari():
    # Without the guard this process dies with SIGSEGV when Mesa's LLVM is loaded (as here).
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout
