"""Benchmark: the fast Static Optimization solver against OpenSim's, same trials, same run.

For each shared case, runs ``opensim-pinn static-opt --solver opensim`` once and
``--solver fast`` three times (median), through the same API users call, and
reports the wall times from each ``timing.json``, their ratio, and the forces'
agreement (R^2 per muscle). Per-model preparation (model description, path
polynomials) is cached by a warm-up run first, as the timing definition says.

Usage: python benchmarks/static_opt_speed.py [--data ../shared/data] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from opensim_pinn.metrics import r2
from opensim_pinn.static_opt import static_optimization
from opensim_pinn.storage import read_storage

CASES = {
    "gait10dof18musc": dict(model="subject01.osim", motion="subject01_walk_IK.mot",
                            external_loads="subject01_walk_grf.xml",
                            reserves="gait10dof18musc_Strong_actuators.xml", start=0.0, end=2.5, lowpass=6.0),
    "gait2392": dict(model="subject01_simbody_adjusted_StaticOp.osim", motion="subject01_walk1_Kinematics.sto",
                     external_loads="foot_floor_loads.xml", reserves="gait2392_SO_weak_Residual_Actuators.xml",
                     start=0.5, end=1.999, lowpass=-1.0, step_interval=10),
    "arm26": dict(model="arm26.osim", motion="arm26_InverseKinematics.mot", start=0.0, end=1.0, lowpass=6.0),
}
FILE_KEYS = ("model", "motion", "external_loads", "reserves")


def run_case(folder: Path, case: dict, work: Path, repeats: int = 3) -> dict:
    arguments = {k: (str(folder / v) if k in FILE_KEYS else v) for k, v in case.items()}
    model, motion = arguments.pop("model"), arguments.pop("motion")
    static_optimization(model, motion, out=str(work / "warmup"), **arguments)  # caches model + paths
    opensim = static_optimization(model, motion, out=str(work / "opensim"), solver="opensim", **arguments)
    fast = [static_optimization(model, motion, out=str(work / f"fast{i}"), **arguments) for i in range(repeats)]
    fast_wall = statistics.median(f["timing"]["wall_s"] for f in fast)
    reference = read_storage(opensim["files"][0])
    estimate = read_storage(fast[0]["files"][0])
    n_muscles = opensim["timing"]["n_muscles"]
    scores = r2(reference.data[:, :n_muscles], estimate.data[:, :n_muscles])
    return {"n_frames": opensim["n_frames"], "n_muscles": n_muscles,
            "opensim_wall_s": opensim["timing"]["wall_s"], "fast_wall_s": fast_wall,
            "speedup": opensim["timing"]["wall_s"] / fast_wall,
            "median_r2": float(np.median(scores)), "min_r2": float(scores.min()),
            "min_r2_muscle": reference.labels[int(scores.argmin())]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.cases:
            results[name] = run_case(Path(args.data) / name, CASES[name], Path(work) / name)
            r = results[name]
            print(f"{name:16} {r['n_frames']:4d} frames {r['n_muscles']:3d} muscles | OpenSim SO "
                  f"{r['opensim_wall_s']:7.3f} s | fast {r['fast_wall_s']:6.3f} s | speed-up "
                  f"{r['speedup']:6.1f}x | R^2 median {r['median_r2']:.4f}, min {r['min_r2']:.4f} "
                  f"({r['min_r2_muscle']})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "static_opt_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out / 'static_opt_speed.json'}")


if __name__ == "__main__":
    main()
