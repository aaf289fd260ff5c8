"""napari writer contribution: a Labels layer as an ImageJ TIFF that keeps its nm and classes.

napari's own writer saves a Labels layer as uint32 without calibration; this one writes uint8
(uint16 when needed), the pixel size in nm (from the layer's scale) and the mask classes, so
Fiji opens the mask calibrated and napari reopens it as a Labels layer Measure can pick
(see :mod:`napari_nanowire.core.io.labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_nanowire.core.io.labels import LabelsInfo, write_labels

from .masks import MASK_KEY


def write_labels_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 single-layer writer: save ``data`` with the layer's pixel size and mask classes."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        path = f"{path}.tif"
    metadata = attributes.get("metadata") or {}
    info = LabelsInfo(
        [str(n) for n in metadata.get("mask_classes") or []],
        training=MASK_KEY in metadata,
        mask_for=metadata.get(MASK_KEY),
    )
    return [str(write_labels(path, data, layer_pixel_size_nm(attributes), info))]


def layer_pixel_size_nm(attributes: dict) -> float | None:
    """The pixel size in nm of a layer's state: its scale when its units are nm (as this
    plugin's reader and Pixel size widget set them), else the recorded ``pixel_size_nm``, else
    a scale other than 1 (taken as nm/px); None when nothing tells."""
    scale = attributes.get("scale")
    units = [str(u) for u in attributes.get("units") or ()]
    if scale is not None and units and units[-1] in ("nm", "nanometer"):
        return float(scale[-1])
    recorded = (attributes.get("metadata") or {}).get("pixel_size_nm")
    if recorded:
        return float(recorded)
    return float(scale[-1]) if scale is not None and float(scale[-1]) != 1.0 else None
