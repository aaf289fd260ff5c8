"""Regenerate the README's screenshots: napari with the plugin, each widget in use.

Run with `make screenshots` (or `.venv/bin/python scripts/screenshots.py`); no real screen is
needed: an Xvfb display is started for the run. It drives the whole workflow through the guided
workflow dock on the built-in synthetic sample as a user would (label, paint a few strokes,
pretrain, preview a slice, train, predict, segment, measure) and saves one picture per step into
docs/screenshots/. Takes a few minutes
on a laptop CPU. `scripts/screenshots.py series` makes only the picture of a series (a folder
of images of different sizes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pyvirtualdisplay import Display

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
LABELLED = (0, 1, 3, 4, 6, 7, 9, 10)
"""Slices given their class: two of each of the four classes, one per class left over."""
PAINTED = (0, 3, 6, 9)
"""Slices that get a few mask strokes."""


def settle(seconds: float = 1.0) -> None:
    """Let Qt lay out and paint for a while."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def wait_for(condition, timeout: float = 900.0) -> None:
    """Process events until ``condition()`` holds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the workflow step did not finish in time")
        settle(0.1)


def widget(viewer, name: str):
    """Step ``name`` of the guided workflow dock, brought to the front; its widget."""
    guided = viewer.window.dock_widgets["Nanowire workflow (napari-nanowire)"]
    return guided.show_step(name)


def shoot(viewer, name: str) -> None:
    """Save the whole window (canvas and docks) as docs/screenshots/<name>.

    Notification toasts are closed first: they would cover the canvas's bottom corner.
    """
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    settle(1.0)
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print(f"wrote {OUT / name}")


def strokes(mask: np.ndarray) -> np.ndarray:
    """A few strokes a user would paint: along some wires (2) and across background (1)."""
    from skimage.morphology import binary_dilation, skeletonize

    out = np.zeros(mask.shape, np.uint8)
    spine = skeletonize(mask > 0)
    rows = np.arange(mask.shape[0])[:, None]
    spine &= (rows // 24) % 3 == 0  # only parts of the wires
    out[binary_dilation(spine)] = 2
    for y in (mask.shape[0] // 5, mask.shape[0] * 3 // 5):
        band = np.zeros(mask.shape, bool)
        band[y : y + 3, 8:-8] = True
        out[band & ~binary_dilation(mask > 0, np.ones((7, 7), bool))] = 1
    return out


def label_step(viewer, project: Path) -> None:
    """A project; two slices per class labelled as the keys do; strokes painted on four."""
    label = widget(viewer, "Label")
    label.project_box.new_project(project)
    image = viewer.layers["synthetic TEM"]
    truth = image.metadata["true_class_labels"]
    for index in LABELLED:
        viewer.dims.set_current_step(0, index)
        label.assign(label.state.classes.index(truth[index]))
    masks = label.add_masks()
    true_masks = viewer.layers["true wire mask"].data
    for index in PAINTED:
        masks.data[index] = strokes(true_masks[index])
    masks.refresh()
    viewer.layers.selection.active = image
    viewer.dims.set_current_step(0, 3)
    shoot(viewer, "label.png")


def train_step(viewer) -> None:
    """Pretrain (screenshot mid-run, live curve), preview a slice, then train classifier and
    segmenter."""
    train = widget(viewer, "Train")
    train.epochs.value = 30
    train.batch.value = 32
    train.size.value = 96
    train.steps.value = 150
    train.pretrain()
    runner = train.state.runner
    wait_for(lambda: train.bar.value() >= 60 or not runner.running)
    shoot(viewer, "train.png")
    wait_for(lambda: not runner.running)
    if "encoder" not in train.state.models:
        raise RuntimeError("pretraining failed: see the message above")
    preview_step(viewer)
    for start, kind in (
        (train.train_classifier, "classifier"),
        (train.train_segmenter, "segmenter"),
    ):
        start()
        wait_for(lambda: not runner.running)
        if kind not in train.state.models:
            raise RuntimeError(f"training the {kind} failed: see the message above")


PREVIEWED = 3
"""The painted slice the preview shows (the one in label.png)."""


def preview_step(viewer, presses: int = 3) -> None:
    """Press "Preview slice" a few times on a painted slice, as a user checks the strokes."""
    train = widget(viewer, "Train")
    viewer.dims.set_current_step(0, PREVIEWED)
    masks = viewer.layers["synthetic TEM masks"]
    viewer.layers.selection.active = masks
    for _ in range(presses):
        if not train.preview_slice():
            raise RuntimeError("the preview did not start: see the message above")
        wait_for(lambda: not train.state.runner.running)
    if "synthetic TEM preview" not in viewer.layers:
        raise RuntimeError("the preview failed: see the message above")
    shoot(viewer, "preview.png")


def predict_step(viewer) -> None:
    """Classify every slice and show the least certain ones to label next."""
    predict = widget(viewer, "Predict")
    predict.classify()
    wait_for(lambda: not predict.state.runner.running)
    viewer.layers.selection.active = viewer.layers["synthetic TEM"]
    viewer.dims.set_current_step(0, 2)
    shoot(viewer, "predict.png")
    predict.scope.value = "all"
    predict.segment()
    wait_for(lambda: not predict.state.runner.running)


def measure_step(viewer) -> None:
    """Measure every slice of the segmentation: table and histograms in nm."""
    measure = widget(viewer, "Measure")
    measure.reset_choices()
    measure.mask.value = viewer.layers["synthetic TEM segmentation"]
    measure.scope.value = "all"
    measure.auto_min_area.value = False
    measure.min_area.value = 50  # leave out specks a few pixels large
    measure.measure()
    wait_for(lambda: not measure.state.runner.running)
    viewer.dims.set_current_step(0, 8)
    shoot(viewer, "measure.png")


def series_folder(folder: Path) -> Path:
    """Four synthetic micrographs of four sizes and pixel sizes, as a real folder of exports."""
    from napari_nanowire.core.data.synthetic import generate_dataset
    from napari_nanowire.core.io import write_tiff

    folder.mkdir(parents=True, exist_ok=True)
    shapes = {512: (512, 512), 768: (640, 768), 384: (384, 384), 1024: (768, 1024)}
    for i, (size, px) in enumerate(((512, 0.5), (768, 1.0), (384, 0.25), (1024, 2.0))):
        item = generate_dataset(1, size=size, pixel_size_nm=px, seed=i)[i]
        y, x = shapes[size]
        write_tiff(folder / f"export_{i + 1:02d}.tif", item.image[:y, :x], px)
    return folder


def series_picture() -> None:
    """A folder of mixed sizes opened as a series: the Series control in the Label step."""
    from napari_nanowire.cli.gui import open_viewer

    folder = series_folder(Path(tempfile.mkdtemp(prefix="nanowire-series-")) / "exports")
    viewer = open_viewer([str(folder)])
    viewer.window._qt_window.resize(1500, 950)
    settle(2.0)
    label = widget(viewer, "Label")
    label.assign(2)  # export_01: bundle
    label.series_control.next.click()
    label.assign(1)  # export_02: dispersed
    label.series_control.next.click()
    viewer.reset_view()
    shoot(viewer, "series.png")
    viewer.close()


def main(steps: list[str]) -> None:
    """Open the viewer as `napari-nanowire gui` does and walk through the workflow; with
    ``series`` only, just the series picture."""
    OUT.mkdir(parents=True, exist_ok=True)
    with Display(size=(1600, 1000), color_depth=24):
        if steps == ["series"]:
            from napari_nanowire.gui.torch_guard import import_torchvision

            import_torchvision()
            series_picture()
            return
        from napari_nanowire.gui.torch_guard import import_torchvision

        import_torchvision()
        from napari_nanowire.cli.gui import open_viewer

        viewer = open_viewer()
        viewer.window._qt_window.resize(1500, 950)
        settle(2.0)
        viewer.reset_view()
        viewer.dims.set_current_step(0, 9)
        shoot(viewer, "napari_sample.png")
        label_step(viewer, Path(tempfile.mkdtemp(prefix="nanowire-demo-")) / "project")
        train_step(viewer)
        predict_step(viewer)
        measure_step(viewer)
        viewer.close()
        series_picture()


if __name__ == "__main__":
    main(sys.argv[1:])
