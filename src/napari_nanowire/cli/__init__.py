"""The ``napari-nanowire`` command line: a thin layer over :mod:`napari_nanowire.core`."""
