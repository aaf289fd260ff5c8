"""Domain sizes and shapes in nanometres from label masks."""

from .tables import MeasureOptions, measure_domains, measure_masks, summarize_image, write_tables

__all__ = ["MeasureOptions", "measure_domains", "measure_masks", "summarize_image", "write_tables"]
