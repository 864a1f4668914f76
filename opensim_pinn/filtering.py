"""Coordinate filtering and differentiation, exactly as OpenSim's tools do it (numpy).

OpenSim's AnalyzeTool (Static Optimization) and InverseDynamicsTool prepare the
coordinates the same way, and so does this module, so that the accelerations
and inverse-dynamics forces here are the ones Static Optimization balances:

1. pad the signal with half its length at each end (reflected and negated,
   ``Signal::Pad``);
2. if the sampling is irregular, resample at the smallest time step with a
   natural quintic spline (``Storage::resample``; at most 100,000 samples: a
   smaller step is widened, as OpenSim does for RRA's variable-step output);
3. low-pass filter with a 3rd-order Butterworth IIR run forwards and backwards
   (``Signal::LowpassIIR``);
4. fit natural quintic splines (``GCVSplineSet(5, ...)``): speeds are the
   spline's first derivative at the samples; accelerations are the first
   derivative of a second spline fitted through those speeds (as
   ``StaticOptimization`` does).

Tests check every step against OpenSim's own ``Storage`` and ``GCVSplineSet``.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_interp_spline

MAX_RESAMPLE_SIZE = 100_000
"""Most samples ``Storage::resample`` makes: a smaller step is widened to span / this."""


def pad(values: np.ndarray, n_pad: int) -> np.ndarray:
    """Extend ``values`` (n_samples, ...) by ``n_pad`` reflected-and-negated samples at each end."""
    values = np.asarray(values, float)
    if n_pad <= 0:
        return values
    before = 2 * values[0] - values[n_pad:0:-1]
    after = 2 * values[-1] - values[-2:-2 - n_pad:-1]
    return np.concatenate([before, values, after])


def natural_quintic(time: np.ndarray, values: np.ndarray):
    """Natural quintic interpolating spline through the samples (OpenSim's ``GCVSpline``, degree 5)."""
    zero = np.zeros(np.shape(values)[1:])
    natural = [(3, zero), (4, zero)]
    return make_interp_spline(time, values, k=5, bc_type=(natural, natural), axis=0)


def lowpass_iir(time: np.ndarray, values: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenSim's ``Storage::lowpassIIR``: resample if irregular, then zero-lag Butterworth.

    Parameters
    ----------
    time : ndarray, shape (n_samples,)
    values : ndarray, shape (n_samples, n_signals)
    cutoff : float
        Cut-off frequency in Hz.

    Returns
    -------
    time, values
        Possibly resampled times and the filtered signals.
    """
    time, values = np.asarray(time, float), np.asarray(values, float)
    steps = np.diff(time)
    step = steps.min()
    if (time[-1] - time[0]) / (len(time) - 1) - step > np.finfo(float).eps:
        if (time[-1] - time[0]) / step > MAX_RESAMPLE_SIZE:  # Storage::resample's cap (RRA's output needs it)
            step = (time[-1] - time[0]) / MAX_RESAMPLE_SIZE
        grid = []
        t = time[0]
        while t <= time[-1]:  # accumulated like OpenSim's resample, for identical times
            grid.append(t)
            t += step
        grid = np.array(grid)
        values = natural_quintic(time, values)(grid)
        time = grid
    if cutoff >= 0.5 / step:
        cutoff = 0.49 / step
    wa = np.tan(np.pi * cutoff * step)
    den = (wa + 1) * (wa * wa + wa + 1)
    a = np.array([1.0, 3.0, 3.0, 1.0]) * wa ** 3 / den
    b = np.array([(3 * wa ** 3 + 2 * wa ** 2 - 2 * wa - 3) / den,
                  (3 * wa ** 3 - 2 * wa ** 2 - 2 * wa + 3) / den,
                  (wa - 1) * (wa * wa - wa + 1) / den])

    def one_pass(signal):
        out = signal.copy()
        for i in range(3, len(signal)):
            out[i] = (a[0] * signal[i] + a[1] * signal[i - 1] + a[2] * signal[i - 2]
                      + a[3] * signal[i - 3] - b[0] * out[i - 1] - b[1] * out[i - 2] - b[2] * out[i - 3])
        return out

    return time, np.ascontiguousarray(one_pass(one_pass(values)[::-1])[::-1])


def filtered_kinematics(time: np.ndarray, q: np.ndarray, cutoff: float | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates, speeds and accelerations at the samples, as Static Optimization sees them.

    Parameters
    ----------
    time : ndarray, shape (n_samples,)
        Seconds.
    q : ndarray, shape (n_samples, n_coordinates)
        Coordinates in radians / metres.
    cutoff : float or None
        Low-pass cut-off in Hz; ``None`` or a negative value: no filtering (and no padding).

    Returns
    -------
    time, q, qd, qdd
        Sample times (padded and possibly resampled when filtering), and
        arrays of shape ``(n_times, n_coordinates)``.
    """
    time, q = np.asarray(time, float), np.asarray(q, float)
    if cutoff is not None and cutoff >= 0:
        n_pad = len(time) // 2
        time, q = lowpass_iir(pad(time, n_pad), pad(q, n_pad), cutoff)
    qd = natural_quintic(time, q).derivative(1)(time)
    qdd = natural_quintic(time, qd).derivative(1)(time)
    return time, q, qd, qdd


def frame_indices(time: np.ndarray, start: float, end: float, step_interval: int = 1) -> np.ndarray:
    """Rows analysed by an OpenSim tool for ``[start, end]``: from the last time <= start
    to the last time <= end (``Storage::findIndex``); between them, the rows whose index is a
    multiple of ``step_interval`` (an analysis's ``proceed(step)``: the index counts from the
    first row of the padded, resampled coordinates, not from ``start``); the first and last
    rows always (AnalyzeTool records the initial and final times too)."""
    first = max(int(np.searchsorted(time, start + 1e-12, side="right")) - 1, 0)
    last = max(int(np.searchsorted(time, end + 1e-12, side="right")) - 1, 0)
    inner = np.arange(first + 1, last)
    rows = np.concatenate([[first], inner[inner % step_interval == 0], [last] if last > first else []])
    return rows.astype(int)
