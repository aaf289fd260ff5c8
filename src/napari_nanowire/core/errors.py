"""The error type for problems the user can fix (bad file, bad value, missing labels)."""

import importlib
from types import ModuleType


class NanowireError(ValueError):
    """A problem caused by input, with a message that names the input and says what to do.

    The CLI prints these without a traceback; the GUI shows them as notifications.
    """


class MissingExtraError(NanowireError):
    """An optional part of the package is used without its extra installed."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` from an optional extra, or say which ``pip install`` brings it.

    The core installs without napari, Qt and dask.distributed (``pip install napari-nanowire``);
    the extras ``[napari]``, ``[cluster]`` and ``[bioimageio]`` add them.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs {module}, which cannot be imported ({err}); install it with: "
            f'pip install "napari-nanowire[{extra}]"'
        ) from None
