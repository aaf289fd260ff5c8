"""Train dock widget: pretrain an encoder, then train the classifier and the segmenter.

Every button starts a core training generator in the background (see :mod:`.workers`); the
widget shows its progress, a live loss curve with k-NN or validation accuracy, and where the
model was saved. Stop ends a run after the current step and keeps its last checkpoint.
"Preview slice" (:mod:`.preview`) shows the segmenter's mask of one slice within seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.masks import check_shape
from napari_nanowire.core.progress import Progress

from .layers import Slices, check_image_layer, layer_picker, slice_count
from .masks import is_training_mask, masks_of
from .pixel_size_widget import ensure_pixel_size
from .plots import LossPlot
from .preview import SlicePreviewer
from .series import series_mask, series_of
from .state import slice_labels, state_for, unwrap_viewer
from .torch_guard import import_torchvision
from .workers import Job, JobPanel, launch

if TYPE_CHECKING:
    import napari

METHODS = (("SimCLR", "simclr"), ("Barlow Twins", "barlow"))
KINDS = ("encoder", "classifier", "segmenter")


def device_choices() -> list[tuple[str, str]]:
    """The device picker's entries: automatic first, then what torch detected."""
    from napari_nanowire.core.devices import describe_devices

    found = describe_devices()
    return [(f"auto ({found[0][1]})", "auto"), *((desc, name) for name, desc in found)]


def slices_job(
    train: Callable,
    base: Path,
    slices: Slices,
    picked: list[int],
    targets: list,
    out: Path,
    unlabelled: list[int] | None = None,
    **settings,
) -> Job:
    """A job running a core trainer (classifier or segmenter) on the slices ``picked``.

    The slices are read in the worker thread (the images of a series from their files), each
    with its own pixel size; ``targets`` are their labels or masks. The slices ``unlabelled``
    (segmenter only) are passed as unlabelled frames.
    """

    def job(stop):
        images = slices.read(picked)
        if unlabelled:
            settings["unlabelled"] = slices.read(unlabelled)
            settings["unlabelled_pixel_sizes_nm"] = slices.sizes(unlabelled)
        return (
            yield from train(
                base,
                images,
                targets,
                out,
                pixel_sizes_nm=slices.sizes(picked),
                stop=stop,
                **settings,
            )
        )

    return job


MIN_PRETRAIN_STEPS = 200
"""Below this many steps a pretraining is called too short. A round threshold, not a measured
optimum: SimCLR and Barlow Twins runs (the paper's included) take thousands of steps, and a
20-frame stack at the default settings gives 10-20 steps, which leave the encoder close to
its random start."""


def saved_classifier_text(event: Progress) -> str | None:
    """The confidence sentence for the last event of a classifier training that saved a
    model; None for any other event (the standard progress line)."""
    from napari_nanowire.core.heads.calibrate import describe_confidence
    from napari_nanowire.core.heads.classify import JOB

    if event.job != JOB or "stopped" in event.message:
        return None
    text = describe_confidence(event.metrics)
    return f"Saved. {text[:1].upper()}{text[1:]}."


def warn_few_steps(total_steps: int, epochs: int) -> bool:
    """Warn, in steps, when a pretraining is too short to train the encoder; True if so."""
    if total_steps >= MIN_PRETRAIN_STEPS:
        return False
    needed = -(-MIN_PRETRAIN_STEPS * epochs // total_steps)
    show_warning(
        f"Pretraining will run only {total_steps} steps ({epochs} epoch(s) over these "
        f"images): too few to train an encoder. Raise the epochs to about {needed} for "
        f"{MIN_PRETRAIN_STEPS}+ steps, or add more images."
    )
    return True


class TrainWidget(QWidget):
    """Settings, the three training buttons, Stop, progress and the live curve."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        import_torchvision()
        from napari_nanowire.core.heads.classify import ClassifierConfig
        from napari_nanowire.core.heads.segment import SegmenterConfig
        from napari_nanowire.core.model.encoders import ENCODERS
        from napari_nanowire.core.ssl.pretrain import PretrainConfig

        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self._warned_session = False
        defaults = PretrainConfig()
        self.image = layer_picker(self.viewer, Image, "images")
        self.masks = layer_picker(self.viewer, Labels, "masks")
        self.method = ComboBox(label="SSL method", choices=METHODS, value=defaults.method)
        self.encoder = ComboBox(label="encoder", choices=list(ENCODERS), value=defaults.encoder)
        self.encoder.tooltip = "\n".join(f"{n}: {s.description}" for n, s in ENCODERS.items())
        self.epochs = SpinBox(label="epochs", min=1, max=10_000, value=defaults.epochs)
        self.batch = SpinBox(label="batch size", min=2, max=4096, value=defaults.batch_size)
        self.size = SpinBox(
            label="image size (px)", min=32, max=1024, step=32, value=defaults.image_size
        )
        self.epochs.tooltip = (
            "One epoch = enough random crops to cover every image about once: with few images "
            "that is few training steps (the progress line shows the steps)."
        )
        self.size.tooltip = "Side of the crops the encoder is pretrained on (px)."
        self.descriptors = CheckBox(
            text="classifier with hand-made descriptors (not exportable)",
            value=ClassifierConfig.descriptors,
        )
        self.descriptors.tooltip = (
            "Add hand-made texture and shape descriptors and a scale spectrum (how big and how "
            "elongated the structures are) to the encoder's features. They raised accuracy on "
            "synthetic benchmark images and on a real particle sample (0.46 instead of 0.37 at "
            "4 labels a class), but "
            "such a classifier cannot be exported to TorchScript or BioImage.IO: untick to "
            "train one that can (napari-nanowire export)."
        )
        self.steps = SpinBox(
            label="segmenter steps", min=1, max=100_000, value=SegmenterConfig().steps
        )
        self.working = FloatSpinBox(
            label="working px (nm, 0 = auto)", min=0.0, max=1000.0, step=0.01, value=0.0
        )
        self.working.tooltip = (
            "Pixel size the segmenter trains and predicts at. 0: from the images (their long "
            "side brought to about 384 px); stored in the model file."
        )
        self.tile = SpinBox(
            label="segmenter tile (px, 0 = auto)", min=0, max=2048, step=32, value=0
        )
        self.tile.tooltip = (
            "Prediction tile of the segmenter, in working pixels (a multiple of 32); training "
            "uses crops of at most 128 px of it. 0: from the working-scale images."
        )
        self.semi = CheckBox(
            text="learn from unpainted slices too", value=SegmenterConfig().semi_supervised
        )
        self.semi.tooltip = (
            "Semi-supervised training (FixMatch) on the slices without strokes. Off by "
            "default: in the benchmarks it did not raise IoU and trained 1.5-2x longer "
            "(benchmarks/RESULTS.md)."
        )
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.form = Container(
            widgets=[
                self.image,
                self.masks,
                self.method,
                self.encoder,
                self.epochs,
                self.batch,
                self.size,
                self.descriptors,
                self.steps,
                self.working,
                self.tile,
                self.semi,
                self.device,
            ]
        )
        self.buttons = {
            "pretrain": QPushButton("Pretrain"),
            "classifier": QPushButton("Train classifier"),
            "segmenter": QPushButton("Train segmenter"),
        }
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip(
            "Continue the stopped pretraining from its last checkpoint (same settings; raise "
            "the epochs to train longer). Pretrain starts afresh and replaces it."
        )
        self.panel = JobPanel(
            self.state.runner, "Pretrain on the stack first, then train on your labels."
        )
        self.bar, self.stop_button, self.status = (
            self.panel.bar,
            self.panel.stop_button,
            self.panel.status,
        )
        self.plot = LossPlot(self.viewer.theme)
        self.models_label = QLabel()
        self.models_label.setWordWrap(True)
        self.previewer = SlicePreviewer(self)
        self.preview_button = self.previewer.button
        self._build_layout()
        self.image.changed.connect(self._pick_masks)
        self.buttons["pretrain"].clicked.connect(self.pretrain)
        self.continue_button.clicked.connect(self.continue_pretraining)
        self.buttons["classifier"].clicked.connect(self.train_classifier)
        self.buttons["segmenter"].clicked.connect(self.train_segmenter)
        self.state.models_changed.connect(self._show_models)
        self._show_models()

    def _build_layout(self) -> None:
        row = QHBoxLayout()
        for button in self.buttons.values():
            row.addWidget(button)
        row.insertWidget(1, self.continue_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(row)
        layout.addLayout(self.previewer.row)
        layout.addWidget(self.panel)
        layout.addWidget(self.plot)
        layout.addWidget(self.models_label)

    def reset_choices(self, *_) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self.form.reset_choices()
        self._pick_masks()

    def _pick_masks(self, *_) -> None:
        """Prefer the training masks painted for the chosen images over other Labels layers."""
        image = self.image.value
        painted = masks_of(self.viewer, image) if image is not None else None
        current = self.masks.value
        if painted is not None and (current is None or not is_training_mask(current)):
            self.masks.value = painted

    def pretrain(self) -> bool:
        """Pretrain an encoder on every slice of the chosen images (labels feed k-NN only)."""
        return self._launch("Pretraining", "encoder", self._pretrain_job)

    def continue_pretraining(self) -> bool:
        """Continue the stopped pretraining where its checkpoint ends."""
        if self.state.stopped_pretraining is None:
            return False
        return self._launch(
            "Pretraining", "encoder", lambda out: self._pretrain_job(out, resume=True)
        )

    def train_classifier(self) -> bool:
        """Train the image classifier on the labelled slices, from the pretrained encoder."""
        return self._launch("Classifier training", "classifier", self._classifier_job)

    def preview_slice(self) -> bool:
        """Train the segmenter briefly from its current state and show the slice in view."""
        return self.previewer.preview()

    def train_segmenter(self) -> bool:
        """Train the segmenter on the painted masks, from the pretrained encoder."""
        return self._launch("Segmenter training", "segmenter", self._segmenter_job)

    def _launch(self, title: str, kind: str, prepare: Callable[[Path], Job]) -> bool:
        """Check the inputs, then run the job in the background; False if it did not start."""
        if self.state.runner.busy(title):
            return False
        layer = self.image.value
        if layer is not None:
            ensure_pixel_size(self.viewer, self.state, layer, self)
        out = self._out(kind)
        started = launch(
            self.state.runner,
            title,
            lambda: prepare(out),
            self.panel,
            self,
            on_progress=self._on_progress,
            on_done=lambda _result: self._saved(title, kind, out),
            on_finish=self.plot.finish,
        )
        if started:
            self.plot.start(title)
        return started

    def _image_layer(self) -> Image:
        layer = self.image.value
        if layer is None:
            raise NanowireError("No image layer: open your TEM images (or File > Open Sample).")
        check_image_layer(layer)
        return layer

    def _encoder_file(self) -> Path:
        path = self.state.models.get("encoder")
        if path is None or not path.is_file():
            raise NanowireError("No pretrained encoder yet: press Pretrain first.")
        return path

    def _pretrain_job(self, out: Path, resume: bool = False) -> Job:
        from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

        layer = self._image_layer()
        slices, labels = Slices(layer), slice_labels(layer)
        config = PretrainConfig(
            method=self.method.value,
            encoder=self.encoder.value,
            epochs=self.epochs.value,
            batch_size=self.batch.value,
            image_size=self.size.value,
            device=self.device.value,
        )
        config.check()

        def job(stop):
            return (
                yield from pretrain(
                    slices.frames,  # read one at a time: a lazy stack stays on disk
                    config,
                    out,
                    pixel_sizes_nm=slices.sizes(),
                    labels=labels,
                    stop=stop,
                    resume=resume,
                )
            )

        return job

    def _classifier_job(self, out: Path) -> Job:
        from napari_nanowire.core.heads.classify import (
            ClassifierConfig,
            check_labels,
            train_classifier,
        )

        layer = self._image_layer()
        base = self._encoder_file()
        labels = slice_labels(layer)
        picked = [i for i, label in enumerate(labels) if label]
        if not picked:
            raise NanowireError(
                "No labelled slices: in the Label widget, give at least one slice of each class "
                "a class (keys 1-9)."
            )
        check_labels([labels[i] for i in picked])
        config = ClassifierConfig(device=self.device.value, descriptors=self.descriptors.value)
        targets = [labels[i] for i in picked]
        return slices_job(
            train_classifier, base, Slices(layer), picked, targets, out, config=config
        )

    def segmenter_config(self):
        """The segmenter settings of the form (a ``SegmenterConfig``)."""
        from napari_nanowire.core.heads.segment import SegmenterConfig

        return SegmenterConfig(
            steps=self.steps.value,
            tile=self.tile.value // 32 * 32 or None,
            device=self.device.value,
            working_pixel_size_nm=self.working.value or None,
            semi_supervised=self.semi.value,
        )

    def _segmenter_job(self, out: Path) -> Job:
        from napari_nanowire.core.heads.segment import train_segmenter

        layer = self._image_layer()
        base = self._encoder_file()
        masks, picked, names = self.stroke_masks(layer)
        config = self.segmenter_config()

        targets = [masks[i] for i in picked]
        others = [i for i in range(len(masks)) if i not in picked]
        others = others if config.semi_supervised else []
        return slices_job(
            train_segmenter,
            base,
            Slices(layer),
            picked,
            targets,
            out,
            others,
            class_names=names,
            config=config,
        )

    def stroke_masks(self, layer: Image) -> tuple[np.ndarray | list, list[int], list[str]]:
        """The painted masks of ``layer``'s slices as (N, Y, X) uint8 (for a series, a list
        with None where nothing was painted), the indices of the slices with strokes and the
        foreground class names; refuses missing or empty masks."""
        masks_layer = self.masks.value or masks_of(self.viewer, layer)
        if masks_layer is None:
            raise NanowireError(
                "No mask layer: in the Label widget press 'Add mask layer', then paint a few "
                "strokes of background (label 1) and of wires (label 2)."
            )
        if series_of(layer) is not None:
            masks = [series_mask(layer, masks_layer, i) for i in range(slice_count(layer))]
            picked = [i for i, mask in enumerate(masks) if mask is not None and mask.any()]
        else:
            check_shape(
                masks_layer.data.shape,
                layer.data.shape,
                f"Mask layer '{masks_layer.name}'",
                f"image layer '{layer.name}'",
                "pick the masks made for these images",
            )
            masks = np.array(masks_layer.data, dtype=np.uint8).reshape(-1, *layer.data.shape[-2:])
            picked = [i for i in range(len(masks)) if masks[i].any()]
        if not picked:
            raise NanowireError(
                f"Mask layer '{masks_layer.name}' is empty: paint background (1) and wires (2)."
            )
        names = list(masks_layer.metadata.get("mask_classes", self.state.mask_classes))[1:]
        return masks, picked, names

    def _out(self, kind: str) -> Path:
        """Where the ``kind`` model goes: the project, else a session folder (with a notice)."""
        if self.state.project is None and not self._warned_session:
            self._warned_session = True
            show_warning(
                f"No project open: models are saved in {self.state.session_folder()} for this "
                "session only (removed when napari closes). Make a project in the Label widget "
                "to keep them."
            )
        if self.state.project is not None:
            return self.state.model_out(kind, Path())
        return self.state.model_out(kind, self.state.session_folder())

    def _on_progress(self, event: Progress) -> None:
        self.panel.show_progress(event, saved_classifier_text(event) if event.done else None)
        self.plot.add(event)
        if event.job == "pretrain" and event.step == 1 and event.total_steps:
            warn_few_steps(event.total_steps, self.epochs.value)
        if event.message.startswith("warning"):
            show_warning(event.message)

    def _saved(self, title: str, kind: str, out: Path) -> None:
        """Record the model file a finished (or stopped) run wrote."""
        self.plot.finish()
        if not out.is_file():
            self.status.setText(f"{title} stopped before anything was saved.")
            return
        stopped = self.state.runner.stop_requested
        if kind == "encoder":
            self.state.stopped_pretraining = out if stopped else None
        self.state.set_model(kind, out)
        verb = "stopped; the last checkpoint is" if stopped else "finished; the model is"
        show_info(f"{title} {verb} in {out}.")

    def _show_models(self) -> None:
        stopped = self.state.stopped_pretraining
        self.continue_button.setEnabled(stopped is not None and stopped.is_file())
        lines = []
        for kind in KINDS:
            path = self.state.models.get(kind)
            lines.append(f"{kind}: {path.name if path else '—'}")
        self.models_label.setText("Models   " + "   ·   ".join(lines))
        if self.state.models:
            self.models_label.setToolTip("\n".join(str(p) for p in self.state.models.values()))
