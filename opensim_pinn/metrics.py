"""Agreement measures between two estimates of the same signals (numpy).

All functions take arrays of shape ``(n_frames, n_signals)`` (or ``(n_frames,)``)
and return one value per signal, in the signals' units where they have one.
"""

from __future__ import annotations

import numpy as np


def r2(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Coefficient of determination of ``estimate`` against ``reference``, per column.

    1 - SS_res / SS_tot. A constant reference gives 1 where the estimate matches
    it to 1e-9 of its scale and 0 otherwise (R^2 is undefined there).
    """
    reference, estimate = np.asarray(reference, float), np.asarray(estimate, float)
    residual = np.sum((reference - estimate) ** 2, axis=0)
    total = np.sum((reference - reference.mean(axis=0)) ** 2, axis=0)
    scale = np.maximum(np.abs(reference).max(axis=0), 1.0)
    flat = total <= (1e-9 * scale) ** 2 * len(reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1.0 - residual / np.where(flat, 1.0, total)
    return np.where(flat, (residual <= (1e-9 * scale) ** 2 * len(reference)).astype(float), value)


def rmse(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Root-mean-square difference per column, in the signals' units."""
    reference, estimate = np.asarray(reference, float), np.asarray(estimate, float)
    return np.sqrt(np.mean((reference - estimate) ** 2, axis=0))


def nrmse(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """RMSE divided by the reference's range (max - min), per column, as a fraction.

    The paper's normalisation. A column whose reference range is below 1e-9
    gets NaN.
    """
    reference = np.asarray(reference, float)
    spread = reference.max(axis=0) - reference.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 1e-9, rmse(reference, estimate) / spread, np.nan)
