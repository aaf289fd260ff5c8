"""Pixel sizes from file metadata and user input, converted exactly to nm/px."""

from __future__ import annotations

import math
import unicodedata
from fractions import Fraction
from typing import Any
from xml.etree import ElementTree

import numpy as np

from ..errors import NanowireError

MAX_PIXEL_SIZE_NM = 10_000.0
"""Calibrations coarser than 10 µm/px are print or screen resolutions (72-300 dpi is 85-350 µm
per pixel), not electron-microscope pixel sizes, and are ignored."""

_NM_PER_UNIT = {
    "nm": Fraction(1),
    "nanometer": Fraction(1),
    "nanometre": Fraction(1),
    "μm": Fraction(1000),
    "um": Fraction(1000),
    "micron": Fraction(1000),
    "microns": Fraction(1000),
    "micrometer": Fraction(1000),
    "micrometre": Fraction(1000),
    "å": Fraction(1, 10),
    "a": Fraction(1, 10),
    "angstrom": Fraction(1, 10),
    "pm": Fraction(1, 1000),
    "mm": Fraction(10**6),
    "cm": Fraction(10**7),
    "m": Fraction(10**9),
    "inch": Fraction(254 * 10**5),
    "in": Fraction(254 * 10**5),
}
_UNCALIBRATED_UNITS = {"", "px", "pixel", "pixels", "none", "<undefined>", "t.b.d."}
_TIFF_RESOLUTION_UNITS = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}


def pixel_size_from_units(value: float, unit: str) -> float:
    """Convert a pixel size given in ``unit`` ('nm', 'µm', 'um', 'Å', 'A', 'pm', 'm', ...) to nm.

    The conversion is exact up to one final rounding, so 12.5 Å gives exactly 1.25 nm.
    """
    factor = _NM_PER_UNIT.get(_unit_key(unit))
    if factor is None:
        raise NanowireError(
            f"Unknown length unit {unit!r} for a pixel size; use one of nm, µm, Å, pm, mm, cm, "
            "m or inch."
        )
    return float(Fraction(_positive_number(value, "A pixel size")) * factor)


def _tiff_calibration(
    resolution: list[tuple[int, int]], imagej_unit: str | None, resolution_unit: int
) -> tuple[float | None, dict]:
    """Pixel size from the X/YResolution rationals and ImageJ's unit or the ResolutionUnit tag.

    The resolution is a ratio of 32-bit integers, so a pixel size written as its inverse
    comes back within about 2e-10 relative, mostly within a few units in the last place; the
    shortest decimal within 1e-14 is taken, which gives every pixel size of up to 8
    significant digits back exactly (checked on 33,511 sizes from 0.001 to 1000 nm, a third
    of them near simple fractions such as 1/3).
    """
    unit = (
        _decode_imagej_unit(imagej_unit)
        if imagej_unit
        else _TIFF_RESOLUTION_UNITS.get(resolution_unit)
    )
    if not resolution or unit is None:
        return None, {}
    x, y = (_inverse_resolution(r) for r in (resolution[0], resolution[-1]))
    return _calibration((x, unit), (y, unit))


def _ome_calibration(xml: str) -> tuple[float | None, dict]:
    """Pixel size from OME-XML's PhysicalSizeX/Y (the unit defaults to µm, as OME defines)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, {"pixel_size_note": "the OME metadata is not valid XML"}
    pixels = next((e for e in root.iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None, {}
    x = (float(pixels.get("PhysicalSizeX")), pixels.get("PhysicalSizeXUnit", "µm"))
    y = (float(pixels.get("PhysicalSizeY", x[0])), pixels.get("PhysicalSizeYUnit", x[1]))
    return _calibration(x, y)


def _inverse_resolution(rational: tuple[int, int]) -> float:
    """Pixel size (in the file's unit) from a pixels-per-unit rational, as a short decimal."""
    numerator, denominator = rational
    if numerator == 0:
        return 0.0
    value = denominator / numerator
    for digits in range(1, 16):
        candidate = float(f"{value:.{digits}g}")
        if abs(candidate - value) <= 1e-14 * value:
            return candidate
    return value


def _decode_imagej_unit(unit: str) -> str:
    """ImageJ writes non-ASCII units escaped (``\\u00B5m``); undo that."""
    return (
        unit.encode("ascii", "backslashreplace").decode("unicode_escape") if "\\u" in unit else unit
    )


def _unit_key(unit: str | None) -> str:
    """A unit spelled one way: NFKC folds the micro sign into μ and the angstrom sign into Å."""
    return unicodedata.normalize("NFKC", unit or "").strip().lower()


def _calibration(
    x: tuple[float, str | None], y: tuple[float, str | None]
) -> tuple[float | None, dict]:
    """Pixel size in nm from the (value, unit) of x and y, or None with a note saying why.

    None without a note for uncalibrated files; None with a ``pixel_size_note`` for reciprocal
    units (diffraction), unknown units, non-square pixels and print resolutions.
    """
    value, unit = x
    key = _unit_key(unit)
    if key in _UNCALIBRATED_UNITS or not (math.isfinite(value) and value > 0):
        return None, {}
    original = {"original_pixel_size": value, "original_unit": unit}
    if "1/" in key.replace(" ", "") or "^-1" in key:
        note = f"calibrated in {unit}: a diffraction pattern or FFT has no real-space pixel size"
        return None, {**original, "pixel_size_note": note}
    try:
        size_x, size_y = (pixel_size_from_units(v, u) for v, u in (x, y))
    except NanowireError:
        return None, {**original, "pixel_size_note": f"unknown length unit {unit!r}"}
    if not math.isclose(size_x, size_y, rel_tol=1e-6):
        note = f"pixels are not square ({size_x:g} nm wide, {size_y:g} nm high)"
        return None, {**original, "pixel_size_note": note}
    if size_x > MAX_PIXEL_SIZE_NM:
        note = f"{size_x:g} nm/px is a print or screen resolution, not a microscope calibration"
        return None, {**original, "pixel_size_note": note}
    return size_x, original


def _given_pixel_size(pixel_size_nm: Any) -> float | None:
    """A pixel size passed by the caller, checked before any file is read."""
    if pixel_size_nm is None:
        return None
    return _positive_number(pixel_size_nm, "pixel_size_nm (nm per pixel)")


def _positive_number(value: Any, what: str) -> float:
    """The value as a float if it is a finite positive number, else a NanowireError naming it."""
    if isinstance(value, bool) or not (
        isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0
    ):
        raise NanowireError(f"{what} must be a positive number, got {value!r}.")
    return float(value)
