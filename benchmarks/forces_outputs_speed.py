"""Benchmark: what a prediction costs with ``--outputs forces`` against the default activation outputs.

For each shared case, two checkpoints trained for a few epochs (benchmarks/latency.py's
``checkpoint_for``: the time does not depend on the weights), one per output kind, predict the same
trial (the whole trial at the case's own rate: gait10dof18musc 151 frames at 60 Hz, gait2392 1,500
frames at 1000 Hz) in this process on one CPU thread, timed as ``opensim-pinn predict`` times it
(:func:`opensim_pinn.predict.timed_inference`: features, with ``Q_loads`` for the forces outputs,
network, activations, for the forces outputs Static Optimization solved per frame, muscle forces;
one warm-up run, then up to ``--repeats`` runs within about 2 s), median and minimum. The machine is
shared: the load average is saved with the figures.

Usage: python benchmarks/forces_outputs_speed.py [--data ../shared/data] [--out benchmarks/results] [--repeats 7]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from common import save_results
from latency import CASES, checkpoint_for, timing_parser
from opensim_pinn.predict import timed_inference
from opensim_pinn.trainer import Trainer
from opensim_pinn.trial import load_kinematics


def main() -> None:
    args = timing_parser(__doc__.splitlines()[0], repeats=7).parse_args()
    torch.set_num_threads(1)
    results = {"threads": 1, "load_average_at_start": list(os.getloadavg()), "cases": {}}
    with tempfile.TemporaryDirectory() as work:
        for name in args.cases:
            folder, spec = Path(args.data) / name, CASES[name]
            row = {}
            for outputs in ("activations", "forces"):
                trainer = Trainer.load(checkpoint_for(name, folder, spec, Path(work), outputs))
                kinematics = load_kinematics(trainer.info, folder / spec["motion"], folder / spec["external_loads"],
                                             start=spec["start"], end=spec["end"], lowpass=trainer.lowpass)
                timing = timed_inference(trainer, kinematics, repeats=args.repeats)[2]
                row[outputs] = {"median_s": round(timing.median_s, 5), "min_s": round(timing.min_s, 5),
                                "repeats": timing.repeats}
                row["frames"] = len(kinematics.time)
            row["ratio_forces_to_activations"] = round(row["forces"]["median_s"] / row["activations"]["median_s"], 2)
            results["cases"][name] = row
            print(f"{name:16} {row['frames']} frames: activations {row['activations']['median_s'] * 1e3:7.1f} ms, "
                  f"forces {row['forces']['median_s'] * 1e3:7.1f} ms (x{row['ratio_forces_to_activations']}; "
                  f"{row['forces']['repeats']} and {row['activations']['repeats']} timed runs)", flush=True)
    results["load_average_at_end"] = list(os.getloadavg())
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save_results(results, args.out, "forces_outputs_speed")


if __name__ == "__main__":
    main()
