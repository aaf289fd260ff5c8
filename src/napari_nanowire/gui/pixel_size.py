"""A layer's pixel size in nm/px: the one place that reads or writes it.

The pixel size is stored once, as napari stores physical sizes: the scale of a layer's two
image axes in their unit (nm once known; napari's "pixel" while unknown). napari's scale bar and
cursor read-out use it, and so does every measurement. Layers made for an image (its training
masks, its segmentation, its predictions) name it in their metadata, so that a new pixel size
reaches all of them, the open project and the view at once (:func:`set_image_pixel_size`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pint

from napari_nanowire.core.errors import NanowireError

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

    from .state import WorkflowState

IMAGE_KEY = "image_layer"
"""Metadata key naming the image layer a derived layer (masks, segmentation...) belongs to."""
LEGACY_IMAGE_KEY = "mask_for"
"""The same for training-mask layers (see :mod:`.masks`)."""
NM = "nm"
UNKNOWN = "pixel"


class PixelSizeError(NanowireError):
    """A pixel size that cannot be used (zero, negative, not a number)."""


def layer_pixel_size_nm(layer: Layer) -> float | None:
    """The pixel size of ``layer`` in nm/px, or None when its image axes are not in a length.

    Converts other length units (e.g. µm) to nm.
    """
    return pixel_size_from(layer.scale, layer.units)


def pixel_size_from(scale: Sequence[float], units: Sequence) -> float | None:
    """nm/px from a layer's scale and units (pint units or their names, as in a layer's
    state that writers get), or None when its image axes are not in a length."""
    if scale is None or not units:
        return None
    try:
        per_unit = (1 * pint.Unit(str(units[-1]))).to(NM).magnitude
    except (pint.DimensionalityError, pint.UndefinedUnitError, ValueError):
        return None
    return float(scale[-1] * per_unit)


def check_pixel_size(pixel_size_nm: float) -> float:
    """``pixel_size_nm`` as a float, refusing values that are not a positive number."""
    try:
        value = float(pixel_size_nm)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise PixelSizeError(
            f"Pixel size must be a positive number of nm per pixel, got {pixel_size_nm!r}; "
            "read it off the scale bar (bar length in nm / bar length in pixels)."
        )
    return value


def set_layer_pixel_size_nm(layer: Layer, pixel_size_nm: float) -> None:
    """Scale the two image axes of ``layer`` to ``pixel_size_nm`` nm/px (other axes kept)."""
    value = check_pixel_size(pixel_size_nm)
    scale = list(layer.scale)
    scale[-2:] = [value, value]
    units = [str(u) for u in layer.units]
    units[-2:] = [NM, NM]
    # units first: napari would otherwise show the new scale in "pixel" for one redraw
    layer.units = units
    layer.scale = scale


def format_pixel_size(pixel_size_nm: float | None) -> str:
    """``pixel_size_nm`` with at least 4 significant digits (0.01775 stays 0.01775)."""
    return "unknown" if pixel_size_nm is None else f"{pixel_size_nm:.6g} nm/px"


def image_of(layer: Layer) -> str | None:
    """Name of the image layer ``layer`` was made for (None for images and other layers)."""
    return layer.metadata.get(IMAGE_KEY) or layer.metadata.get(LEGACY_IMAGE_KEY)


def linked_layers(viewer: napari.Viewer, image: Layer) -> list[Layer]:
    """``image`` and every layer made for it (masks, segmentation, predictions)."""
    return [image] + [layer for layer in viewer.layers if image_of(layer) == image.name]


def set_image_pixel_size(
    viewer: napari.Viewer,
    image: Layer,
    pixel_size_nm: float,
    state: WorkflowState | None = None,
) -> bool:
    """Give ``image``, its derived layers, its project and the view the new pixel size.

    Returns False (and changes nothing) when the value equals the current one, so pressing
    "Set" without editing never rewrites a calibration read from the file.
    """
    value = check_pixel_size(pixel_size_nm)
    current = layer_pixel_size_nm(image)
    if current is not None and abs(current - value) <= 1e-9 * current:
        return False
    for layer in linked_layers(viewer, image):
        set_layer_pixel_size_nm(layer, value)
    if state is not None and state.project is not None and state.image_layer is image:
        state.project.pixel_size_nm = value
        state.project.save()
    show_scale_bar(viewer)
    viewer.reset_view()
    return True


def show_scale_bar(viewer: napari.Viewer) -> None:
    """Show napari's scale bar (``viewer.canvas.overlays.scale_bar`` since napari 0.9).

    Its unit comes from the layers' units, which :func:`set_layer_pixel_size_nm` sets.
    """
    canvas = getattr(viewer, "canvas", None)
    bar = canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar
    bar.visible = True
