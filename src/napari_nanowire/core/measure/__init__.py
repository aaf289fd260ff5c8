"""Domain sizes and shapes in nanometres from label masks.

- ``tables``: per-domain and per-image tables from masks, and writing them as CSV
- ``options``: how a mask becomes domains (connectivity, splitting, minimum area, flags)
- ``domains``: class names of a mask, and one label per measured domain
- ``shape``: width and length of a domain from its pruned skeleton, or calipers when stubby
- ``pruning``: skeleton spurs shorter than the local width, the main path
- ``selection``: flags, the automatic minimum area, what summaries count
- ``domain_shape``: geometry of one domain in px: convex hull, Feret diameters, skeleton
- ``nematic``: orientational (nematic) order of the wires, from their skeleton
- ``percolation``: whether one domain spans the image from edge to edge
"""

from .options import MeasureOptions
from .tables import measure_domains, measure_masks, summarize_image, write_tables

__all__ = ["MeasureOptions", "measure_domains", "measure_masks", "summarize_image", "write_tables"]
