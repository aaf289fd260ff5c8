"""napari-nanowire: few-label analysis of TEM images of nanowires.

The package has three layers, one folder each:
- ``core``: Qt-free science (reading, synthetic data, encoders, training, measurement),
  importable from scripts;
- ``gui``: the napari plugin (npe2 contributions and dock widgets) over the core;
- ``cli``: the ``napari-nanowire`` command over the core.

The Python API in three lines (see :mod:`napari_nanowire.core.api`)::

    from napari_nanowire import load_model
    model = load_model("wires.nwmodel")
    masks = model.segment(images, pixel_size_nm=0.5)
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    """``load_model`` and ``Model`` on first use: importing the package stays light (no torch)."""
    if name in ("Model", "load_model"):
        from .core import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
