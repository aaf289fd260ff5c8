"""Names shared along the pipeline: the default morphology classes, unique slice names."""

from __future__ import annotations

from collections.abc import Sequence

CLASSES: tuple[str, ...] = ("singular", "dispersed", "bundle", "network")
"""The seed study's morphology classes, the default for new projects and synthetic data."""

MAX_CLASSES = 64
"""Most foreground classes a training mask may hold without class names, and most classes per
mask that ``measure`` takes: more is almost always an instance mask or an intensity image
(a mask value of 2^40 would otherwise allocate 2^40 class names). Raise it here if needed."""


def unique_names(names: Sequence[str]) -> list[str]:
    """Slice names made unique by suffixing repeats, so labels can be keyed by name."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}-{count + 1}")
    return out
