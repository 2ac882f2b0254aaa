"""astropy's ``Gaussian2D`` and ``Moffat2D`` as residuals and Jacobians for scipy's least_squares
(numba, one pass over the star's pixels).

Frame QA fits two profiles to each of up to 30 stars, some 80 model evaluations a star; through
astropy's ``evaluate`` and ``fit_deriv`` each costs ~30 numpy temporaries and most of the fit's
time. These are the same formulas (astropy 8's, term for term) in one compiled loop, so
``least_squares(method="lm")`` walks to the same minimum. Parameters in astropy's order:
Gaussian (amplitude, x_mean, y_mean, x_stddev, y_stddev, theta), Moffat (amplitude, x_0, y_0,
gamma, alpha).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def _gaussian_terms(p):  # pragma: no cover - compiled
    """The quadratic form's coefficients a, b, c of ``Gaussian2D.evaluate``."""
    theta, xstd2, ystd2 = p[5], p[3] ** 2, p[4] ** 2
    cost2, sint2, sin2t = math.cos(theta) ** 2, math.sin(theta) ** 2, math.sin(2.0 * theta)
    a = 0.5 * ((cost2 / xstd2) + (sint2 / ystd2))
    b = 0.5 * ((sin2t / xstd2) - (sin2t / ystd2))
    c = 0.5 * ((sint2 / xstd2) + (cost2 / ystd2))
    return a, b, c


@njit(cache=True, nogil=True, error_model="numpy")
def gaussian_residual(p, x, y, values):  # pragma: no cover - compiled
    """``Gaussian2D.evaluate(x, y, *p) - values``."""
    a, b, c = _gaussian_terms(p)
    out = np.empty(x.size)
    for i in range(x.size):
        dx, dy = x[i] - p[1], y[i] - p[2]
        out[i] = p[0] * math.exp(-((a * dx ** 2) + (b * dx * dy) + (c * dy ** 2))) - values[i]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def gaussian_jacobian(p, x, y, values):  # pragma: no cover - compiled
    """``Gaussian2D.fit_deriv(x, y, *p)`` as an (n pixels, 6) array."""
    amplitude, x_stddev, y_stddev, theta = p[0], p[3], p[4], p[5]
    a, b, c = _gaussian_terms(p)
    cost, sint, cos2t, sin2t = math.cos(theta), math.sin(theta), math.cos(2.0 * theta), math.sin(2.0 * theta)
    cost2, sint2 = cost ** 2, sint ** 2
    xstd2, ystd2, xstd3, ystd3 = x_stddev ** 2, y_stddev ** 2, x_stddev ** 3, y_stddev ** 3
    da_dtheta = sint * cost * ((1.0 / ystd2) - (1.0 / xstd2))
    da_dx, da_dy = -cost2 / xstd3, -sint2 / ystd3
    db_dtheta = (cos2t / xstd2) - (cos2t / ystd2)
    db_dx, db_dy = -sin2t / xstd3, sin2t / ystd3
    dc_dtheta, dc_dx, dc_dy = -da_dtheta, -sint2 / xstd3, -cost2 / ystd3
    out = np.empty((x.size, 6))
    for i in range(x.size):
        dx, dy = x[i] - p[1], y[i] - p[2]
        dx2, dy2, dxy = dx ** 2, dy ** 2, dx * dy
        g = amplitude * math.exp(-((a * dx2) + (b * dxy) + (c * dy2)))
        out[i, 0] = g / amplitude
        out[i, 1] = g * ((2.0 * a * dx) + (b * dy))
        out[i, 2] = g * ((b * dx) + (2.0 * c * dy))
        out[i, 3] = g * (-(da_dx * dx2 + db_dx * dxy + dc_dx * dy2))
        out[i, 4] = g * (-(da_dy * dx2 + db_dy * dxy + dc_dy * dy2))
        out[i, 5] = g * (-(da_dtheta * dx2 + db_dtheta * dxy + dc_dtheta * dy2))
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def moffat_residual(p, x, y, values):  # pragma: no cover - compiled
    """``Moffat2D.evaluate(x, y, *p) - values``."""
    gamma2 = p[3] ** 2
    out = np.empty(x.size)
    for i in range(x.size):
        rr_gg = ((x[i] - p[1]) ** 2 + (y[i] - p[2]) ** 2) / gamma2
        out[i] = p[0] * (1 + rr_gg) ** (-p[4]) - values[i]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def moffat_jacobian(p, x, y, values):  # pragma: no cover - compiled
    """``Moffat2D.fit_deriv(x, y, *p)`` as an (n pixels, 5) array."""
    amplitude, x_0, y_0, gamma, alpha = p[0], p[1], p[2], p[3], p[4]
    out = np.empty((x.size, 5))
    for i in range(x.size):
        rr_gg = ((x[i] - x_0) ** 2 + (y[i] - y_0) ** 2) / gamma ** 2
        d_a = (1 + rr_gg) ** (-alpha)
        out[i, 0] = d_a
        out[i, 1] = 2 * amplitude * alpha * d_a * (x[i] - x_0) / (gamma ** 2 * (1 + rr_gg))
        out[i, 2] = 2 * amplitude * alpha * d_a * (y[i] - y_0) / (gamma ** 2 * (1 + rr_gg))
        out[i, 3] = 2 * amplitude * alpha * d_a * rr_gg / (gamma * (1 + rr_gg))
        out[i, 4] = -amplitude * d_a * math.log(1 + rr_gg)
    return out
