"""Regenerate the README's screenshots of napari with the plugin, on a virtual X display.

Run with `make screenshots` (or `.venv/bin/python scripts/screenshots.py`); no real screen is
needed: an Xvfb display is started for the run.
"""

from __future__ import annotations

import time
from pathlib import Path

from pyvirtualdisplay import Display

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def settle(app, seconds: float = 1.0) -> None:
    """Let Qt lay out and paint for a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    """Open the viewer as `napari-nanowire gui` does and save a screenshot of the window."""
    OUT.mkdir(parents=True, exist_ok=True)
    with Display(size=(1600, 1000), color_depth=24):
        from qtpy.QtWidgets import QApplication

        from napari_nanowire.cli.gui import open_viewer

        viewer = open_viewer()
        viewer.window._qt_window.resize(1500, 950)
        viewer.dims.set_current_step(0, 9)
        app = QApplication.instance()
        settle(app, 2.0)
        viewer.screenshot(str(OUT / "napari_sample.png"), canvas_only=False)
        print(f"wrote {OUT / 'napari_sample.png'}")
        viewer.close()


if __name__ == "__main__":
    main()
