"""Benchmark: how close streamed predictions are to offline ``predict`` and to Static Optimization.

A trained gait10dof18musc checkpoint (``--checkpoint``) streams the walk frame by frame
with lookaheads of 0, 50 and 100 ms and of one training window, twice:

- ``raw``: the IK coordinates as recorded, kinematics estimated in the stream (the default);
- ``filtered``: the offline-filtered q, qd, qdd pushed as they are, which isolates what the
  truncated backward GRU changes.

Each is compared with offline ``predict`` of the same checkpoint, and with the fast SO
solver (OpenSim SO's answer to median R^2 0.9997, see static_opt_speed.py) on the same
frames: median over muscles of the forces' R^2, mean RMSE (N), largest activation difference.

Usage: python benchmarks/streaming_agreement.py --checkpoint run/checkpoint.pt [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import CASE_FILES, RESULTS, SHARED_DATA, save_results
from opensim_pinn.metrics import r2, rmse
from opensim_pinn.streaming import StreamingPredictor
from opensim_pinn.trainer import Trainer
from opensim_pinn.timebase import resample_trial
from opensim_pinn.trial import TrialSettings, load_kinematics, prepare_trial

LOOKAHEADS_S = (0.0, 0.05, 0.1)


def streamed(trainer, kinematics, lookahead, filtered):
    stream = StreamingPredictor(trainer, lookahead=lookahead, filtered_input=filtered)
    frames = []
    for i, time in enumerate(kinematics.time):
        extra = {"qd": kinematics.qd[i], "qdd": kinematics.qdd[i]} if filtered else {}
        frames += stream.push(time, kinematics.q[i], kinematics.grf[i], **extra)
    frames += stream.finish()
    return np.array([f.activations for f in frames]), np.array([f.forces for f in frames]), stream


def scores(reference, forces):
    return {"median_r2": round(float(np.median(r2(reference, forces))), 4),
            "mean_rmse_N": round(float(rmse(reference, forces).mean()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    from opensim_pinn.static_opt import fast_static_optimization

    folder = Path(args.data) / "gait10dof18musc"
    files = {k: str(folder / v) for k, v in CASE_FILES["gait10dof18musc"].items()}
    trainer = Trainer.load(args.checkpoint)
    rate = trainer.config.rate  # streams arrive at the network's rate: everything compared at its ticks
    offline_kinematics = resample_trial(load_kinematics(trainer.info, files["motion"], files["external_loads"],
                                                        lowpass=trainer.lowpass), rate)
    raw = resample_trial(load_kinematics(trainer.info, files["motion"], files["external_loads"], lowpass=None), rate)
    offline = trainer.predict(offline_kinematics)
    offline_forces = trainer.muscle_forces(offline_kinematics, offline)
    trial, info = prepare_trial(TrialSettings(**files, lowpass=trainer.lowpass))
    trial = resample_trial(trial, rate)
    from opensim_pinn.muscle import MusculoskeletalModel

    so = fast_static_optimization(trial, info, MusculoskeletalModel(info, trainer.polynomials))
    so_forces = so.forces[:, :len(trainer.muscles)]
    step = float(offline_kinematics.time[1] - offline_kinematics.time[0])
    window_s = trainer.config.window_frames() * step
    results = {"case": "gait10dof18musc walk", "frames": len(raw.time), "rate_hz": round(1 / step, 2),
               "window_frames": trainer.config.window_frames(), "offline_vs_fast_so": scores(so_forces, offline_forces),
               "streams": []}
    print(f"offline predict vs fast SO: {results['offline_vs_fast_so']}")
    for kind, source in (("raw", raw), ("filtered", offline_kinematics)):
        for lookahead in (*LOOKAHEADS_S, window_s):
            activations, forces, stream = streamed(trainer, source, lookahead, kind == "filtered")
            row = {"input": kind, "lookahead_s": round(lookahead, 4), "lookahead_frames": stream.lookahead_frames,
                   "vs_offline": {**scores(offline_forces, forces),
                                  "max_activation_difference": round(float(np.abs(activations - offline).max()), 6)},
                   "vs_fast_so": scores(so_forces, forces)}
            results["streams"].append(row)
            print(json.dumps(row), flush=True)
    save_results(results, args.out, "streaming_agreement")


if __name__ == "__main__":
    main()
