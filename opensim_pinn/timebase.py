"""The network's internal rate: trials resampled to fixed ticks in seconds, outputs back to the trial's frames.

A network trained with :attr:`~opensim_pinn.trainer.TrainConfig.rate` reads every
trial at that rate, whatever rate it was recorded at: its BiGRU steps and its window
(:attr:`~opensim_pinn.trainer.TrainConfig.window_s`) are in seconds, so a checkpoint
trained on 60 Hz data predicts 100 Hz or 1000 Hz recordings of the same motion as well.

- :func:`ticks`: the internal sample times of a trial, ``n = round(span * rate) + 1``
  evenly spaced times from its first to its last frame (so nothing is extrapolated;
  the step is ``span / (n - 1)``, within half a tick over the span of ``1 / rate``).
- :func:`resample_trial`: a :class:`~opensim_pinn.trial.Kinematics` or
  :class:`~opensim_pinn.trial.Trial` at those ticks.
- :func:`interpolate`: per-tick outputs (activations, controls) back to the frames.

Interpolation: not-a-knot cubic splines (:class:`scipy.interpolate.CubicSpline`),
through every quantity (q, qd, qdd, GRF, inverse-dynamics forces and actuator
maps, then the network's outputs). After OpenSim's 6 Hz low-pass the coordinates
and forces are smooth at 60 Hz and above: a cubic's error on a sinusoid of
angular frequency w sampled at step h is about (5/384) (w h)^4 of its amplitude,
2e-4 at 6 Hz sampled at 60 Hz, where linear interpolation's (w h)^2 / 8 is 5e-2.
Ground reaction forces are not low-pass filtered by SO; downsampled (the usual
case: 1000 Hz to the internal rate) the spline passes through the recorded samples
next to each tick; upsampled, a cubic can ring slightly at a heel strike. Outputs
interpolated back are clipped to their bounds (a cubic may overshoot them by a
little where a muscle switches on or off).

A trial already sampled evenly at the internal rate is used as it is (no
interpolation), so a checkpoint predicts the frames of a trial at its own rate
exactly as a frame-based one would.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.interpolate import CubicSpline

TIME_TOLERANCE = 1e-9
"""s; frame times this close to the ticks count as the ticks (no resampling)."""


def ticks(time: np.ndarray, rate: float) -> np.ndarray:
    """Internal sample times (n_ticks,) from ``time[0]`` to ``time[-1]`` (s) at about ``rate`` (Hz)."""
    time = np.asarray(time, float)
    n = max(2, int(round((time[-1] - time[0]) * rate)) + 1)
    return np.linspace(time[0], time[-1], n)


def at_rate(time: np.ndarray, rate: float | None) -> bool:
    """True when the frames ``time`` (s) are the ticks of ``rate`` already (or ``rate`` is None: frame-based)."""
    if rate is None:
        return True
    grid = ticks(time, rate)
    return len(grid) == len(time) and bool(np.all(np.abs(grid - np.asarray(time, float)) <= TIME_TOLERANCE))


def interpolate(time: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (n_samples, ...) sampled at ``time`` (s), at the times ``at``, by a not-a-knot cubic spline."""
    time, values = np.asarray(time, float), np.asarray(values, float)
    if values.shape[0] < 2:
        raise ValueError("at least 2 samples are needed to interpolate")
    return CubicSpline(time, values, axis=0)(np.asarray(at, float))


def resample_trial(trial, rate: float | None):
    """``trial`` (Kinematics or Trial) at the ticks of ``rate`` Hz; the trial itself if it is at that rate already.

    Every per-frame array is interpolated (see the module docstring); names and settings are kept.
    """
    if at_rate(trial.time, rate):
        return trial
    grid = ticks(trial.time, rate)
    fields = {}
    for name in ("q", "qd", "qdd", "grf", "loads", "tau", "actuator_map"):
        values = np.asarray(getattr(trial, name, np.zeros(0)))
        if values.shape[:1] != (len(trial.time),):
            continue  # a Kinematics has no tau / actuator_map
        fields[name] = (interpolate(trial.time, values, grid) if values.size
                        else np.zeros((len(grid),) + values.shape[1:]))  # no loads, no actuators
    return replace(trial, time=grid, **fields)


def to_frames(values: np.ndarray, grid: np.ndarray, time: np.ndarray, lower=None, upper=None) -> np.ndarray:
    """Per-tick outputs ``values`` (n_ticks, n) at the frames ``time`` (n_frames,), clipped to ``lower``/``upper``.

    ``grid`` is :func:`ticks` of ``time``; when ``time`` is the grid, ``values`` come back unchanged.
    """
    if len(grid) == len(time) and np.all(np.abs(grid - time) <= TIME_TOLERANCE):
        return values
    out = interpolate(grid, values, time)
    if lower is not None:
        out = np.clip(out, lower, upper)
    return out


__all__ = ["ticks", "at_rate", "interpolate", "resample_trial", "to_frames", "TIME_TOLERANCE"]
