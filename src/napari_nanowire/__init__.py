"""napari-nanowire: few-label analysis of TEM images of nanowires.

The package has three layers, one folder each:
- ``core``: Qt-free science (reading, synthetic data, encoders, training, measurement),
  importable from scripts;
- ``gui``: the napari plugin (npe2 contributions and dock widgets) over the core;
- ``cli``: the ``napari-nanowire`` command over the core.
"""

__version__ = "0.1.0"
