"""Slope, aspect and hillshade against the analytic values of tilted planes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rs.terrain import hillshade, slope_aspect, terrain_channels


def plane(a_east: float, b_north: float, xres: float, yres: float, shape: tuple[int, int] = (7, 9)) -> np.ndarray:
    """z = a * east + b * north on a north-up grid (row 0 is the northernmost)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return 100.0 + a_east * cols * xres + b_north * (-rows * yres)


def angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


# (dz/dx east, dz/dy north, expected aspect = compass direction the slope faces)
ORIENTATIONS = [
    (0.2, 0.0, 270.0),  # rises to the east: faces west
    (-0.2, 0.0, 90.0),  # faces east
    (0.0, 0.3, 180.0),  # rises to the north: faces south
    (0.0, -0.3, 0.0),  # faces north
    (0.1, 0.1, 225.0),  # rises to the north-east: faces south-west
    (-0.5, 0.25, math.degrees(math.atan2(0.5, -0.25)) % 360),
]


@pytest.mark.parametrize("a,b,aspect", ORIENTATIONS)
@pytest.mark.parametrize("xres,yres", [(10.0, 10.0), (10.0, 25.0), (30.0, 5.0)])
def test_plane_slope_and_aspect_are_analytic(a: float, b: float, aspect: float, xres: float, yres: float) -> None:
    slope, asp = slope_aspect(plane(a, b, xres, yres), xres, yres)
    expected_slope = math.degrees(math.atan(math.hypot(a, b)))
    np.testing.assert_allclose(slope, expected_slope, atol=1e-4)
    assert angle_diff(asp, aspect).max() < 1e-3
    assert (asp >= 0).all() and (asp < 360).all()


def test_non_square_pixels_are_respected() -> None:
    # the same array read with swapped pixel sizes is a different surface
    dem = plane(0.0, 0.3, 10.0, 25.0)
    s_right, _ = slope_aspect(dem, 10.0, 25.0)
    s_wrong, _ = slope_aspect(dem, 25.0, 10.0)
    assert s_right[3, 4] == pytest.approx(math.degrees(math.atan(0.3)), abs=1e-4)
    assert s_wrong[3, 4] == pytest.approx(math.degrees(math.atan(0.3 * 25.0 / 10.0)), abs=1e-4)


def test_hillshade_of_planes() -> None:
    alt = 40.0
    flat = np.full((5, 5), 50.0)
    np.testing.assert_allclose(hillshade(flat, 10, 10, 315, alt), math.sin(math.radians(alt)), atol=1e-6)
    # a plane facing the sun (aspect = azimuth) with slope s is lit at cos(zenith - s)
    t = 0.4  # tan of the slope; facing north-west (315) means rising to the south-east
    a, b = t * math.sin(math.radians(135)), t * math.cos(math.radians(135))
    s = math.atan(t)
    lit = hillshade(plane(a, b, 10, 20), 10, 20, 315, alt)
    np.testing.assert_allclose(lit, math.cos(math.radians(90 - alt) - s), atol=1e-5)
    # the opposite face is darker and clipped at 0 when facing away steeply
    dark = hillshade(plane(-a * 10, -b * 10, 10, 20), 10, 20, 315, alt)
    assert (dark == 0).all()


def test_terrain_channels_layout_and_flat_aspect() -> None:
    dem = plane(0.1, 0.1, 10, 10)
    ch = terrain_channels(dem, 10, 10)
    assert ch.shape == (5, 7, 9) and ch.dtype == np.float32
    np.testing.assert_allclose(ch[0], dem, rtol=1e-6)
    np.testing.assert_allclose(ch[2], math.sin(math.radians(225)), atol=1e-5)
    np.testing.assert_allclose(ch[3], math.cos(math.radians(225)), atol=1e-5)
    flat = terrain_channels(np.full((4, 4), 3.0), 10, 10)
    assert (flat[1:4] == 0).all()  # slope 0, aspect undefined → sin = cos = 0


def test_nodata_propagates_to_neighbours() -> None:
    dem = plane(0.1, 0.0, 10, 10)
    dem[3, 4] = np.nan
    ch = terrain_channels(dem, 10, 10)
    bad = ~np.isfinite(ch).all(axis=0)
    assert bad[3, 4] and bad[2, 4] and bad[3, 5]
    assert not bad[0, 0] and not bad[6, 8]
