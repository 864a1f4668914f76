"""Figures of a comparison between the network and OpenSim Static Optimization (matplotlib, Agg).

Each function writes one PNG and returns its path. Arrays have time as the first axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grid(n_panels: int, max_columns: int = 6) -> tuple[int, int]:
    columns = min(max_columns, max(1, math.ceil(math.sqrt(n_panels * 1.5))))
    return math.ceil(n_panels / columns), columns


def plot_muscle_forces(time: np.ndarray, muscles: list[str], reference: np.ndarray, estimate: np.ndarray,
                       path: str | Path, *, r2: np.ndarray | None = None) -> Path:
    """One panel per muscle: force (N) over time, reference vs estimate; R^2 in the titles if given."""
    plt = _pyplot()
    figure, axes, panels = _panel_grid(plt, len(muscles), panel_size=(2.6, 1.9), max_columns=6,
                                       y_label="force (N)")
    for i, ax in enumerate(panels):
        ax.plot(time, reference[:, i], color="0.2", lw=1.6, label="OpenSim Static Optimization")
        ax.plot(time, estimate[:, i], color="tab:red", lw=1.0, ls="--", label="network")
        ax.set_title(muscles[i] if r2 is None else f"{muscles[i]}  R²={r2[i]:.3f}", fontsize=8)
    return _save_with_legend(plt, figure, axes, path, n_legend_columns=2)


def plot_torque_tracking(time: np.ndarray, coordinates: list[str], inverse_dynamics: np.ndarray,
                         muscles: np.ndarray, muscles_and_actuators: np.ndarray, path: str | Path,
                         *, units: list[str] | None = None) -> Path:
    """One panel per coordinate: inverse-dynamics generalised force vs muscles alone and muscles + actuators."""
    plt = _pyplot()
    figure, axes, panels = _panel_grid(plt, len(coordinates), panel_size=(2.8, 2.0), max_columns=5,
                                       y_label="generalised force")
    for i, ax in enumerate(panels):
        ax.plot(time, inverse_dynamics[:, i], color="0.2", lw=1.8, label="inverse dynamics")
        ax.plot(time, muscles_and_actuators[:, i], color="tab:red", lw=1.0, ls="--",
                label="network muscles + actuators")
        ax.plot(time, muscles[:, i], color="tab:blue", lw=0.9, alpha=0.8, label="network muscles only")
        ax.set_title(f"{coordinates[i]} ({units[i] if units else 'N m'})", fontsize=8)
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


def plot_training_history(history: list[dict], path: str | Path) -> Path:
    """Loss terms per epoch (log scale)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [row["epoch"] for row in history]
    for name, color in (("total", "0.2"), ("dynamics", "tab:red"), ("performance", "tab:blue"),
                        ("boundary", "tab:green")):
        values = np.array([row[name] for row in history], dtype=float)
        if np.any(values > 0):
            ax.semilogy(epochs, np.where(values > 0, values, np.nan), color=color, lw=1.2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean per frame)")
    ax.set_title("training: physics-informed loss terms", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
