"""Benchmark: the same work on the CPU and on CUDA, in one run; says "no CUDA device" when there is none.

Work timed (median of ``--repeats`` after one warm-up, synchronised on CUDA):

- ``predict``: a checkpoint's network (both heads, one pass) and float32 muscle module on the
  gait10dof18musc trial's features, ``--copies`` copies of the trial stacked as one batch
  (files not read or written: the device's part of ``predict --manifest``);
- ``fast_solver``: the fast Static Optimization solver (muscle matrix and batched solve, float64)
  on the 1,500-frame gait2392 trial at 1000 Hz (inverse dynamics from the cache, not timed).

CPU: ``--threads`` torch threads (default 1). Saves benchmarks/results/gpu.json.

Usage: python benchmarks/gpu.py [--data ../shared/data] [--checkpoint PATH] [--copies 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, save_results  # noqa: E402
from latency import CASES, checkpoint_for  # noqa: E402
from static_opt_speed import CASES as SO_CASES  # noqa: E402


def timed(function, device: str, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def predict_work(checkpoint: Path, folder: Path, copies: int, device: str):
    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    case = CASES["gait10dof18musc"]
    trainer = Trainer.load(checkpoint, device=device)
    kinematics = load_kinematics(trainer.info, folder / case["motion"], folder / case["external_loads"],
                                 lowpass=trainer.lowpass)
    features = trainer.features(kinematics).repeat(copies, 1)
    step = float(kinematics.time[1] - kinematics.time[0])  # the copies one after another, uniformly sampled
    times = kinematics.time[0] + step * np.arange(len(features))
    model = trainer.inference_muscle_model()
    q = torch.as_tensor(kinematics.q, dtype=torch.float32, device=device).repeat(copies, 1)
    qd = torch.as_tensor(kinematics.qd, dtype=torch.float32, device=device).repeat(copies, 1)

    def work():
        activations, _ = trainer.outputs(features, times)
        with torch.inference_mode():
            return model.muscle_forces(q, qd, activations)
    return work, len(features)


def solver_work(folder: Path, device: str):
    from opensim_pinn.muscle import MusculoskeletalModel
    from opensim_pinn.paths import load_or_fit_paths
    from opensim_pinn.static_opt import fast_static_optimization
    from opensim_pinn.trial import TrialSettings, prepare_trial

    case = SO_CASES["gait2392_1000hz"]
    files = {k: str(folder / case[k]) for k in ("model", "motion", "external_loads", "reserves")}
    settings = TrialSettings(**files, start=case["start"], end=case["end"], lowpass=case["lowpass"])
    trial, info = prepare_trial(settings)
    polynomials = load_or_fit_paths(info.path, trial.coordinates, trial.time, trial.q, [m.name for m in info.muscles])
    muscles = MusculoskeletalModel(info, polynomials)
    return (lambda: fast_static_optimization(trial, info, muscles, device=device)), len(trial.time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--checkpoint", help="a gait10dof18musc checkpoint (default: trained for a few epochs)")
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    if not cuda:
        print("no CUDA device: timing the CPU only (torch.cuda.is_available() is False)", flush=True)
    data = Path(args.data)
    results = {"cuda_device": torch.cuda.get_device_name(0) if cuda else "no CUDA device", "threads": args.threads,
               "repeats": args.repeats, "load_average_before": os.getloadavg()[0], "work": {}}
    with tempfile.TemporaryDirectory() as work:
        checkpoint = Path(args.checkpoint) if args.checkpoint else checkpoint_for(
            "gait10dof18musc", data / "gait10dof18musc", CASES["gait10dof18musc"], Path(work))
        for name, make in (("predict", lambda d: predict_work(checkpoint, data / "gait10dof18musc", args.copies, d)),
                           ("fast_solver", lambda d: solver_work(data / "gait2392", d))):
            row = {}
            for device in devices:
                function, frames = make(device)
                seconds = timed(function, device, args.repeats)
                row[device] = {"s": round(seconds, 5), "frames": frames, "frames_per_s": round(frames / seconds, 1)}
            if cuda:
                row["cuda_speedup"] = round(row["cpu"]["s"] / row["cuda"]["s"], 2)
            results["work"][name] = row
            print(f"{name:12} " + " | ".join(f"{d} {row[d]['s'] * 1000:9.2f} ms ({row[d]['frames_per_s']:.0f} "
                                             "frames/s)" for d in devices)
                  + (f" | CUDA {row['cuda_speedup']}x" if cuda else " | no CUDA device"), flush=True)
    results["load_average_after"] = os.getloadavg()[0]
    save_results(results, args.out, "gpu")


if __name__ == "__main__":
    main()
