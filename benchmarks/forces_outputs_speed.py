"""Benchmark: what a prediction costs with ``--outputs forces`` against the default activation outputs.

For each shared case, two checkpoints trained for a few epochs (the time does not depend on the
weights), one per output kind, predict the same trial (the whole trial at the case's own rate:
gait10dof18musc 151 frames at 60 Hz, gait2392 1,500 frames at 1000 Hz) in this process on one CPU
thread: features (with ``Q_loads`` for the forces outputs), network, and the activations (for
the forces outputs, Static Optimization solved per frame), as :func:`opensim_pinn.predict.timed_inference`
times a prediction; ``--repeats`` runs after one warm-up, median and minimum. The machine is shared:
the load average is saved with the figures.

Usage: python benchmarks/forces_outputs_speed.py [--data ../shared/data] [--out benchmarks/results] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import FILE_KEYS, RESULTS, SHARED_DATA, case, save_results
from opensim_pinn.train import train_network
from opensim_pinn.trainer import Trainer
from opensim_pinn.trial import load_kinematics

CASES = {"gait10dof18musc": case("gait10dof18musc", start=0.0, end=2.5),
         "gait2392": case("gait2392", start=0.5, end=1.999)}
TRAIN_EPOCHS = 5


def seconds(call, repeats: int) -> dict:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return {"median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"threads": 1, "repeats": args.repeats, "load_average_at_start": list(os.getloadavg()), "cases": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, spec in CASES.items():
            files = {k: str(Path(args.data) / name / spec[k]) for k in FILE_KEYS}
            row = {}
            for outputs in ("activations", "forces"):
                out = Path(work) / f"{name}_{outputs}"
                train_network(files["model"], [files["motion"]], [files["external_loads"]], reserves=files["reserves"],
                              start=spec["start"], end=spec["end"], step_interval=10, epochs=TRAIN_EPOCHS,
                              outputs=outputs, out=out, progress=False)
                trainer = Trainer.load(out / "checkpoint.pt")
                kinematics = load_kinematics(trainer.info, files["motion"], files["external_loads"],
                                             start=spec["start"], end=spec["end"], lowpass=trainer.lowpass)
                row[outputs] = seconds(lambda: trainer.activations(trainer.features(kinematics), kinematics.time),
                                       args.repeats)
                row["frames"] = len(kinematics.time)
            row["ratio_forces_to_activations"] = round(row["forces"]["median_s"] / row["activations"]["median_s"], 2)
            results["cases"][name] = row
            print(f"{name:16} {row['frames']} frames: activations {row['activations']['median_s'] * 1e3:7.1f} ms, "
                  f"forces {row['forces']['median_s'] * 1e3:7.1f} ms (median of {args.repeats}; "
                  f"x{row['ratio_forces_to_activations']})", flush=True)
    results["load_average_at_end"] = list(os.getloadavg())
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save_results(results, args.out, "forces_outputs_speed")


if __name__ == "__main__":
    main()
