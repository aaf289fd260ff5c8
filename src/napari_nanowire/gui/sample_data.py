"""napari sample data: a small synthetic TEM stack with its class labels and true masks."""

from __future__ import annotations

import numpy as np

from napari_nanowire.core.data.synthetic import CLASSES, generate_dataset

from .pixel_size import IMAGE_KEY

SAMPLE_PIXEL_SIZE_NM = 1.0


def make_sample_stack(n_per_class: int = 3, size: int = 256) -> list[tuple]:
    """Synthetic TEM images of all four morphology classes as one stack, plus their masks.

    The image layer's metadata carries the slice names and the true classes (under
    ``true_class_labels``, so that the Label widget starts with every slice unlabelled, as with
    real data); the hidden Labels layer holds the generator's true wire masks, measurable as is.
    """
    items = generate_dataset(n_per_class, size=size, pixel_size_nm=SAMPLE_PIXEL_SIZE_NM, seed=0)
    stack = np.stack([item.image for item in items])
    masks = np.stack([item.mask for item in items])
    scale = (1.0, SAMPLE_PIXEL_SIZE_NM, SAMPLE_PIXEL_SIZE_NM)
    image_meta = {
        "name": "synthetic TEM",
        "scale": scale,
        "units": ("pixel", "nm", "nm"),
        "metadata": {
            "names": [item.name for item in items],
            "true_class_labels": [item.label for item in items],
            "class_names": list(CLASSES),
        },
    }
    mask_meta = {
        "name": "true wire mask",
        "scale": scale,
        "units": ("pixel", "nm", "nm"),
        "opacity": 0.4,
        "visible": False,
        "metadata": {
            IMAGE_KEY: "synthetic TEM",
            "mask_classes": ["background", "wire"],
            "names": [item.name for item in items],
        },
    }
    return [(stack, image_meta, "image"), (masks, mask_meta, "labels")]
