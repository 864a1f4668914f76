"""Figures of a comparison between the network and OpenSim Static Optimization (matplotlib, Agg).

Each function writes one PNG and returns its path. Arrays have time as the first axis.
Where :func:`heel_strikes` finds two or more heel strikes of one foot in the vertical
ground reaction force, the time panels get a second axis in % of the gait cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONTACT_THRESHOLD_N = 20.0
"""Vertical force (N) above which a foot is in contact, or 5 % of that force's peak if larger
(the usual force-plate thresholds are 10-50 N)."""
MIN_STRIDE_S = 0.3
"""Heel strikes of one foot closer than this (s) are one contact (noise around the threshold)."""


@dataclass
class GaitCycle:
    """Heel strikes (s) of one foot, found in the vertical force of ``force`` (an ExternalForce name, or the
    body its force is applied to) rising through ``threshold_n`` (N)."""

    force: str
    heel_strikes: list[float]
    threshold_n: float = CONTACT_THRESHOLD_N

    def ticks(self, first: float, last: float) -> tuple[list[float], list[str]]:
        """Times (s) within ``[first, last]`` of 0, 25, 50, 75 % of each gait cycle, and their labels.

        Before the first and after the last strike, cycles are as long as the nearest measured one.
        """
        strikes = np.asarray(self.heel_strikes, float)
        times, labels = [], []
        before = strikes[0] - (strikes[1] - strikes[0]) * np.arange(1, 50)
        after = strikes[-1] + (strikes[-1] - strikes[-2]) * np.arange(1, 50)
        edges = np.concatenate([before[::-1], strikes, after])
        edges = edges[(edges[1:] >= first).argmax():]  # from the cycle that contains ``first``
        for start, end in zip(edges[:-1], edges[1:]):
            if start > last:
                break
            for percent in (0, 25, 50, 75):
                t = start + (end - start) * percent / 100
                if first - 1e-9 <= t <= last + 1e-9:
                    times.append(float(t))
                    labels.append(str(percent))
        return times, labels


def heel_strikes(time: np.ndarray, labels: list[str], grf: np.ndarray) -> GaitCycle | None:
    """The foot with the most heel strikes (at least two) in a trial's ground reaction forces, or None.

    Parameters
    ----------
    time : ndarray, shape (n_frames,)
    labels : list of str
        ``<body>/ground/f{x,y,z}`` per column (:class:`opensim_pinn.trial.Kinematics`), or the older
        ``<force>_f{x,y,z}``; ``y`` of a force expressed in ground is vertical (OpenSim's convention).
    grf : ndarray, shape (n_frames, n_labels)
        Forces (N).

    Notes
    -----
    A heel strike is the first frame whose vertical force reaches the contact threshold
    (:data:`CONTACT_THRESHOLD_N`, or 5 % of the peak) after frames below it.
    """
    best = None
    for i, label in enumerate(labels):
        if label.endswith("/ground/fy"):
            name = label[: -len("/ground/fy")]
        elif label.endswith("_fy") and "/" not in label:
            name = label[: -len("_fy")]
        else:
            continue
        vertical = np.abs(np.asarray(grf[:, i], float))
        threshold = max(CONTACT_THRESHOLD_N, 0.05 * float(vertical.max(initial=0.0)))
        contact = vertical >= threshold
        onsets = np.flatnonzero(contact[1:] & ~contact[:-1]) + 1
        strikes: list[float] = []
        for t in time[onsets]:
            if not strikes or t - strikes[-1] >= MIN_STRIDE_S:
                strikes.append(float(t))
        if len(strikes) >= 2 and (best is None or len(strikes) > len(best.heel_strikes)):
            best = GaitCycle(force=name, heel_strikes=strikes, threshold_n=threshold)
    return best


def _gait_axis(ax, time: np.ndarray, gait: GaitCycle | None, *, label: bool) -> None:
    """Dotted lines at the heel strikes, and a top axis in % of the gait cycle."""
    if gait is None:
        return
    for strike in gait.heel_strikes:
        ax.axvline(strike, color="0.6", lw=0.6, ls=":")
    ticks, tick_labels = gait.ticks(float(time[0]), float(time[-1]))
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks)
    top.set_xticklabels(tick_labels)
    top.tick_params(labelsize=6, length=2, pad=1)
    if label:
        top.set_xlabel(f"% gait cycle ({gait.force} heel strikes)", fontsize=6, labelpad=2)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grid(n_panels: int, max_columns: int = 6) -> tuple[int, int]:
    columns = min(max_columns, max(1, math.ceil(math.sqrt(n_panels * 1.5))))
    return math.ceil(n_panels / columns), columns


def plot_muscle_forces(time: np.ndarray, muscles: list[str], reference: np.ndarray, estimate: np.ndarray,
                       path: str | Path, *, r2: np.ndarray | None = None, gait: GaitCycle | None = None,
                       reference_label: str = "OpenSim Static Optimization") -> Path:
    """One panel per muscle: force (N) over time, reference vs estimate; R^2 in the titles if given.

    ``gait``: heel strikes (:func:`heel_strikes`) for a % gait cycle axis.
    """
    plt = _pyplot()
    figure, axes, panels = _panel_grid(plt, len(muscles), panel_size=(2.6, 1.9), max_columns=6,
                                       y_label="force (N)")
    for i, ax in enumerate(panels):
        ax.plot(time, reference[:, i], color="0.2", lw=1.6, label=reference_label)
        ax.plot(time, estimate[:, i], color="tab:red", lw=1.0, ls="--", label="network")
        ax.set_title(muscles[i] if r2 is None else f"{muscles[i]}  R²={r2[i]:.3f}", fontsize=8)
        _gait_axis(ax, time, gait, label=i == 0)
    return _save_with_legend(plt, figure, axes, path, n_legend_columns=2)


def plot_torque_tracking(time: np.ndarray, coordinates: list[str], inverse_dynamics: np.ndarray,
                         muscles: np.ndarray, muscles_and_actuators: np.ndarray, path: str | Path,
                         *, units: list[str] | None = None, gait: GaitCycle | None = None) -> Path:
    """One panel per coordinate: inverse-dynamics generalised force vs muscles alone and muscles + actuators.

    ``gait``: heel strikes (:func:`heel_strikes`) for a % gait cycle axis.
    """
    plt = _pyplot()
    figure, axes, panels = _panel_grid(plt, len(coordinates), panel_size=(2.8, 2.0), max_columns=5,
                                       y_label="generalised force")
    for i, ax in enumerate(panels):
        ax.plot(time, inverse_dynamics[:, i], color="0.2", lw=1.8, label="inverse dynamics")
        ax.plot(time, muscles_and_actuators[:, i], color="tab:red", lw=1.0, ls="--",
                label="network muscles + actuators")
        ax.plot(time, muscles[:, i], color="tab:blue", lw=0.9, alpha=0.8, label="network muscles only")
        ax.set_title(f"{coordinates[i]} ({units[i] if units else 'N m'})", fontsize=8)
        _gait_axis(ax, time, gait, label=i == 0)
    return _save_with_legend(plt, figure, axes, path, n_legend_columns=3)


def _panel_grid(plt, n_panels: int, *, panel_size: tuple[float, float], max_columns: int, y_label: str):
    """A figure with one panel per item over time, sharing x; returns (figure, axes, the used panels).

    Unused panels are hidden; the left column gets ``y_label``, the bottom panels the time axis.
    """
    rows, columns = _grid(n_panels, max_columns)
    width, height = panel_size
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.6), sharex=True,
                                squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n_panels:
            ax.set_visible(False)
            continue
        ax.tick_params(labelsize=7)
        if i % columns == 0:
            ax.set_ylabel(y_label, fontsize=7)
        if i >= n_panels - columns:
            ax.set_xlabel("time (s)", fontsize=7)
    return figure, axes, list(axes.flat)[:n_panels]


def _save_with_legend(plt, figure, axes, path: str | Path, *, n_legend_columns: int) -> Path:
    """One legend (from the first panel) above the grid, then save the figure and close it."""
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=n_legend_columns, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_training_history(history: list[dict], path: str | Path,
                          title: str = "training: physics-informed loss terms") -> Path:
    """Loss terms per epoch (log scale); below, the learning rate and the Levenberg-Marquardt damping
    when the history has them (the schedule that gives the loss curve its shape)."""
    plt = _pyplot()
    schedule = [name for name in ("learning_rate", "damping") if all(name in row for row in history)]
    figure, axes = plt.subplots(2 if schedule else 1, 1, figsize=(6, 5.2 if schedule else 3.5), sharex=True,
                                squeeze=False, gridspec_kw={"height_ratios": [2, 1]} if schedule else None)
    ax = axes[0, 0]
    epochs = [row["epoch"] for row in history]
    for name, color in (("total", "0.2"), ("dynamics", "tab:red"), ("performance", "tab:blue"),
                        ("boundary", "tab:green")):
        values = np.array([row[name] for row in history], dtype=float)
        if np.any(values > 0):
            ax.semilogy(epochs, np.where(values > 0, values, np.nan), color=color, lw=1.2, label=name)
    ax.set_ylabel("loss (mean per frame)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    for name, color in zip(schedule, ("tab:purple", "tab:orange")):
        values = np.array([row[name] for row in history], dtype=float)
        axes[1, 0].semilogy(epochs, np.where(values > 0, values, np.nan), color=color, lw=1.2,
                            label=name.replace("_", " "))
    if schedule:
        axes[1, 0].set_ylabel("schedule", fontsize=8)
        axes[1, 0].legend(fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_fold_r2(muscles: list[str], folds: dict[str, np.ndarray], path: str | Path, *,
                 reference_label: str = "OpenSim Static Optimization") -> Path:
    """Cross-validation: each muscle's force R^2 on each held-out fold (markers) and pooled (bars).

    ``folds``: fold name -> R^2 per muscle, shape (n_muscles,); the key ``"all held-out frames"``, if
    present, is drawn as bars. R^2 below -1 is drawn at -1 (the axis stops there).
    """
    plt = _pyplot()
    x = np.arange(len(muscles))
    figure, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(muscles) + 2.0), 3.6))
    pooled = folds.get("all held-out frames")
    if pooled is not None:
        ax.bar(x, np.clip(pooled, -1.0, 1.0), color="0.85", edgecolor="0.5", label="all held-out frames")
    markers = "os^vDP*Xh<>p"
    for k, (name, values) in enumerate((n, v) for n, v in folds.items() if n != "all held-out frames"):
        ax.plot(x, np.clip(values, -1.0, 1.0), ls="none", marker=markers[k % len(markers)], ms=4, label=name)
    ax.axhline(0.0, color="0.4", lw=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(x)
    ax.set_xticklabels(muscles, rotation=70, fontsize=7)
    ax.set_ylabel(f"R² of force vs {reference_label}", fontsize=8)
    ax.set_title("held-out folds: muscle force agreement", fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=2, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
