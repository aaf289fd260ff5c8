"""Fixtures for the widget tests: a tiny synthetic stack in a viewer, widgets docked from npe2."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire.core.synthetic import generate_dataset
from napari_nanowire.gui.pixel_size_widget import set_layer_pixel_size_nm

PLUGIN = "napari-nanowire"


@pytest.fixture(scope="session")
def tiny_items():
    """Two 64 px synthetic images per class (8 in all), made once per session."""
    return generate_dataset(2, size=64, pixel_size_nm=1.0, seed=0)


@pytest.fixture
def viewer(make_napari_viewer, tiny_items):
    """A viewer holding the tiny stack as an image layer with names and pixel size."""
    viewer = make_napari_viewer()
    stack = np.stack([item.image for item in tiny_items])
    layer = viewer.add_image(stack, name="tiny", metadata={"names": [i.name for i in tiny_items]})
    set_layer_pixel_size_nm(layer, 1.0)
    return viewer


@pytest.fixture
def dock(viewer, qtbot):
    """Dock a widget through the plugin manifest (as the Plugins menu does) and show it."""

    def add(name: str):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        viewer.window._qt_window.show()
        qtbot.waitUntil(widget.isVisible)
        return widget

    return add
