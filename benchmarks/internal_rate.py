"""Benchmark: the network's internal rate, what it costs in accuracy and what it buys across recording rates.

1. **Static Optimization through the internal rate** (no network: the bound the rate sets).
   Each trial is resampled to the rate (:func:`opensim_pinn.timebase.resample_trial`), the fast
   solver solves SO at those ticks, the activations are interpolated back to the trial's frames
   and turned into forces there; median R^2 over muscles against the fast solver on the frames
   themselves. Rates 30, 50, 60, 100, 200 Hz on the gait10dof18musc walk (60 Hz) and the
   gait2392 walk at 1000 Hz.
2. **Across recording rates.** The network trained (default settings) on the gait10dof18musc
   walk as recorded (60 Hz) predicts the same walk resampled to 1000 Hz (the IK motion
   interpolated by a cubic spline and written with :mod:`opensim_pinn.storage`, the same GRF
   file): median R^2 against the fast solver on each trial's own frames, with the internal
   rate (100 Hz and 60 Hz) and frame-based (``rate=None``, windows of 16 frames, as before).

Usage: python benchmarks/internal_rate.py [--data ../shared/data] [--epochs 1000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from opensim_pinn.metrics import r2
from opensim_pinn.static_opt import fast_static_optimization
from opensim_pinn.storage import read_storage, write_storage
from opensim_pinn.timebase import interpolate, resample_trial, to_frames
from opensim_pinn.trainer import TrainConfig, Trainer
from opensim_pinn.trial import TrialSettings, prepare_trial
from common import FILE_KEYS, RESULTS, SHARED_DATA, save_results
from training_speed import CASES, prepare_case

RATES = (30.0, 50.0, 60.0, 100.0, 200.0)


def so_through_rate(trial, info, muscle_model, rate: float) -> float:
    """Median R^2 of SO solved at the ticks of ``rate`` and brought back to the frames, against SO on the frames."""
    n_muscles = len(info.muscles)
    reference = fast_static_optimization(trial, info, muscle_model).forces[:, :n_muscles]
    coarse = resample_trial(trial, rate)
    solved = fast_static_optimization(coarse, info, muscle_model).activations[:, :n_muscles]
    bounds = [np.array([m.min_control for m in info.muscles]), np.array([m.max_control for m in info.muscles])]
    activations = to_frames(solved, coarse.time, trial.time, *bounds)
    model = muscle_model.to(torch.float64)
    with torch.no_grad():
        forces = model.muscle_forces(torch.as_tensor(trial.q), torch.as_tensor(trial.qd),
                                     torch.as_tensor(activations)).numpy()
    return float(np.median(r2(reference, forces)))


def resampled_motion(motion: Path, rate: float, out: Path) -> Path:
    """The motion file at ``rate`` Hz (every column by a cubic spline), written to ``out``."""
    table = read_storage(motion)
    time = np.arange(table.time[0], table.time[-1] + 0.5 / rate, 1.0 / rate)
    time = time[time <= table.time[-1] + 1e-9]
    write_storage(out, replace(table, time=time, data=interpolate(table.time, table.data, time),
                               comments=[*table.comments, f"resampled to {rate:g} Hz (cubic spline)"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"load_average_at_start": os.getloadavg(), "so_through_rate": {}, "across_recording_rates": {}}
    prepared = {}
    for name in ("gait10dof18musc", "gait2392"):
        trial, info, muscle_model, polynomials, _ = prepare_case(Path(args.data) / name, CASES[name])
        prepared[name] = trial, info, muscle_model, polynomials
        row = {f"{rate:g}": round(so_through_rate(trial, info, muscle_model, rate), 5) for rate in RATES}
        results["so_through_rate"][name] = {"n_frames": len(trial.time), "median_r2_by_rate_hz": row}
        print(f"SO through the internal rate, {name} ({len(trial.time)} frames): "
              + ", ".join(f"{k} Hz {v:.4f}" for k, v in row.items()), flush=True)

    name, case = "gait10dof18musc", CASES["gait10dof18musc"]
    trial60, info, muscle_model, polynomials = prepared[name]
    folder = Path(args.data) / name
    with tempfile.TemporaryDirectory() as work:
        motion = resampled_motion(folder / case["motion"], 1000.0, Path(work) / "subject01_walk_1000Hz_IK.mot")
        files = {k: str(folder / case[k]) for k in FILE_KEYS}
        trial1000, _ = prepare_trial(TrialSettings(**{**files, "motion": str(motion)}, start=case["start"],
                                                   end=case["end"], lowpass=case["lowpass"]), info=info)
    n_muscles = len(info.muscles)
    references = {60: fast_static_optimization(trial60, info, muscle_model).forces[:, :n_muscles],
                  1000: fast_static_optimization(trial1000, info, muscle_model).forces[:, :n_muscles]}
    for rate in (100.0, 60.0, None):
        trainer = Trainer(TrainConfig(epochs=args.epochs, rate=rate), progress=False).fit(
            [trial60], info, muscle_model, polynomials=polynomials)
        scores = {hz: round(float(np.median(r2(references[hz], trainer.muscle_forces(t, trainer.predict(t))))), 5)
                  for hz, t in ((60, trial60), (1000, trial1000))}
        key = "frame-based" if rate is None else f"{rate:g} Hz"
        results["across_recording_rates"][key] = {"trained_on": "60 Hz", "median_r2_at_60hz": scores[60],
                                                  "median_r2_at_1000hz": scores[1000],
                                                  "training_s": trainer.history[-1]["wall_s"]}
        print(f"trained at 60 Hz, internal rate {key}: median R^2 {scores[60]:.4f} at 60 Hz, "
              f"{scores[1000]:.4f} at 1000 Hz ({len(trial1000.time)} frames); training "
              f"{trainer.history[-1]['wall_s']:.1f} s", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    save_results(results, args.out, "internal_rate")


if __name__ == "__main__":
    main()
