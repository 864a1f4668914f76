"""Whole datasets: every trial of a manifest (:mod:`opensim_pinn.manifest`) with the model prepared once.

:func:`predict_manifest` loads the checkpoint once (network, float32 muscle
module) and :func:`static_opt_manifest` reads the model and its path
polynomials once and runs OpenSim's inverse dynamics of all trials in one child
process. Every trial's inputs and every output file are checked before anything
is written, and the outputs of a run are committed together (nothing is
written if a trial fails): one result set per trial, named by the trial's name.

Under ``torchrun`` (the ``RANK`` and ``WORLD_SIZE`` environment variables) each
process takes trials ``i`` with ``i % WORLD_SIZE == RANK``, so the same command
shares a dataset among processes or machines writing into one ``--out``.

Throughput is reported as frames per second: the analysed frames of this
process's trials over the wall time from the first file read to the last file
written (the once-per-run preparation, reported apart, excluded).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .manifest import ManifestTrial, read_manifest


_FILES_AHEAD = 6
"""Files formatted while earlier ones are still being written to disk (their bytes wait in memory)."""


def my_share(trials: list[ManifestTrial], environ=os.environ) -> tuple[list[ManifestTrial], int, int]:
    """This process's trials (``i % WORLD_SIZE == RANK``), its rank and the world size (1 outside torchrun)."""
    try:
        rank, world = int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise InputError(f"RANK={environ.get('RANK')!r}, WORLD_SIZE={environ.get('WORLD_SIZE')!r}: not whole "
                         "numbers; start the processes with torchrun, or leave both unset") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} is not within WORLD_SIZE={world}; start the processes with torchrun")
    return trials[rank::world], rank, world


def _throughput(n_frames: int, seconds: float, what: str, rank: int, world: int, steps: dict) -> dict:
    return {"frames": n_frames, "wall_s": round(seconds, 4),
            "frames_per_s": round(n_frames / seconds, 1) if seconds > 0 else None,
            "steps_s": {k: round(v, 4) for k, v in steps.items()}, "rank": rank, "world_size": world,
            "counts": what}


def _in_trial(trial: ManifestTrial, error: InputError) -> InputError:
    return InputError(f"trial {trial.name}: {error}")


def predict_manifest(checkpoint: str | Path, manifest: str | Path, *, out: str | Path, force: bool = False,
                     device: str = "cpu", threads: int | None = 1, progress: bool = False) -> dict:
    """Predict every trial of ``manifest`` (this process's share) with ``checkpoint``, as :func:`~opensim_pinn.
    predict.predict` does without a model: ``<name>_forces.sto``, ``_activations.sto``, ``_states.sto`` in ``out``.

    The network runs once per trial for both heads (activations and actuator controls), no repeats.

    Returns
    -------
    dict
        ``trials``, ``files`` (count), ``throughput`` (frames, wall_s, frames_per_s, steps_s: reading,
        inference, writing: formatting, and waiting for the writer thread that puts the files on disk),
        ``preparation_s`` (checkpoint loading).
    """
    from tqdm import tqdm

    from .outputs import OutputFolder
    from .predict import network_controls, prediction_files, write_predictions
    from .storage import write_atomically
    from .trainer import Trainer, torch_threads
    from .trial import load_kinematics

    prepared = time.perf_counter()
    trainer = Trainer.load(checkpoint, device=device)
    trainer.inference_muscle_model()  # the float32 muscle module, made once
    trials, rank, world = my_share(read_manifest(manifest))
    preparation_s = time.perf_counter() - prepared
    began = time.perf_counter()
    kinematics = []
    for trial in tqdm(trials, desc="predict: reading", unit="trial", disable=not progress):
        try:  # every input error before anything is written
            k = load_kinematics(trainer.info, trial.motion, trial.external_loads, start=trial.start, end=trial.end,
                                lowpass=trainer.lowpass, checkpoint=checkpoint)
            trainer.check_kinematics(k)
        except InputError as error:
            raise _in_trial(trial, error) from None
        k.name = trial.name
        kinematics.append(k)
    names = {trial.name: prediction_files(trial.name) for trial in trials}
    output = OutputFolder(out, [n for files in names.values() for n in files], force=force)
    output.check()
    steps = {"reading": time.perf_counter() - began, "inference": 0.0, "writing": 0.0}
    # One writer thread puts the files on disk (write, fsync, rename: waiting on the disk, not the CPU) while
    # this thread formats the next ones and infers the next trials.
    with torch_threads(threads), output as staging, ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
        pending = []  # files being written: at most _FILES_AHEAD, so memory stays bounded

        def write(path: Path, content: bytes) -> None:
            pending.append(writer.submit(write_atomically, path, content))
            while pending and (len(pending) > _FILES_AHEAD or pending[0].done()):
                pending.pop(0).result()  # a failed write stops the run at once

        try:
            for k in tqdm(kinematics, desc="predict", unit="trial", disable=not progress):
                step = time.perf_counter()
                activations, forces, head, fibers = infer(trainer, k)
                controls, actuators = network_controls(trainer, head, len(k.time), checkpoint)
                written = time.perf_counter()
                write_predictions(staging, names[k.name], trainer, k, activations, forces, controls, actuators,
                                  fiber_lengths=fibers, write=write)
                steps["inference"] += written - step
                steps["writing"] += time.perf_counter() - written
            finishing = time.perf_counter()
            for files in pending:
                files.result()
            steps["writing"] += time.perf_counter() - finishing
        except BaseException:
            for files in pending:
                files.cancel()
            raise
    wall = time.perf_counter() - began
    n_frames = sum(len(k.time) for k in kinematics)
    return {"trials": len(trials), "files": sum(map(len, names.values())), "out": str(out),
            "preparation_s": round(preparation_s, 4),
            "throughput": _throughput(n_frames, wall, "analysed frames of this process's trials over the wall "
                                      "time from the first file read to the last file written: reading and "
                                      "filtering motions and loads, network, muscle module, writing the files; "
                                      "checkpoint loading (preparation_s) excluded", rank, world, steps)}


def infer(trainer, kinematics) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Activations, muscle forces (N) (n_frames, n_muscles), the actuator head's controls (n_frames,
    n_actuators; None without a head) and rigid-tendon fiber lengths (m) of one trial, float64 arrays: one
    network pass, and the muscle paths evaluated once (float32 muscle module)."""
    from .predict import rigid_tendon_fiber_lengths

    activations, controls = trainer.outputs(trainer.features(kinematics), kinematics.time)
    model = trainer.inference_muscle_model()
    device = model.max_isometric_force.device
    with torch.inference_mode():
        q = torch.as_tensor(kinematics.q, dtype=torch.float32, device=device)
        lengths, speeds = model.lengths_and_speeds(q, torch.as_tensor(kinematics.qd, dtype=torch.float32,
                                                                      device=device))
        forces = activations.to(device) * model.active_force(lengths, speeds)
    as_array = lambda t: t.cpu().numpy().astype(float)  # noqa: E731
    return (as_array(activations), as_array(forces), None if controls is None else as_array(controls),
            rigid_tendon_fiber_lengths(model, q, lengths))


def static_opt_manifest(model: str | Path, manifest: str | Path, *, out: str | Path, reserves: str | None = None,
                        lowpass: float | None = 6.0, step_interval: int = 1, force: bool = False,
                        device: str = "cpu", progress: bool = False) -> dict:
    """The fast Static Optimization solver on every trial of ``manifest`` (this process's share): writes
    ``<name>_StaticOptimization_force.sto`` and ``_activation.sto`` per trial into ``out``.

    The model description and the path polynomials (fitted around all trials' poses) are made once,
    OpenSim's inverse dynamics of all trials runs in one child process (cached per trial as
    :func:`~opensim_pinn.trial.prepare_trial` caches).
    """
    from tqdm import tqdm

    from .muscle import MusculoskeletalModel
    from .outputs import OutputFolder
    from .paths import load_or_fit_paths
    from .static_opt import activation_table, fast_static_optimization, force_table
    from .storage import write_storage
    from .trial import TrialSettings, load_kinematics, load_model_info, prepare_trials

    prepared = time.perf_counter()
    info = load_model_info(model, reserves)
    trials, rank, world = my_share(read_manifest(manifest))
    began = time.perf_counter()
    kinematics, settings = [], []
    for trial in trials:
        try:
            k = load_kinematics(info, trial.motion, trial.external_loads, start=trial.start, end=trial.end,
                                lowpass=lowpass, step_interval=step_interval)
        except InputError as error:
            raise _in_trial(trial, error) from None
        kinematics.append(k)
        loads = None if trial.external_loads is None else str(trial.external_loads)
        settings.append(TrialSettings(model=str(model), motion=str(trial.motion), reserves=reserves, external_loads=loads,
                                      start=float(k.time[0]) if trial.start is None else trial.start,
                                      end=float(k.time[-1]) if trial.end is None else trial.end,
                                      lowpass=lowpass, step_interval=step_interval))
    names = {t.name: [f"{t.name}_StaticOptimization_force.sto", f"{t.name}_StaticOptimization_activation.sto"]
             for t in trials}
    output = OutputFolder(out, [n for files in names.values() for n in files], force=force)
    output.check()
    reading = time.perf_counter() - began
    prepared_trials = prepare_trials(settings, info, kinematics)
    dynamics = time.perf_counter() - began - reading
    poses = np.concatenate([t.q for t in prepared_trials])
    fitted = time.perf_counter()
    polynomials = load_or_fit_paths(info.path, prepared_trials[0].coordinates, np.arange(len(poses), dtype=float),
                                    poses, [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)
    steps = {"reading": reading, "inverse_dynamics": dynamics, "path_polynomials": time.perf_counter() - fitted,
             "solve": 0.0, "writing": 0.0}
    converged = 0
    with output as staging:
        for trial, prepared_trial in tqdm(list(zip(trials, prepared_trials)), desc="static-opt", unit="trial",
                                          disable=not progress):
            step = time.perf_counter()
            result = fast_static_optimization(prepared_trial, info, muscle_model, device=device)
            converged += int(result.converged.sum())
            written = time.perf_counter()
            write_storage(staging / names[trial.name][0], force_table(result, trial.name))
            write_storage(staging / names[trial.name][1], activation_table(result, trial.name))
            steps["solve"] += written - step
            steps["writing"] += time.perf_counter() - written
    wall = time.perf_counter() - began
    n_frames = sum(len(t.time) for t in prepared_trials)
    return {"trials": len(trials), "files": 2 * len(trials), "out": str(out), "converged": converged,
            "preparation_s": round(began - prepared, 4),
            "throughput": _throughput(n_frames, wall, "analysed frames of this process's trials over the wall "
                                      "time from the first file read to the last file written: reading and "
                                      "filtering, OpenSim inverse dynamics (one child process, its start "
                                      "included; cached trials reused), path polynomials (cached per model and "
                                      "poses), solving, writing; model description (preparation_s) excluded",
                                      rank, world, steps)}
