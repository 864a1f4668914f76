"""Benchmark: time-to-R^2 curves of training, next to the fast solver's and OpenSim SO's times, same run.

For each case, trains the network (default settings, one thread) and evaluates it
every ``--eval-every`` epochs: median R^2 over muscles of the network's forces
against the fast Static Optimization solver, on the trial's own frames. The
curve's time is training time only (evaluations are excluded: their time is
subtracted from the trainer's clock). ``--rates 100 none`` trains once at the
internal rate of 100 Hz and once frame-based (the trial's own frames, as before
the internal rate), so both sides of the comparison come from the same run.

Cases (``../shared/data``):

- ``gait10dof18musc``: the 2D walk, 151 frames at 60 Hz, 18 muscles, with its reserves;
- ``gait2392``: the 3D walk at its recorded 1000 Hz (1500 frames, 0.5-1.999 s, no
  low-pass as OpenSim's own setup), 92 muscles, with its residuals and reserves.
  Its path polynomials are fitted on every 10th frame (the same poses).

Also timed: the fast solver on the trial (reading and filtering the files, OpenSim
inverse dynamics in a child process, the batched solve; the model description and
path polynomials cached, as in ``benchmarks/static_opt_speed.py``) and, with
``--opensim``, OpenSim's own Static Optimization (gait2392 at 1000 Hz takes minutes).

Issue #10's targets: gait2392 to median R^2 >= 0.99 in <= 60 s of training on 2
cores, gait10dof18musc in <= 10 s, a 20-trial corpus in <= 5 min
(``--manifest FILE --model M [--reserves R]``: every trial of the manifest trained
together with ``Trainer.fit`` on the list of trials, full batch; the corpus
training of the manifest trainer, with minibatches, is not in this script yet).

Usage: python benchmarks/training_speed.py [--data ../shared/data] [--cases gait10dof18musc gait2392]
       [--rates 100 none] [--epochs 1000] [--eval-every 25] [--opensim] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import FILE_KEYS, RESULTS, SHARED_DATA, case, save_results
from opensim_pinn.metrics import r2
from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.paths import load_or_fit_paths
from opensim_pinn.static_opt import fast_static_optimization, static_optimization
from opensim_pinn.storage import read_storage
from opensim_pinn.trainer import TrainConfig, Trainer
from opensim_pinn.trial import TrialSettings, load_kinematics, load_model_info, prepare_trial

CASES = {
    "gait10dof18musc": case("gait10dof18musc", start=0.0, end=2.5, lowpass=6.0),
    "gait2392": case("gait2392", start=0.5, end=1.999, lowpass=-1.0, step_interval=1, paths_step_interval=10),
}
TARGET_R2 = 0.99


def prepare_case(folder: Path, case: dict):
    """(trial, info, muscle_model, polynomials, fast solver timing) of a case; paths fitted (cached) on every
    ``paths_step_interval``-th frame."""
    files = {k: (str(folder / case[k]) if case.get(k) else None) for k in FILE_KEYS}
    window = {k: case[k] for k in ("start", "end", "lowpass")}
    info = load_model_info(files["model"], files["reserves"])
    settings = TrialSettings(**files, **window, step_interval=case.get("step_interval", 1))
    trial, info = prepare_trial(settings, info=info)
    paths_trial = trial
    if case.get("paths_step_interval", 1) != settings.step_interval:
        paths_trial, _ = prepare_trial(TrialSettings(**files, **window,
                                                     step_interval=case["paths_step_interval"]), info=info)
    polynomials = load_or_fit_paths(info.path, paths_trial.coordinates, paths_trial.time, paths_trial.q,
                                    [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)
    return trial, info, muscle_model, polynomials, time_fast_solver(files, settings, info, muscle_model)


def time_fast_solver(files: dict, settings: TrialSettings, info, muscle_model, repeats: int = 3) -> dict:
    """Median wall time of the fast solver from the files (reading, filtering, inverse dynamics, solve)."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        kinematics = load_kinematics(info, files["motion"], files["external_loads"], start=settings.start,
                                     end=settings.end, lowpass=settings.lowpass,
                                     step_interval=settings.step_interval)
        read_s = time.perf_counter() - began
        trial, _ = prepare_trial(settings, cache=False, info=info, kinematics=kinematics)
        solve = time.perf_counter()
        fast_static_optimization(trial, info, muscle_model)
        times.append(read_s + trial.preparation_s + time.perf_counter() - solve)
    return {"wall_s": float(np.median(times)), "repeats": repeats,
            "includes": "reading and filtering, OpenSim inverse dynamics (child, start-up excluded), solve"}


def train_curve(trials, info, muscle_model, polynomials, references, config: TrainConfig,
                eval_every: int) -> dict:
    """Train with ``config``; median R^2 (per trial, then the median over trials) every ``eval_every`` epochs."""
    trainer = Trainer(config, progress=False)
    curve, spent = [], [0.0]  # spent: seconds of evaluation so far (subtracted from the trainer's clock)

    def evaluate(_state=None):
        began = time.perf_counter()
        training_s = (trainer.history[-1]["wall_s"] if trainer.history else 0.0) - spent[0]
        scores = [float(np.median(r2(reference, trainer.muscle_forces(trial, trainer.predict(trial)))))
                  for trial, reference in zip(trials, references)]
        curve.append({"epoch": len(trainer.history), "training_s": round(training_s, 3),
                      "median_r2": round(float(np.median(scores)), 5)})
        spent[0] += time.perf_counter() - began

    trainer.fit(trials, info, muscle_model, polynomials=polynomials, snapshot=evaluate, snapshot_every=eval_every)
    evaluate()
    reached = next((point for point in curve if point["median_r2"] >= TARGET_R2), None)
    return {"rate_hz": config.rate, "window_frames": config.window_frames(), "epochs": len(trainer.history),
            "training_s": curve[-1]["training_s"], "final_median_r2": curve[-1]["median_r2"],
            f"time_to_r2_{TARGET_R2}_s": None if reached is None else reached["training_s"],
            f"epochs_to_r2_{TARGET_R2}": None if reached is None else reached["epoch"], "curve": curve}


def fast_references(trials, info, muscle_model) -> list[np.ndarray]:
    n_muscles = len(info.muscles)
    return [fast_static_optimization(t, info, muscle_model).forces[:, :n_muscles] for t in trials]


def run_opensim(folder: Path, case: dict, work: Path, fast_forces: np.ndarray) -> dict:
    """OpenSim SO on the same frames: wall time, and the fast solver's agreement with it."""
    arguments = {k: (str(folder / v) if k in FILE_KEYS else v) for k, v in case.items()
                 if k != "paths_step_interval"}
    model, motion = arguments.pop("model"), arguments.pop("motion")
    result = static_optimization(model, motion, out=str(work), solver="opensim", **arguments)
    table = read_storage(result["files"][0])
    n_muscles = fast_forces.shape[1]
    scores = r2(table.data[:, :n_muscles], fast_forces) if len(table.time) == len(fast_forces) else None
    return {"wall_s": result["timing"]["wall_s"], "n_frames": result["n_frames"],
            "fast_vs_opensim_median_r2": None if scores is None else round(float(np.median(scores)), 5)}


def parse_rate(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--rates", nargs="*", type=parse_rate, default=[100.0],
                        help="internal rates (Hz) to train at; 'none': frame-based (the trial's own frames)")
    parser.add_argument("--epochs", type=int, default=1000, help="training epochs (default: the trainer's 1000)")
    parser.add_argument("--eval-every", type=int, default=25, help="epochs between evaluations")
    parser.add_argument("--opensim", action="store_true", help="also time OpenSim's own SO (minutes on gait2392)")
    parser.add_argument("--manifest", help="a corpus: train on every trial of this manifest together "
                                           "(needs --model; --reserves, --lowpass optional)")
    parser.add_argument("--model")
    parser.add_argument("--reserves")
    parser.add_argument("--lowpass", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    parser.add_argument("--name", default="training_speed", help="results file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "epochs": args.epochs, "eval_every_epochs": args.eval_every,
               "target_median_r2": TARGET_R2, "cpu_count": os.cpu_count(), "platform": platform.platform(),
               "load_average_at_start": os.getloadavg(), "cases": {}}
    work = Path(tempfile.mkdtemp(prefix="training_speed_"))
    jobs = [(name, None) for name in args.cases]
    if args.manifest:
        jobs.append(("manifest", args.manifest))
    for name, manifest in jobs:
        if manifest is None:
            folder = Path(args.data) / name
            trial, info, muscle_model, polynomials, fast = prepare_case(folder, CASES[name])
            trials = [trial]
        else:
            trials, info, muscle_model, polynomials, fast = prepare_manifest(manifest, args)
        references = fast_references(trials, info, muscle_model)
        entry = {"n_trials": len(trials), "n_frames": sum(len(t.time) for t in trials),
                 "n_muscles": len(info.muscles), "fast_solver": fast, "training": []}
        if args.opensim and manifest is None:
            entry["opensim_so"] = run_opensim(folder, CASES[name], work / name, references[0])
        for rate in args.rates:
            config = TrainConfig(epochs=args.epochs, rate=rate, threads=args.threads)
            run = train_curve(trials, info, muscle_model, polynomials, references, config, args.eval_every)
            entry["training"].append(run)
            print(f"{name:16} {entry['n_frames']:5d} frames {entry['n_muscles']:3d} muscles | rate "
                  f"{'frames' if rate is None else f'{rate:g} Hz':>7} | {run['epochs']} epochs "
                  f"{run['training_s']:7.1f} s, median R^2 {run['final_median_r2']:.4f} | R^2 >= {TARGET_R2} after "
                  f"{run[f'time_to_r2_{TARGET_R2}_s']} s"
                  + (f" | fast SO {fast['wall_s']:.2f} s" if fast.get("wall_s") is not None else "")
                  + (f" | OpenSim SO {entry['opensim_so']['wall_s']:.1f} s" if "opensim_so" in entry else ""),
                  flush=True)
        results["cases"][name] = entry
    results["load_average_at_end"] = os.getloadavg()
    save_results(results, args.out, args.name)
    print(f"load average {results['load_average_at_start']} at the start, {results['load_average_at_end']} at the end")


def prepare_manifest(manifest: str, args):
    """The trials of a manifest (one model), with paths fitted on the first trial's poses."""
    from opensim_pinn.manifest import read_manifest

    if not args.model:
        raise SystemExit("--manifest needs --model")
    info = load_model_info(args.model, args.reserves)
    trials = []
    for row in read_manifest(manifest):
        trial, info = prepare_trial(TrialSettings(model=args.model, motion=str(row.motion),
                                                  external_loads=row.external_loads and str(row.external_loads),
                                                  reserves=args.reserves, start=row.start, end=row.end,
                                                  lowpass=args.lowpass), info=info)
        trials.append(trial)
    polynomials = load_or_fit_paths(info.path, trials[0].coordinates, trials[0].time, trials[0].q,
                                    [m.name for m in info.muscles])
    return trials, info, MusculoskeletalModel(info, polynomials), polynomials, {
        "wall_s": None, "includes": "not timed for a manifest"}


if __name__ == "__main__":
    main()
