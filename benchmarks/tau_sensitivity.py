"""Benchmark: how far Static Optimization's muscle forces move when the generalised forces it balances are off.

gait10dof18musc walk, held-out stride (1.25-2.5 s): the fast solver's forces for the inverse-dynamics
``tau``, against its forces for ``tau`` plus an error of a given size on every coordinate, in units of
that coordinate's RMS over the frames: white (independent per frame) or smooth (Gaussian noise low-passed
at 3 Hz, as a network's error would be), seed 0. Median R^2 over the muscles and mean NRMSE. This is the
error budget of ``--outputs forces`` (opensim_pinn.motion_forces), whose network estimates the forces of
motion and leaves the map to SO itself. Also printed: the share of the loads' generalised forces in each
muscle coordinate's ``tau`` (RMS ratio; inverse dynamics with the loads minus without them).

Usage: python benchmarks/tau_sensitivity.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from scipy.signal import butter, filtfilt

from common import RESULTS, save_results
from generalisation_search import SPLIT, base_settings
from opensim_pinn.metrics import nrmse, r2
from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.paths import load_or_fit_paths
from opensim_pinn.static_opt import bounds, muscle_matrices, solve_frames
from opensim_pinn.trial import load_model_info, prepare_trial

LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = base_settings(SPLIT, 2.5)
    info = load_model_info(settings.model, settings.reserves)
    trial, _ = prepare_trial(settings, info=info)
    whole, _ = prepare_trial(base_settings(0.0, 2.5), info=info)
    polynomials = load_or_fit_paths(info.path, whole.coordinates, whole.time, whole.q, [m.name for m in info.muscles])
    matrix, active = muscle_matrices(trial, MusculoskeletalModel(info, polynomials))
    actuators = torch.as_tensor(trial.actuator_map).transpose(1, 2)
    lower, upper = bounds(info)
    n = len(info.muscles)

    def forces(tau: np.ndarray) -> np.ndarray:
        x, _ = solve_frames(torch.cat([matrix, actuators], 2), torch.as_tensor(tau), lower, upper)
        return (x[:, :n] * active).numpy()

    reference = forces(trial.tau)
    unloaded, _ = prepare_trial(replace(settings, external_loads=None), info=info)
    spanned = (matrix.abs().amax(dim=(0, 2)) > 0).numpy()
    share = {c: round(float(np.sqrt(np.mean((unloaded.tau[:, i] - trial.tau[:, i]) ** 2)
                                    / np.mean(trial.tau[:, i] ** 2))), 3)
             for i, c in enumerate(trial.coordinates) if spanned[i]}
    print("loads' share of tau (RMS ratio):", share, flush=True)
    rms = np.sqrt((trial.tau ** 2).mean(0))
    generator = np.random.default_rng(0)
    b, a = butter(2, 3.0 / 30.0)  # 3 Hz at the trial's 60 Hz
    rows = []
    for level in LEVELS:
        white = generator.standard_normal(trial.tau.shape)
        smooth = filtfilt(b, a, generator.standard_normal((len(trial.time) + 60, trial.tau.shape[1])), axis=0)[30:-30]
        smooth /= smooth.std(0)
        row = {"error_share_of_rms": level}
        for kind, noise in (("white", white), ("smooth", smooth)):
            perturbed = forces(trial.tau + level * rms * noise)
            row[kind] = {"median_r2": round(float(np.median(r2(reference, perturbed))), 5),
                         "mean_nrmse": round(float(np.nanmean(nrmse(reference, perturbed))), 5)}
        rows.append(row)
        print(f"tau error {level:4.0%} of RMS: white median R^2 {row['white']['median_r2']:.4f} "
              f"(NRMSE {100 * row['white']['mean_nrmse']:.1f} %), smooth {row['smooth']['median_r2']:.4f} "
              f"(NRMSE {100 * row['smooth']['mean_nrmse']:.1f} %)", flush=True)
    save_results({"case": "gait10dof18musc walk, 1.25-2.5 s (fast solver)", "seed": 0, "rows": rows,
                  "loads_share_of_tau_rms": share,
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, args.out, "tau_sensitivity")


if __name__ == "__main__":
    main()
