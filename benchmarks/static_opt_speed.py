"""Benchmark: the fast Static Optimization solver against OpenSim's, same trials, same run.

For each shared case, runs ``opensim-pinn static-opt --solver opensim`` once and
``--solver fast`` three times (median), through the same API users call, and
reports the wall times from each ``timing.json``, their ratio, and the forces'
agreement (R^2 per muscle). Per-model preparation (model description, path
polynomials) is cached by a warm-up run first, as the timing definition says.

For every case it also reports where the fast solver's time goes, each step timed
apart after the runs (median of the repeats): child process start (a no-op child:
interpreter, imports, OpenSim), model loading (OpenSim, in this process), OpenSim
inverse dynamics and actuator maps (the child's work, model loading included),
reading and filtering, path polynomials (cache read), the torch muscle module,
muscle matrices, solve, file writing; and ``end_to_end_s``: the whole
``static_optimization`` call, child start and writing included.

``gait2392_1000hz`` is the whole 1,500-frame gait2392 trial at its own 1000 Hz
(OpenSim's setup analyses every 10th frame: ``gait2392``).

Usage: python benchmarks/static_opt_speed.py [--data ../shared/data] [--out benchmarks/results]
       [--cases gait2392_1000hz ...] [--threads 1] [--saved-opensim]

``--saved-opensim`` (development) times the fast solver alone: OpenSim's time comes from the saved
results, and the figures are saved as ``<case>_fast_only``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import FILE_KEYS, RESULTS, SHARED_DATA, case
from opensim_pinn.metrics import r2
from opensim_pinn.static_opt import static_optimization
from opensim_pinn.storage import read_storage

CASES = {
    "gait10dof18musc": case("gait10dof18musc", start=0.0, end=2.5, lowpass=6.0),
    "gait2392": case("gait2392", start=0.5, end=1.999, lowpass=-1.0, step_interval=10),
    "gait2392_1000hz": case("gait2392", start=0.5, end=1.999, lowpass=-1.0, step_interval=1),
    "arm26": case("arm26", start=0.0, end=1.0, lowpass=6.0),
}


def run_case(folder: Path, case: dict, work: Path, repeats: int = 3, saved: dict | None = None) -> dict:
    """``saved``: this case's previous results, whose OpenSim time is reused instead of running OpenSim
    (then no agreement figures)."""
    arguments = {k: (str(folder / v) if k in FILE_KEYS else v) for k, v in case.items()}
    model, motion = arguments.pop("model"), arguments.pop("motion")
    static_optimization(model, motion, out=str(work / "warmup"), **arguments)  # caches model + paths
    if saved is None:
        opensim = static_optimization(model, motion, out=str(work / "opensim"), solver="opensim", **arguments)
    fast, end_to_end = [], []
    for i in range(repeats):
        began = time.perf_counter()
        fast.append(static_optimization(model, motion, out=str(work / f"fast{i}"), **arguments))
        end_to_end.append(time.perf_counter() - began)
    fast_wall = statistics.median(f["timing"]["wall_s"] for f in fast)
    figures = {"n_frames": fast[0]["n_frames"], "n_muscles": fast[0]["timing"]["n_muscles"],
               "fast_wall_s": fast_wall, "fast_end_to_end_s": statistics.median(end_to_end),
               "fast_breakdown_s": breakdown(model, motion, arguments, work, repeats)}
    if saved is not None:
        return {**figures, "opensim_wall_s_saved": saved["opensim_wall_s"],
                "opensim_wall_s_saved_note": "OpenSim SO not run: its time from the saved results of an "
                "earlier run (other load); no agreement figures",
                "speedup_vs_saved": saved["opensim_wall_s"] / fast_wall}
    reference = read_storage(opensim["files"][0])
    estimate = read_storage(fast[0]["files"][0])
    n_muscles = opensim["timing"]["n_muscles"]
    scores = r2(reference.data[:, :n_muscles], estimate.data[:, :n_muscles])
    return {**figures, "opensim_wall_s": opensim["timing"]["wall_s"],
            "speedup": opensim["timing"]["wall_s"] / fast_wall,
            "speedup_end_to_end": opensim["timing"]["wall_s"] / statistics.median(end_to_end),
            "median_r2": float(np.median(scores)), "min_r2": float(scores.min()),
            "min_r2_muscle": reference.labels[int(scores.argmin())]}


def breakdown(model: str, motion: str, arguments: dict, work: Path, repeats: int) -> dict:
    """Seconds of each step of the fast solver on this case, timed apart (median of ``repeats``)."""
    from opensim_pinn.child import run_in_child, run_in_child_timed
    from opensim_pinn.muscle import MusculoskeletalModel
    from opensim_pinn.osim import generalized_forces, load_model
    from opensim_pinn.paths import load_or_fit_paths
    from opensim_pinn.static_opt import activation_table, fast_static_optimization, force_table, muscle_matrices
    from opensim_pinn.storage import write_storage
    from opensim_pinn.trial import TrialSettings, _dynamics_arguments, _with_dynamics, load_kinematics, \
        load_model_info

    info = load_model_info(model, arguments.get("reserves"))
    settings = TrialSettings(model=model, motion=motion, **arguments)
    steps: dict[str, list[float]] = {}

    def timed(step, function, *args, **kwargs):
        began = time.perf_counter()
        result = function(*args, **kwargs)
        steps.setdefault(step, []).append(time.perf_counter() - began)
        return result

    for _ in range(repeats):
        kinematics = timed("reading_and_filtering", load_kinematics, info, motion, arguments.get("external_loads"),
                           start=settings.start, end=settings.end, lowpass=settings.lowpass,
                           step_interval=settings.step_interval)
        timed("child_start", run_in_child, "no-op", os.getpid)
        timed("model_loading", load_model, model, arguments.get("reserves"))
        call = _dynamics_arguments(settings, info, kinematics)
        began = time.perf_counter()
        forces, inside = run_in_child_timed("inverse dynamics", generalized_forces, *call)
        steps.setdefault("inverse_dynamics_in_child", []).append(inside)
        steps.setdefault("child_start_and_transfer", []).append(time.perf_counter() - began - inside)
        trial = _with_dynamics(kinematics, settings, call, forces, 0.0)
        polynomials = timed("path_polynomials", load_or_fit_paths, info.path, trial.coordinates, trial.time,
                            trial.q, [m.name for m in info.muscles])
        muscles = timed("muscle_module", MusculoskeletalModel, info, polynomials)
        matrices = timed("muscle_matrices", muscle_matrices, trial, muscles)
        result = timed("solve", fast_static_optimization, trial, info, muscles, muscles=matrices)
        timed("writing", lambda: (write_storage(work / "force.sto", force_table(result, "t")),
                                  write_storage(work / "activation.sto", activation_table(result, "t"))))
    notes = {"inverse_dynamics_in_child": "OpenSim model loading, initSystem, inverse dynamics and actuator maps, "
             "inside the child (its start excluded)", "child_start": "a no-op child: interpreter, imports, OpenSim",
             "model_loading": "opensim.Model + reserves + initSystem, in this process (part of the child's work)",
             "overlap": "in a run the child starts before reading_and_filtering, and inverse_dynamics_in_child "
             "runs while this process does path_polynomials, muscle_module and muscle_matrices; wall_s = "
             "reading_and_filtering + the longer of inverse_dynamics_in_child and muscle_matrices + solve"}
    return {**{k: round(statistics.median(v), 4) for k, v in steps.items()}, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="fast runs per case (median; default 3)")
    parser.add_argument("--saved-opensim", action="store_true",
                        help="development: do not run OpenSim SO, take its time from the saved results "
                        "(saved under a separate key, with no agreement figures)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    saved = out / "static_opt_speed.json"
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.cases:
            folder = Path(args.data) / name.removesuffix("_1000hz")
            load = os.getloadavg()[0]
            figures = run_case(folder, CASES[name], Path(work) / name, args.repeats,
                               previous[name] if args.saved_opensim else None)
            if args.saved_opensim:  # the full figures of the last side-by-side run stay as they are
                name = f"{name}_fast_only"
            results[name] = figures
            results[name].update(threads=args.threads, repeats=args.repeats, load_average_before=load,
                                 load_average_after=os.getloadavg()[0], cpu_count=os.cpu_count(),
                                 machine=platform.processor() or platform.machine())
            r = results[name]
            if args.saved_opensim:
                print(f"{name:16} {r['n_frames']:4d} frames {r['n_muscles']:3d} muscles | fast "
                      f"{r['fast_wall_s']:6.3f} s | end to end {r['fast_end_to_end_s']:.3f} s | OpenSim SO not "
                      f"run: saved {r['opensim_wall_s_saved']:.3f} s -> {r['speedup_vs_saved']:.1f}x", flush=True)
            else:
                print(f"{name:16} {r['n_frames']:4d} frames {r['n_muscles']:3d} muscles | OpenSim SO "
                      f"{r['opensim_wall_s']:7.3f} s | fast {r['fast_wall_s']:6.3f} s | speed-up "
                      f"{r['speedup']:6.1f}x | R^2 median {r['median_r2']:.4f}, min {r['min_r2']:.4f} "
                      f"({r['min_r2_muscle']}) | end to end {r['fast_end_to_end_s']:.3f} s "
                      f"({r['speedup_end_to_end']:.1f}x)", flush=True)
            print("   fast solver steps (s): " + ", ".join(f"{k} {v}" for k, v in r["fast_breakdown_s"].items()
                                                           if k != "notes"), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({**previous, **results}, indent=2) + "\n")  # cases not run are kept
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
