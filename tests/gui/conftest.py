"""Fixtures for the widget tests: a tiny synthetic stack in a viewer, widgets docked from npe2."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.gui.pixel_size import set_layer_pixel_size_nm
from napari_nanowire.gui.torch_guard import import_torchvision

PLUGIN = "napari-nanowire"

# Before any viewer exists, so tests may import the core in any order (see torch_guard).
import_torchvision()


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


def label_all(viewer, tiny_items) -> None:
    """Give every slice of the tiny stack its true class (two per class)."""
    from napari_nanowire.gui.state import state_for

    layer = viewer.layers["tiny"]
    state_for(viewer).set_labels(layer, [item.label for item in tiny_items])


def wait_for_job(qtbot, widget, timeout: int = 60_000) -> None:
    """Wait until the widget's background job ended (napari's leak check needs this)."""
    qtbot.waitUntil(lambda: not widget.state.runner.running, timeout=timeout)


def small_settings(widget) -> None:
    """The smallest training settings: 1 epoch, batch 8, 64 px, 3 segmenter steps."""
    widget.epochs.value = 1
    widget.batch.value = 8
    widget.size.value = 64
    widget.steps.value = 3


@pytest.fixture(scope="session")
def tiny_encoder(tiny_items, tmp_path_factory):
    """A tiny encoder pretrained for one epoch on the tiny stack, made once per session."""
    from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("models") / "encoder.nwmodel"
    config = PretrainConfig(encoder="tiny", epochs=1, batch_size=8, image_size=64)
    for _ in pretrain([item.image for item in tiny_items], config, out):
        pass
    return out
