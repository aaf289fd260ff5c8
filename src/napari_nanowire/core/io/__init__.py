"""Reading TEM images with their pixel size, and writing files atomically."""

from .calibration import MAX_PIXEL_SIZE_NM, pixel_size_from_units
from .formats import SUPPORTED_SUFFIXES, ReadError
from .reading import (
    LAZY_BYTES,
    ImageData,
    frames,
    image_files,
    input_files,
    read_image,
    read_images,
    read_series,
)
from .writers import (
    TiffFrameWriter,
    atomic_path,
    tiff_frame_writer,
    write_bytes_atomic,
    write_csv,
    write_tiff,
)

__all__ = [
    "LAZY_BYTES",
    "MAX_PIXEL_SIZE_NM",
    "SUPPORTED_SUFFIXES",
    "ImageData",
    "ReadError",
    "TiffFrameWriter",
    "atomic_path",
    "frames",
    "image_files",
    "input_files",
    "pixel_size_from_units",
    "read_image",
    "read_images",
    "read_series",
    "tiff_frame_writer",
    "write_bytes_atomic",
    "write_csv",
    "write_tiff",
]
