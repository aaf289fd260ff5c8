"""Qt-free core of napari-nanowire: everything the GUI and the CLI do, callable from scripts."""
