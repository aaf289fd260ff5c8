"""``napari-nanowire gui``: open napari with the plugin docked and sample data loaded."""

from __future__ import annotations

import argparse

PLUGIN = "napari-nanowire"
DOCK_WIDGETS = ("Nanowire workflow",)
"""Docked as tabs in this order; the first is shown. The guided workflow dock holds the pixel
size and the Label, Train, Predict and Measure steps."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``gui`` sub-command."""
    p = sub.add_parser("gui", help="open napari with the plugin and sample data")
    p.add_argument("images", nargs="*", help="images to open instead of the sample data")
    p.set_defaults(func=run)


def open_viewer(images: list[str] | None = None):
    """A napari viewer with the plugin's widgets docked and data loaded (sample if none)."""
    import napari

    viewer = napari.Viewer(title="napari-nanowire")
    if images:
        viewer.open(images, plugin=PLUGIN, stack=len(images) > 1)
    else:
        viewer.open_sample(PLUGIN, "synthetic")
    from qtpy.QtCore import QTimer

    docks = [
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=i > 0)[0]
        for i, name in enumerate(DOCK_WIDGETS)
    ]
    QTimer.singleShot(0, docks[0].raise_)  # once the tabs exist: the last added is in front
    return viewer


def run(args: argparse.Namespace) -> int:
    """Open the viewer and run napari's event loop until the window closes."""
    from napari_nanowire.core.errors import import_extra

    napari = import_extra("napari", "napari", "The napari-nanowire gui command")
    open_viewer(args.images)
    napari.run()
    return 0
