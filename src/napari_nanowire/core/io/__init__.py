"""Reading TEM images with their pixel size, and writing files atomically.

- ``reading``: images, stacks and folders, lazily when big; the frames of input files
- ``formats``: one decoder per file format (TIFF, pictures, EM formats through rosettasciio)
- ``calibration``: pixel sizes from file metadata and user input, exactly in nm/px
- ``writers``: atomic file writes, TIFF (frame by frame, compressed) and CSV
- ``labels``: mask files marked with their class names, that reopen as Labels layers
- ``limits``: the decoded-size check that refuses decompression bombs before reading
"""

from .calibration import MAX_PIXEL_SIZE_NM, pixel_size_from_units
from .formats import SUPPORTED_SUFFIXES, ReadError
from .reading import (
    LAZY_BYTES,
    FileFrame,
    ImageData,
    file_frames,
    frames,
    image_files,
    input_files,
    read_image,
    read_images,
)
from .writers import (
    TiffFrameWriter,
    WriteError,
    atomic_path,
    csv_bytes,
    csv_unsafe,
    output_lock,
    tiff_frame_writer,
    write_bytes_atomic,
    write_csv,
    write_error,
    write_tiff,
)

__all__ = [
    "LAZY_BYTES",
    "MAX_PIXEL_SIZE_NM",
    "SUPPORTED_SUFFIXES",
    "FileFrame",
    "ImageData",
    "ReadError",
    "TiffFrameWriter",
    "WriteError",
    "atomic_path",
    "csv_bytes",
    "csv_unsafe",
    "file_frames",
    "output_lock",
    "frames",
    "image_files",
    "input_files",
    "pixel_size_from_units",
    "read_image",
    "read_images",
    "tiff_frame_writer",
    "write_bytes_atomic",
    "write_csv",
    "write_error",
    "write_tiff",
]
