"""Names shared along the pipeline: the default morphology classes, unique slice names."""

from __future__ import annotations

from collections.abc import Sequence

CLASSES: tuple[str, ...] = ("singular", "dispersed", "bundle", "network")
"""The seed study's morphology classes, the default for new projects and synthetic data."""


def unique_names(names: Sequence[str]) -> list[str]:
    """Slice names made unique by suffixing repeats, so labels can be keyed by name."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}-{count + 1}")
    return out
