"""Turning failures into napari notifications that say what to do, never tracebacks."""

from __future__ import annotations

import logging
import sys

from napari.utils.notifications import show_error

from napari_nanowire.core.errors import NanowireError

log = logging.getLogger(__name__)

OUT_OF_MEMORY = (
    "the {device} ran out of memory. Lower the batch size or the image size, pick a smaller "
    "encoder, or choose the CPU as device."
)


def explain(error: BaseException) -> str:
    """One sentence for the user: what went wrong and what to do about it."""
    if isinstance(error, NanowireError):
        return str(error)
    oom = _out_of_memory_device(error)
    if oom:
        return OUT_OF_MEMORY.format(device=oom)
    if isinstance(error, FileNotFoundError):
        return f"{error.filename or error} was not found; check that the file still exists."
    if isinstance(error, PermissionError):
        return f"no permission to write {error.filename or error}; pick another folder."
    if isinstance(error, OSError):
        return f"could not read or write a file ({error}); check the disk and the path."
    return (
        f"an unexpected {type(error).__name__}: {error}. Your labels and masks are saved; "
        "please report this with the log."
    )


def _out_of_memory_device(error: BaseException) -> str | None:
    """'GPU' or 'computer' when ``error`` is an out-of-memory failure, else None."""
    torch = sys.modules.get("torch")  # without torch loaded, no error can come from it
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return "GPU"
    if isinstance(error, MemoryError):
        return "computer"
    if isinstance(error, RuntimeError) and "out of memory" in str(error).lower():
        return "GPU"
    return None


def report_error(what: str, error: BaseException) -> None:
    """Show ``error`` as a notification prefixed by the action that failed.

    Errors the user can fix show their message alone; anything else is also logged with its
    traceback so that a bug report has it.
    """
    if not isinstance(error, NanowireError):
        log.error("%s failed", what, exc_info=(type(error), error, error.__traceback__))
    show_error(f"{what} failed: {explain(error)}")
