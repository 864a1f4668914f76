"""Compare the network with OpenSim's own Static Optimization on the same trial.

:func:`compare` runs OpenSim Static Optimization (AnalyzeTool, in a child
process) and the network on the same frames, with the checkpoint's low-pass
cut-off, and writes ``metrics.json``, ``report.md`` and figures. The reserve and
residual actuator controls of the network's solution are SO's least-cost cover
of what the muscles leave of the inverse-dynamics forces
(:meth:`opensim_pinn.loss.PhysicsLoss.controls`), so the generalised forces of
muscles + actuators can be checked against inverse dynamics coordinate by coordinate.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .metrics import nrmse, r2, rmse
from .predict import INFERENCE_THREADS

log = logging.getLogger(__name__)

FIGURES = ("muscle_forces.png", "joint_torques.png", "training.png")
OUTPUTS = ("metrics.json", "report.md", *FIGURES)
TIME_TOLERANCE = 1e-5
"""Two frames are the same when their times differ by less than this (s)."""


def compare(checkpoint: str | Path, model: str | Path, motion: str | Path, external_loads: str | Path | None = None,
            *, reserves: str | None = None, start: float | None = None, end: float | None = None,
            step_interval: int = 1, out: str | Path, force: bool = False, device: str = "cpu",
            threads: int | None = INFERENCE_THREADS, lowpass: float | None = None) -> dict:
    """Run OpenSim Static Optimization and the network on one trial; write metrics, report and figures.

    Parameters
    ----------
    checkpoint : path
        Trained network (``checkpoint.pt``).
    model : path
        The model the network was trained for (the same muscles and coordinates).
    motion, external_loads : path
        The trial.
    reserves : path, "auto" or None
        Reserve/residual actuators for Static Optimization: the model's actuators with
        them must be the checkpoint's (names, classes, optimal forces, control bounds).
    start, end : float, optional
        Time window (s).
    step_interval : int
        Compare on every N-th frame (OpenSim's ``step_interval``).
    out : path
        Output folder: ``metrics.json``, ``report.md``, ``muscle_forces.png``,
        ``joint_torques.png``, ``training.png``.
    force : bool
        Replace existing output files.
    device : "cpu" or "cuda"
        Where the network and the muscle module run.
    threads : int or None
        CPU threads torch uses for the timed inference (default 1, see
        :data:`opensim_pinn.predict.INFERENCE_THREADS`); ``None``: torch's setting.
    lowpass : float, optional
        The low-pass cut-off (Hz) the caller expects (a setup file's); the checkpoint's
        is always used, and a different one here is an error.

    Returns
    -------
    dict
        ``files``, ``report``, ``summary``, ``timing_s``, ``speedup``.
    """
    from .child import run_in_child
    from .outputs import OutputFolder
    from .predict import check_actuators_match, check_model_matches, timed_inference
    from .static_opt import check_covered, opensim_static_optimization
    from .trainer import Trainer
    from .trial import TrialSettings, load_kinematics, load_model_info, prepare_trial

    trainer = Trainer.load(checkpoint, device=device)
    output = OutputFolder(out, list(OUTPUTS), force=force)
    output.check()
    info = load_model_info(model, reserves)
    check_model_matches(trainer, info, model, checkpoint)
    check_actuators_match(trainer, info, reserves, checkpoint)
    if lowpass is not None and not _same_lowpass(lowpass, trainer.lowpass):
        raise InputError(f"the setup's low-pass cut-off {lowpass:g} Hz is not the checkpoint's "
                         f"({_lowpass_text(trainer.lowpass)}), which compare filters with; give a setup with the "
                         "checkpoint's, or train with this one")
    lowpass = trainer.lowpass
    began = time.perf_counter()
    kinematics = load_kinematics(info, motion, external_loads, start=start, end=end, lowpass=lowpass,
                                 step_interval=step_interval)
    read_s = time.perf_counter() - began
    trainer.check_kinematics(kinematics)
    first, last = float(kinematics.time[0]), float(kinematics.time[-1])
    loads = None if external_loads is None else str(external_loads)
    settings = TrialSettings(model=str(model), motion=str(motion), external_loads=loads,
                             reserves=None if reserves is None else str(reserves), start=start, end=end,
                             lowpass=lowpass, step_interval=step_interval)
    check_covered(info, settings, kinematics)  # OpenSim's SO has no solution otherwise
    trial, info = prepare_trial(settings, info=info, kinematics=kinematics)
    log.info("compare: running OpenSim Static Optimization (%d frames)", len(trial.time))
    so = run_in_child("OpenSim static optimization", opensim_static_optimization, str(model), str(motion), loads,
                      None if reserves is None else str(reserves), start if start is not None else first,
                      end if end is not None else last, lowpass, step_interval)
    rows, so_rows = _matching_frames(trial.time, so.time)
    frames = _subset(trial, rows)

    activations, forces, inference = timed_inference(trainer, frames, threads=threads)
    inference_s = inference.median_s
    muscles = list(trainer.muscles)
    columns = [so.labels.index(m) for m in muscles]
    so_forces, so_activations = so.forces[so_rows][:, columns], so.activations[so_rows][:, columns]
    muscle_r2, muscle_nrmse, muscle_rmse = r2(so_forces, forces), nrmse(so_forces, forces), rmse(so_forces, forces)
    activation_r2 = r2(so_activations, activations)

    tau, by_muscles, by_actuators, controls = _generalized_forces(trainer, frames, activations)
    residual_rms = np.sqrt(np.mean((tau - by_muscles - by_actuators) ** 2, axis=0))
    actuators = {}
    optimal = {a.name: a.optimal_force for a in info.actuators}
    for a, name in enumerate(frames.actuators):
        if name in so.labels:
            reference = so.forces[so_rows][:, so.labels.index(name)]
            actuators[name] = {"rmse": float(rmse(reference, controls[:, a] * optimal[name])),
                               "rms_opensim": float(np.sqrt(np.mean(reference ** 2)))}

    finite = np.isfinite(muscle_nrmse)
    summary = {"median_r2": float(np.median(muscle_r2)), "mean_r2": float(np.mean(muscle_r2)),
               "mean_nrmse": float(np.mean(muscle_nrmse[finite])) if finite.any() else None,
               "median_activation_r2": float(np.median(activation_r2))}
    timing = {"opensim_static_optimization": so.wall_s, "network_inference": inference_s,
              "network_end_to_end": read_s + inference_s, "network_inference_spread": inference.to_dict()}
    units = {c.name: ("N m" if c.motion_type == "rotational" else "N") for c in info.coordinates}
    from .plots import heel_strikes

    gait = heel_strikes(frames.time, list(frames.grf_labels), frames.grf)
    forces_outputs = trainer.config.outputs == "forces"
    metrics = {
        "trial": kinematics.name, "model": str(Path(model).resolve()), "checkpoint": str(Path(checkpoint).resolve()),
        "outputs": trainer.config.outputs,
        "n_frames": len(rows), "n_muscles": len(muscles), "lowpass_hz": lowpass, "step_interval": step_interval,
        "muscles": {m: {"r2": float(muscle_r2[i]), "nrmse": _number(muscle_nrmse[i]), "rmse": float(muscle_rmse[i]),
                        "activation_r2": float(activation_r2[i])} for i, m in enumerate(muscles)},
        "summary": summary,
        "torque_residual": {c: float(residual_rms[i]) for i, c in enumerate(frames.coordinates)},
        "torque_residual_units": {c: units[c] for c in frames.coordinates},
        "actuators": actuators,
        "gait_cycle": None if gait is None else {"force": gait.force, "heel_strikes_s": gait.heel_strikes},
        "timing_s": timing,
        "speedup": so.wall_s / inference_s,
        "notes": {
            "forces": "muscle forces (N) of the network vs OpenSim Static Optimization on the same frames",
            "nrmse": "RMSE divided by the range of OpenSim's force for that muscle; NaN (null) where the range is 0",
            "torque_residual": "RMS over frames of inverse dynamics minus the generalised forces of the network's "
                               "muscles and of the least-cost actuator controls",
            "opensim_static_optimization": so.timing_note,
            "network_inference": "the whole trial through the network and the muscle module (paths, force-length-"
                                 "velocity)" + (", and Static Optimization solved per frame for the network's forces"
                                                if forces_outputs else "")
                                 + f": {inference.protocol()}",
            "network_end_to_end": "network_inference plus reading and filtering the motion and loads files",
        },
    }
    with output as staging:
        from .plots import plot_muscle_forces, plot_torque_tracking, plot_training_history

        plot_muscle_forces(frames.time, muscles, so_forces, forces, staging / FIGURES[0], r2=muscle_r2, gait=gait)
        plot_torque_tracking(frames.time, frames.coordinates, tau, by_muscles, by_muscles + by_actuators,
                             staging / FIGURES[1], units=[units[c] for c in frames.coordinates], gait=gait)
        plot_training_history(trainer.history or [{"epoch": 0, "total": np.nan, "dynamics": np.nan,
                                                   "performance": np.nan, "boundary": np.nan}],
                              staging / FIGURES[2], title="training: least-squares fit of the forces of motion"
                              if forces_outputs else "training: physics-informed loss terms")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        (staging / "report.md").write_text(format_report(metrics, trainer, model, motion, external_loads, reserves))
    return {"files": [str(Path(out) / n) for n in OUTPUTS], "report": str(Path(out) / "report.md"),
            "summary": summary, "timing_s": timing, "speedup": metrics["speedup"]}


def _spread_ms(timing: dict) -> str:
    spread = timing.get("network_inference_spread") or {}
    if "min_s" not in spread:
        return "spread not measured"
    return (f"{1000 * spread['min_s']:.2f}-{1000 * spread['max_s']:.2f} ms over {spread['repeats']} runs, "
            f"{spread['threads'] or 'default'} thread(s)")


def _same_lowpass(a: float | None, b: float | None) -> bool:
    """Two cut-offs filter alike: equal, or both no filtering (None or negative)."""
    off = lambda x: x is None or x < 0  # noqa: E731
    return (off(a) and off(b)) or (not off(a) and not off(b) and abs(a - b) < 1e-9)


def _lowpass_text(value: float | None) -> str:
    return "no filtering" if value is None or value < 0 else f"{value:g} Hz"


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _matching_frames(times: np.ndarray, so_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the frames shared by the trial and OpenSim's SO output (matched by time)."""
    distance = np.abs(times[:, None] - so_times[None, :])
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(times)), nearest] < TIME_TOLERANCE
    if close.sum() < 2:
        raise InputError(f"OpenSim Static Optimization returned frames {so_times[0]:g}-{so_times[-1]:g} s that do "
                         f"not match the trial's ({times[0]:g}-{times[-1]:g} s)")
    if close.sum() < len(times):
        log.warning("compare: %d of %d frames have no OpenSim SO result; compared on the others",
                    len(times) - close.sum(), len(times))
    rows = np.flatnonzero(close)
    return rows, nearest[rows]


def _subset(trial, rows: np.ndarray):
    from dataclasses import replace

    return replace(trial, time=trial.time[rows], q=trial.q[rows], qd=trial.qd[rows], qdd=trial.qdd[rows],
                   grf=trial.grf[rows], loads=trial.loads[rows], tau=trial.tau[rows],
                   actuator_map=trial.actuator_map[rows])


def _generalized_forces(trainer, trial, activations: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse dynamics, and the muscle and least-cost actuator generalised forces of the network's
    ``activations`` (n_frames, n_muscles), each (n_frames, n_coordinates).

    Also returns the actuator controls, (n_frames, n_actuators).
    """
    targets = trainer.targets(trial)
    activations = torch.as_tensor(activations, dtype=torch.float64)
    with torch.no_grad():
        controls, _ = trainer.loss().controls(activations, targets)
        by_muscles = (targets.muscle_matrix @ activations.unsqueeze(-1)).squeeze(-1)
        by_actuators = torch.einsum("tac,ta->tc", torch.as_tensor(trial.actuator_map, dtype=torch.float64),
                                    controls)
    return trial.tau, by_muscles.numpy(), by_actuators.numpy(), controls.numpy()


def format_report(metrics: dict, trainer, model, motion, external_loads, reserves) -> str:
    """The human-readable ``report.md`` of a comparison."""
    s, t = metrics["summary"], metrics["timing_s"]
    nrmse_text = "n/a" if s["mean_nrmse"] is None else f"{100 * s['mean_nrmse']:.1f} %"
    trained_on = ", ".join(Path(x.get("motion", "?")).name for x in (trainer.trial_settings or [])) or "?"
    forces_outputs = trainer.config.outputs == "forces"
    how = (f"outputs `forces`: the generalised forces of motion, fitted for {len(trainer.history)} epochs to the "
           f"inverse dynamics of {trained_on}; activations from Static Optimization solved per frame for them"
           if forces_outputs else f"outputs `{trainer.config.outputs}`, trained label-free for "
           f"{len(trainer.history)} epochs on: {trained_on}")
    lines = [
        f"# opensim-pinn: network vs OpenSim Static Optimization, trial `{metrics['trial']}`", "",
        "## Setup", "",
        f"- Model: `{model}` ({metrics['n_muscles']} muscles, {len(metrics['torque_residual'])} unlocked coordinates)",
        f"- Motion: `{motion}`; external loads: `{external_loads or 'none'}`; reserves: `{reserves or 'none'}`",
        f"- Frames compared: {metrics['n_frames']}; coordinates low-pass filtered at "
        f"{'no filter' if metrics['lowpass_hz'] in (None, -1) else str(metrics['lowpass_hz']) + ' Hz'} "
        "(the same for both)",
        f"- Network: `{metrics['checkpoint']}`, architecture `{trainer.config.network.architecture}`, {how}",
        "- Reference: OpenSim Static Optimization (AnalyzeTool; activation exponent 2, muscle physiology on)", "",
        "## Summary", "",
        "| measure | value |", "|---|---|",
        f"| median R² of muscle forces | {s['median_r2']:.4f} |",
        f"| mean R² of muscle forces | {s['mean_r2']:.4f} |",
        f"| mean NRMSE of muscle forces | {nrmse_text} |",
        f"| median R² of activations | {s['median_activation_r2']:.4f} |",
        f"| OpenSim Static Optimization | {t['opensim_static_optimization']:.3f} s |",
        f"| network inference (network + muscle model{' + SO solve' if forces_outputs else ''}, warm; median, "
        f"min-max) | {1000 * t['network_inference']:.2f} "
        f"ms ({_spread_ms(t)}) |",
        f"| network end to end (reading and filtering the files too) | {1000 * t['network_end_to_end']:.1f} ms |",
        f"| speedup (SO time / network inference) | {metrics['speedup']:.0f}x |", "",
        "## What the numbers mean", "",
        "- **R²** compares each muscle's force over the trial with OpenSim's: 1 is identical, 0 is no better than "
        "OpenSim's mean force. It can be very negative for a muscle that OpenSim keeps at its minimum "
        "activation all trial: its force barely varies, so tiny differences dominate (look at its RMSE).",
        "- **NRMSE** is the root-mean-square difference divided by the range of OpenSim's force (the paper's "
        "normalisation).",
        "- **Torque residual** is what neither the network's muscles nor the reserve/residual actuators supply of "
        "the inverse-dynamics generalised forces. The actuator controls are the least-cost cover of what the "
        "muscles leave, exactly as Static Optimization's actuators; it is zero where every coordinate has an "
        "actuator, and measures how well the muscles alone balance the others.",
        "- **Timing**: OpenSim's time covers its whole run (model loading, filtering, inverse dynamics, one "
        "optimisation per frame). The network's inference covers the whole trial through the network and the "
        "muscle module" + (" and the per-frame Static Optimization of the network's forces" if forces_outputs else "")
        + "; reading and filtering the files is in the end-to-end time. "
        f"Protocol: {metrics['notes']['network_inference'].split(': ', 1)[-1]}.", "",
        "## Muscles", "",
        "| muscle | R² force | NRMSE | RMSE (N) | R² activation |", "|---|---|---|---|---|",
    ]
    for name, m in metrics["muscles"].items():
        value = "n/a" if m["nrmse"] is None else f"{100 * m['nrmse']:.1f} %"
        lines.append(f"| {name} | {m['r2']:.4f} | {value} | {m['rmse']:.2f} | {m['activation_r2']:.4f} |")
    lines += ["", "## Joint balance", "", "| coordinate | RMS residual |", "|---|---|"]
    for name, value in metrics["torque_residual"].items():
        lines.append(f"| {name} | {value:.4g} {metrics['torque_residual_units'][name]} |")
    if metrics["actuators"]:
        lines += ["", "| actuator | RMSE vs OpenSim | OpenSim RMS |", "|---|---|---|"]
        for name, a in metrics["actuators"].items():
            lines.append(f"| {name} | {a['rmse']:.4g} | {a['rms_opensim']:.4g} |")
    gait = metrics.get("gait_cycle")
    axis = ("time (s) below; % gait cycle above, from the heel strikes of "
            f"`{gait['force']}` (vertical ground reaction force rising through the contact threshold) at "
            + ", ".join(f"{t:.2f}" for t in gait["heel_strikes_s"]) + " s (dotted lines)"
            if gait else "time (s) (no two heel strikes of one foot in the ground reaction forces, so no % gait "
            "cycle axis)")
    lines += ["", "## Figures", "",
              f"- `muscle_forces.png`: each muscle's force, OpenSim Static Optimization vs the network; {axis}.",
              "- `joint_torques.png`: inverse dynamics vs the network's muscles, and muscles + actuators.",
              "- `training.png`: the loss terms during training, and below them the learning rate and the "
              "damping.", "",
              "![muscle forces](muscle_forces.png)", "", "![joint torques](joint_torques.png)", "",
              "### Training", "", "![training](training.png)", "", TRAINING_SHAPE_FORCES if forces_outputs
              else TRAINING_SHAPE, ""]
    return "\n".join(lines)


TRAINING_SHAPE = (
    "How to read the training curve. The loss is Static Optimization's objective (mean per frame): the "
    "*performance* term Σa² and the *dynamics* term, the cost of the reserve controls that cover what the "
    "muscles leave of the inverse-dynamics forces. Its shape follows the schedule of `opensim_pinn.trainer`: "
    "(1) during the warm-up (the first 5 % of epochs) the learning rate rises linearly, and with a damping of "
    "1 each step is a diagonally scaled gradient step, so the loss falls steadily from the random start; "
    "(2) over the first half the Levenberg-Marquardt damping falls geometrically from 1 to 1e-6: the steps "
    "turn into Gauss-Newton steps on the stiff dynamics constraint and the dynamics term drops by orders of "
    "magnitude, with bumps where the steps grow faster than the curvature allows, while the performance "
    "term first rises (muscle effort buys the balance) and then falls once the damping is small enough for "
    "the steps to trade effort between muscles; (3) in the second half "
    "the damping stays at its floor while the learning rate, on a cosine decay since the warm-up, goes to "
    "zero, and the curve flattens onto a plateau: the per-frame minimum, where the performance term is SO's "
    "muscle effort and "
    "the dynamics term what the reserves must supply. A curve still falling at the end means more epochs "
    "would help; a plateau means the network has converged to SO's answer.")

TRAINING_SHAPE_FORCES = (
    "How to read the training curve. With `--outputs forces` the loss is a least-squares fit: the mean squared "
    "error of the network's generalised forces of motion against the training trials' inverse dynamics (less "
    "the loads' part, which is computed exactly), in units of each coordinate's RMS (*dynamics*, equal to "
    "*total*; no performance or boundary term). The learning rate rises over the first 5 % of epochs and then "
    "decays on a cosine to zero; the damping curve plays no part in this fit. A plateau means the fit on the "
    "training frames is as good as the network makes it; the activations then come from Static Optimization "
    "of each frame, so they are SO's answer up to the error of those forces.")
