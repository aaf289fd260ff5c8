"""Orientational (nematic) order of the wires in an image, from their skeleton."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# Blur of the one-pixel skeleton before taking gradients: enough to smooth the pixel staircase
# of oblique lines (measured: straight bars at 0-100 deg give S = 0.97-0.98 and directions
# within 1.2 deg), small enough that the blurred ends of a wire weigh little.
SKELETON_BLUR_PX = 1.5


def nematic_order(skeleton: np.ndarray, blur_px: float = SKELETON_BLUR_PX) -> tuple[float, float]:
    """(S, director in degrees) of the local wire directions along a skeleton image.

    S = |<exp(2i theta)>| with theta the local direction of the wires, weighted by length: 1
    when every wire runs the same way, near 0 when they run every way (a mesh, or dispersed
    wires). It is computed from the orientation tensor of the blurred skeleton, whose gradients
    are perpendicular to the wires and of equal strength per unit length, so a long wire
    weighs more than a short one and a curved wire counts each of its parts in its own
    direction. A mesh that forms one connected domain is thus still seen as disordered, which
    the orientations of whole domains cannot do. The director is the mean wire direction in
    [0, 180) from +x towards +y (rows grow downwards). NaN, NaN without any skeleton pixel.
    """
    if not np.any(skeleton):
        return math.nan, math.nan
    skeleton = np.asarray(skeleton, dtype=np.float64)
    # np.gradient needs two samples per axis: a one-pixel-wide image gets a zero row/column.
    skeleton = np.pad(skeleton, [(0, max(0, 2 - n)) for n in skeleton.shape])
    blurred = ndimage.gaussian_filter(skeleton, blur_px)
    gy, gx = np.gradient(blurred)
    energy = float(np.sum(gx * gx + gy * gy))
    if energy == 0:  # a blur without gradients (e.g. a skeleton filling the image): no direction
        return math.nan, math.nan
    # A wire runs at 90 deg to the gradients: exp(2i(phi + 90 deg)) = -exp(2i phi).
    z = -complex(np.sum(gx * gx - gy * gy), np.sum(2.0 * gx * gy)) / energy
    return float(abs(z)), float(axial_deg(np.rad2deg(np.angle(z)) / 2.0))


def axial_deg(angle_deg: np.ndarray | float) -> np.ndarray:
    """Axial angles (a line at 0 deg is the line at 180 deg) mapped into [0, 180).

    Guards against -1e-15 % 180 giving 180.0.
    """
    angle = np.mod(angle_deg, 180.0)
    return np.where(angle >= 180.0, 0.0, angle)
