"""How a mask becomes domains and which of them a summary counts: the measuring options."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import NanowireError
from . import selection
from .pruning import PRUNE_FACTOR
from .selection import auto_min_area_nm2
from .shape import SHORT_ASPECT


@dataclass(frozen=True)
class MeasureOptions:
    """How to turn a mask into domains; checked on creation.

    ``class_names`` maps mask values to names. ``None`` names value 1 ``"wire"`` and any
    other value present ``"class_<value>"``; given names must cover every value in the mask.
    ``exclude_border`` leaves domains touching the edge out of the tables. ``min_area_nm2``
    flags smaller domains ``below_min_area`` (``None``: the default of
    :func:`.selection.auto_min_area_nm2` for the pixel size and ``model_min_area_nm2``, the
    segmenter's own minimum if the mask came from a model). Summaries leave flagged domains
    out as :mod:`.selection` says, unless ``include_flagged``. ``split_touching`` measures
    touching particles one by one (:func:`.domains.class_domains`). Area fraction, percolation
    and nematic order always use every pixel of the class.
    """

    pixel_size_nm: float = 1.0
    connectivity: int = 2
    exclude_border: bool = False
    min_area_nm2: float | None = None
    class_names: dict[int, str] | None = None
    model_min_area_nm2: float | None = None
    include_flagged: bool = False
    split_touching: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pixel_size_nm) and self.pixel_size_nm > 0):
            raise NanowireError(
                f"Pixel size {self.pixel_size_nm!r} nm/px is not a positive number; "
                "give the real pixel size in nm/px."
            )
        if self.connectivity not in (1, 2):
            raise NanowireError(
                f"Connectivity {self.connectivity!r} is not 1 (4-connected) or 2 (8-connected)."
            )
        for value in (self.min_area_nm2, self.model_min_area_nm2):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise NanowireError(
                    f"Minimum area {value!r} nm^2 must be zero or a positive number (or 'auto')."
                )
        if self.class_names is not None and any(v < 1 for v in self.class_names):
            raise NanowireError(
                f"Class values {sorted(self.class_names)} must be 1 or more: "
                "0 is the background of a dense mask."
            )

    def min_area(self) -> float:
        """The minimum domain area in nm^2: the given one, else the default for the pixel size."""
        if self.min_area_nm2 is not None:
            return float(self.min_area_nm2)
        return auto_min_area_nm2(self.pixel_size_nm, self.model_min_area_nm2)

    def describe(self) -> dict:
        """The settings and rules behind a table, for the JSON sidecar next to the CSVs."""
        return {
            "connectivity": self.connectivity,
            "exclude_border": self.exclude_border,
            "split_touching": self.split_touching,
            "min_area_nm2": "auto" if self.min_area_nm2 is None else self.min_area_nm2,
            "model_min_area_nm2": self.model_min_area_nm2,
            "min_area_rule": selection.MIN_AREA_RULE,
            "include_flagged": self.include_flagged,
            "flags": selection.FLAG_RULES,
            "prune_factor": PRUNE_FACTOR,
            "short_aspect": SHORT_ASPECT,
        }
