"""The one model file: every tensor and setting needed to use a trained model again.

Format: a safetensors file (written tensor by tensor, read with the safetensors library).
Tensors are stored flat under a prefix per part (``encoder.``, ``projector.``,
``classifier.``, ``segmenter.``); everything else (architecture, input normalisation, image
size, pixel size, training settings, class names, history, metrics) is JSON in the file's
metadata under the key ``napari_nanowire``, checked and typed on load by
:class:`~.metadata.ModelMeta`. Loading parses JSON and raw tensors only, so a model file cannot
execute code. Pickle-based files (``torch.save``) are refused with an explanation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from ..io import write_bytes_atomic
from .meta_fields import ModelFileError, meta_error, parse_int
from .metadata import FORMAT, FORMAT_VERSION, ModelMeta

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFile", "ModelFileError", "load_model", "save_model"]
META_KEY = "napari_nanowire"
SUFFIX = ".nwmodel"
_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass
class ModelFile:
    """The contents of a model file: flat tensors and typed metadata."""

    meta: ModelMeta
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state dict stored under ``prefix.`` (empty if that part is absent)."""
        head = prefix + "."
        return {k[len(head) :]: v for k, v in self.tensors.items() if k.startswith(head)}

    def has_part(self, prefix: str) -> bool:
        """True if any tensor is stored under ``prefix.``."""
        return any(k.startswith(prefix + ".") for k in self.tensors)

    def set_part(self, prefix: str, module: nn.Module) -> None:
        """Store ``module``'s state dict under ``prefix.``, replacing what was there."""
        head = prefix + "."
        self.tensors = {k: v for k, v in self.tensors.items() if not k.startswith(head)}
        for key, value in module.state_dict().items():
            self.tensors[head + key] = value.detach().to("cpu").contiguous().clone()

    def load_part(self, prefix: str, module: nn.Module, path: str | os.PathLike = "") -> None:
        """Load the ``prefix.`` part into ``module``; a mismatch names the file and the part."""
        state = self.part(prefix)
        if not state:
            raise ModelFileError(f"Model file {path} has no {prefix!r} part.")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            arch = self.meta.encoder
            raise ModelFileError(
                f"Model file {path}: its {prefix!r} weights do not fit this architecture "
                f"(the file says encoder {arch!r}). Was it made by another version or for "
                f"another model? Details: {str(err).splitlines()[0]}"
            ) from None


def save_model(model: ModelFile, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically: a crash mid-write leaves the old file intact."""
    path = Path(path)
    meta = json.dumps(model.meta.to_json())
    header, chunks = _safetensors_layout(model.tensors, {META_KEY: meta})
    write_bytes_atomic(path, len(header).to_bytes(8, "little"), header, *chunks)
    return path


def _safetensors_layout(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[bytes, list[memoryview]]:
    """The safetensors header and each tensor's raw bytes, in file order.

    ``safetensors.torch.save`` would build the whole file as one bytes object in a single call
    that holds the GIL (about 90 ms for a ResNet-18 checkpoint with its optimizer state,
    freezing the viewer at every epoch end); written chunk by chunk, the GIL is free while
    the bytes go to disk.
    """
    header: dict = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, tensor in tensors.items():
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + raw.nbytes],
        }
        chunks.append(memoryview(raw))
        offset += raw.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + b" " * (-len(encoded) % 8), chunks


def load_model(path: str | os.PathLike) -> ModelFile:
    """Read a model file without executing anything from it.

    Raises ModelFileError for a missing, empty, truncated, corrupt, pickle-based or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist.")
    return parse_model(path.read_bytes(), path)


PICKLE_STARTS = (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
"""First bytes of torch.save files: a zip archive, or a pickle of protocol 2-5. Only looked at
once the bytes failed to parse as safetensors, to name the problem: a safetensors header of
19280 (0x4B50) bytes starts the file with "PK" too, and one of 640, 896, 1152 or 1408 bytes
with a pickle's first bytes (a freshly trained segmenter was once refused as a pickle so)."""


def parse_model(data: bytes, path: str | os.PathLike = "(in memory)") -> ModelFile:
    """A model file from its bytes (e.g. shipped to a worker); errors name ``path``."""
    if not data:
        raise ModelFileError(f"Model file {path} is empty; train or copy the model again.")
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        if data[:2] in PICKLE_STARTS:
            raise ModelFileError(
                f"Model file {path} is a pickle (torch.save) file. Pickle files can run "
                "arbitrary code when loaded, so napari-nanowire refuses them. Use a model file "
                "written by napari-nanowire (safetensors format)."
            ) from None
        raise ModelFileError(
            f"Model file {path} is truncated or corrupt ({err}); use another copy or train again."
        ) from None
    raw_meta = header.get("__metadata__", {}).get(META_KEY)
    if raw_meta is None:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-nanowire model (no {META_KEY!r} "
            "metadata)."
        )
    return ModelFile(meta=parse_meta(raw_meta, path), tensors=tensors)


def parse_meta(raw: str, path: str | os.PathLike) -> ModelMeta:
    """The typed metadata from its JSON text; ModelFileError names ``path`` and the field."""
    from .encoders import ENCODERS  # encoders import this module to load their weights

    try:
        obj = json.loads(raw, parse_int=parse_int)
    except RecursionError:
        raise meta_error(str(path), "is nested too deeply") from None
    except (TypeError, ValueError) as err:
        raise meta_error(str(path), f"is not JSON ({err})") from None
    return ModelMeta.from_json(obj, str(path), ENCODERS)
