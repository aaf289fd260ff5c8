"""Classifier features kept in memory between runs over the same images.

Labelling in rounds (label a few images, retrain, predict the collection, label the
suggestions) refits only the linear head: each image's features stay the same as long as the
encoder and the feature settings do, and computing them is nearly all the time a
classification takes (0.1 s an EMPS figure on a laptop core). So they are kept, keyed by a
digest of the image's pixels and pixel size and a digest of the encoder's weights and the
feature settings: a changed image, encoder or setting is a miss, never a stale answer. Mask
measurements are not kept (they depend on the segmenter and its clean-up settings).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_BYTES = 256 * 2**20
"""Most bytes of features kept (75 000 images of the tiny encoder's 852 features)."""


def extractor_digest(encoder: nn.Module, settings: Any) -> bytes:
    """A digest of everything but the image that sets its features: the encoder's weights and
    buffers and the feature settings (a dataclass instance)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.digest()


def image_digest(image: np.ndarray, pixel_size_nm: float | None) -> bytes:
    """A digest of an image's pixels, shape, type and pixel size."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}{array.dtype.str}{pixel_size_nm!r}".encode())
    digest.update(array.reshape(-1).view(np.uint8))
    return digest.digest()


class FeatureCache:
    """Least-recently-used features by (extractor digest, image digest), at most ``max_bytes``;
    safe to share between the GUI's worker threads."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[bytes, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def features(
        self,
        extractor: bytes,
        images: Sequence[np.ndarray],
        pixel_sizes_nm: Sequence[float | None],
        compute: Callable[[list[np.ndarray], list[float | None]], np.ndarray],
    ) -> np.ndarray:
        """(N, D) features of ``images``: kept ones as they are, the others from ``compute``
        (called once, on the images not kept, in order) and then kept."""
        pairs = zip(images, pixel_sizes_nm, strict=True)
        keys = [(extractor, image_digest(image, px)) for image, px in pairs]
        with self._lock:
            found = [self._touch(key) for key in keys]
        missing = [k for k, f in enumerate(found) if f is None]
        if missing:
            new = compute([images[k] for k in missing], [pixel_sizes_nm[k] for k in missing])
            with self._lock:
                for k, row in zip(missing, new, strict=True):
                    found[k] = row
                    self._keep(keys[k], row)
        return np.stack(found)

    def clear(self) -> None:
        """Forget every kept feature."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _touch(self, key: tuple[bytes, bytes]) -> np.ndarray | None:
        row = self._items.get(key)
        if row is not None:
            self._items.move_to_end(key)
        return row

    def _keep(self, key: tuple[bytes, bytes], row: np.ndarray) -> None:
        if key in self._items:  # computed meanwhile by another thread
            return
        row = np.array(row, copy=True)
        row.flags.writeable = False
        self._items[key] = row
        self._bytes += row.nbytes
        while self._bytes > self.max_bytes and self._items:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


FEATURES = FeatureCache()
"""The process's cache: training and every :class:`~..predict.Predictor` share it."""
