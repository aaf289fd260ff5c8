"""The project row of the Label widget: start a project from the open stack, or reopen one.

Once a project is open, labels are saved on every change and masks shortly after each stroke
(see :mod:`.state`), and trained models go into its ``models`` folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_nanowire.core.data.project import Project, ProjectError
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import ReadError

from .layers import image_stack, slice_names
from .masks import add_mask_layer, masks_of
from .notify import report_error
from .pixel_size import layer_pixel_size_nm, set_layer_pixel_size_nm
from .reader import read_folder
from .series import Series
from .series import layer_kwargs as series_kwargs
from .state import WorkflowState, slice_labels

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


def source_file(layer: Image) -> str | None:
    """The file or folder ``layer`` was read from, if it still exists."""
    path = layer.source.path
    return str(path) if path and Path(path).exists() else None


class ProjectBox(QGroupBox):
    """Shows where work is saved; New project… and Open project… buttons."""

    def __init__(
        self,
        viewer: napari.Viewer,
        state: WorkflowState,
        current_image: Callable[[], Image | None],
    ) -> None:
        super().__init__("Project")
        self.viewer = viewer
        self.state = state
        self.current_image = current_image
        self.info = QLabel()
        self.info.setWordWrap(True)
        new_button = QPushButton("New project…")
        open_button = QPushButton("Open project…")
        new_button.clicked.connect(self._ask_new)
        open_button.clicked.connect(self._ask_open)
        row = QHBoxLayout()
        row.addWidget(new_button)
        row.addWidget(open_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addLayout(row)
        state.project_changed.connect(self._show)
        self._show()

    def _show(self) -> None:
        project = self.state.project
        if project is None:
            self.info.setText("No project yet: labels and masks are not saved until you make one.")
        else:
            self.info.setText(f"Saving to {project.folder} (labels and masks save as you go).")

    def _ask_new(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Empty folder for the new project")
        if folder:
            self.new_project(Path(folder))

    def _ask_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder to open")
        if folder:
            self.open_project(Path(folder))

    def new_project(self, folder: Path) -> Project | None:
        """Start a project in ``folder`` from the image being labelled, its labels and masks."""
        image = self.current_image()
        if image is None:
            show_info("Open or select an image layer first, then make the project.")
            return None
        try:
            source = source_file(image)
            project = Project.create(
                folder,
                names=slice_names(image),
                pixel_size_nm=layer_pixel_size_nm(image),
                images=[source] if source else (),
                stack=None if source else image_stack(image),
            )
            project.classes, project.colors = list(self.state.classes), list(self.state.colors)
            project.mask_classes = list(self.state.mask_classes)
            project.set_slice_labels(slice_labels(image))
        except (NanowireError, OSError) as err:
            report_error("Creating the project", err)
            return None
        self.state.attach(project, image, masks_of(self.viewer, image))
        show_info(f"Project saved in {folder}.")
        return project

    def open_project(self, folder: Path) -> Project | None:
        """Open the project in ``folder``: its images, labels, masks and models.

        The project already open is not opened again (its layers would be doubled).
        """
        current, image = self.state.project, self.state.image_layer
        same = current is not None and current.folder.resolve() == Path(folder).resolve()
        if same and image in self.viewer.layers:
            self.viewer.layers.selection.active = image
            show_info(f"{folder} is already open.")
            return current
        try:
            project = Project.open(folder)
            try:
                data = project.load_images()
            except ReadError:  # a folder of mixed sizes: the series it was made on
                series = project_series(project)
                if series is None:
                    raise
                return self._open_series(project, series)
            count = data.data.shape[0] if data.data.ndim == 3 else 1
            check_count(project, count)
            masks = project.load_masks()
        except (NanowireError, OSError) as err:
            report_error("Opening the project", err)
            return None
        image = self.viewer.add_image(
            data.data, name=Path(folder).name, metadata={"names": list(project.names)}
        )
        if project.pixel_size_nm:
            set_layer_pixel_size_nm(image, project.pixel_size_nm)
        mask_layer = None
        if masks is not None:
            mask_layer = add_mask_layer(self.viewer, image, project.mask_classes, masks)
            self.viewer.layers.selection.active = image
        self.state.attach(project, image, mask_layer, masks_saved=True)
        return project

    def _open_series(self, project: Project, series: Series) -> Project:
        """Open a project made on a series: one image layer paged through, a mask per image."""
        check_count(project, len(series))
        masks = {i: m for i in range(len(series)) if (m := project.load_mask(i)) is not None}
        kwargs = series_kwargs(series)
        kwargs["name"] = project.folder.name
        image = self.viewer.add_image(series.read(0), **kwargs)
        mask_layer = None
        if masks:
            mask_layer = add_mask_layer(
                self.viewer, image, project.mask_classes, masks.pop(0, None)
            )
            series.stash[mask_layer.name] = masks
            self.viewer.layers.selection.active = image
        self.state.attach(project, image, mask_layer, masks_saved=True)
        return project


def project_series(project: Project) -> Series | None:
    """The series a project was made on (a folder of mixed sizes), or None for a stack."""
    if len(project.images) != 1:
        return None
    path = project.resolve(project.images[0])
    image = read_folder(path) if path.is_dir() else None
    return image if isinstance(image, Series) else None


def check_count(project: Project, count: int) -> None:
    """Refuse a project whose images are no longer the ones it was made with."""
    if count != len(project.names):
        raise ProjectError(
            f"The project's images are now {count}, not the {len(project.names)} it was "
            "made with; restore the original files."
        )
