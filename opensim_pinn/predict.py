"""Predict muscle activations and forces of a new trial with a trained checkpoint.

Without the model, only files are read: the checkpoint carries the network, the
input normalisation, the muscle module (parameters and path polynomials) and the
model's names, so no OpenSim run is needed. The motion is filtered with the
training trials' low-pass cut-off, as Static Optimization would filter it.

The reserve/residual actuator columns come from the network's actuator head
(trained to output the least-cost controls for its own activations, see
:mod:`opensim_pinn.trainer`). With ``model`` (and the ``reserves`` of training),
OpenSim computes the trial's inverse dynamics (in a child process) and the
actuator columns are instead the *exact* least-cost controls for the predicted
activations (:meth:`opensim_pinn.loss.PhysicsLoss.controls`), as Static
Optimization's would be: muscles + actuators then reproduce inverse dynamics.

Outputs (in OpenSim's formats):

- ``<trial>_forces.sto``: muscle forces (N), then each reserve/residual actuator's
  force (control x optimal force, N or N m): the columns, names and order of
  OpenSim's ``<name>_StaticOptimization_force.sto`` less the external loads'
  records, so it replaces SO's file wherever OpenSim reads one, for example the
  JointReaction analysis's ``forces_file`` with the model and the same ForceSet as SO.
- ``<trial>_activations.sto``: activations, then actuator controls, layout of
  ``_StaticOptimization_activation.sto``.
- ``<trial>_states.sto``: an OpenSim 4 states table: ``/jointset/<joint>/<coordinate>/value``
  and ``/speed`` of every coordinate (locked ones at their default value, speed 0),
  ``/forceset/<muscle>/activation`` and, for muscles whose model has that state,
  ``/forceset/<muscle>/fiber_length`` (rigid tendon, as SO assumes). The OpenSim
  GUI plays it with the muscles coloured by activation.
- ``<trial>_physics_check.sto`` (with ``model`` only), per frame:
  ``<coordinate>_residual``, what neither the muscles nor the actuators supply of
  the inverse-dynamics force (N m or N; 0 where an actuator acts on the
  coordinate); ``objective``, Static Optimization's objective (sum of squared
  activations and controls) of the written solution, plus the residuals squared
  (charged as reserves of 1 N m or N, as the training loss does); ``optimum``, the least
  objective (the project's exact SO solver on the same frame); ``gap`` =
  objective - optimum (0 at SO's answer); and ``control_head_error``, the RMS over
  actuators of the actuator head's controls minus the exact ones (what the file
  written without the model would be off by).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .storage import FLOAT32_DIGITS, StorageTable, storage_bytes, write_atomically

log = logging.getLogger(__name__)

INFERENCE_REPEATS = 21
"""Timed runs of the network and the muscle module (their median is reported), after one warm-up run."""
INFERENCE_TIME_BUDGET_S = 2.0
"""The timed runs stop early once they have taken this long (after at least 3): a forces checkpoint's
per-frame Static Optimization takes about 0.3 s per run on a 1,500-frame, 92-muscle trial."""
INFERENCE_THREADS = 1
"""CPU threads torch uses for timed inference by default. The work is small: with two threads
they wait for each other at every operation, which on a busy machine made inference 20-60 times
slower (168-468 ms against 7.6 ms on one thread, 2 cores shared); one thread is within 20 % of two
on an idle machine and stable under load."""


@dataclass
class InferenceTiming:
    """How long the whole trial took through the network and the muscle module (s), and how it was timed.

    ``median_s`` is the reported time; ``min_s`` and ``max_s`` the spread over ``repeats`` warm runs
    (one untimed warm-up run before them), on ``threads`` CPU threads (``None``: torch's setting).
    """

    median_s: float
    min_s: float
    max_s: float
    repeats: int
    threads: int | None
    device: str = "cpu"

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def protocol(self) -> str:
        """One sentence stating the protocol, for reports and JSON notes."""
        threads = "torch's default number of" if self.threads is None else str(self.threads)
        return (f"one warm-up run, then {self.repeats} timed runs on {threads} CPU thread(s) ({self.device}); "
                "median reported, min and max give the spread")


def predict(checkpoint: str | Path, motion: str | Path, external_loads: str | Path | None = None, *,
            out: str | Path, start: float | None = None, end: float | None = None, force: bool = False,
            device: str = "cpu", threads: int | None = INFERENCE_THREADS, model: str | Path | None = None,
            reserves: str | None = None) -> dict:
    """Write the activations, forces and states of ``motion`` predicted by ``checkpoint``.

    Parameters
    ----------
    checkpoint : path
        ``checkpoint.pt`` written by :func:`opensim_pinn.train.train_network`.
    motion : path
        Inverse-kinematics motion of the same model.
    external_loads : path, optional
        ExternalLoads file, required when the network was trained with ground reaction forces.
    out : path
        Output folder.
    start, end : float, optional
        Time window (s).
    force : bool
        Replace existing output files.
    device : "cpu" or "cuda"
        Where the network and the muscle module run.
    threads : int or None
        CPU threads torch uses for inference (default 1, see :data:`INFERENCE_THREADS`);
        ``None``: torch's setting.
    model : path, optional
        The model the checkpoint was trained on: inverse dynamics gives the exact
        actuator controls and the physics check (see the module docstring).
    reserves : path or "auto", optional
        With ``model``: the reserve/residual actuators of training.

    Returns
    -------
    dict
        ``files``, ``n_frames``, ``muscles``, ``actuators``, ``timing_s`` (``inference``:
        warm median of the network and muscle module on the whole trial; ``inference_spread``:
        min, max, repeats, threads; ``end_to_end``: reading and filtering the files too); with
        ``model``, ``physics_check`` (the largest residual and objective gap over the frames).
    """
    from .outputs import OutputFolder
    from .trainer import Trainer
    from .trial import load_kinematics, load_model_info

    if reserves is not None and model is None:
        raise InputError("--reserves needs --model: the reserve actuators enter through the model's inverse dynamics")
    trainer = Trainer.load(checkpoint, device=device)
    info = trainer.info
    if model is not None:
        info = load_model_info(model, reserves)
        check_model_matches(trainer, info, model, checkpoint)
        check_actuators_match(trainer, info, reserves, checkpoint, command="predict")
    began = time.perf_counter()
    kinematics = load_kinematics(info, motion, external_loads, start=start, end=end,
                                 lowpass=trainer.lowpass, checkpoint=None if model is not None else checkpoint)
    trainer.check_kinematics(kinematics)  # before the output check: every input error comes first
    read_s = time.perf_counter() - began
    name = kinematics.name
    names = prediction_files(name, physics_check=model is not None)
    output = OutputFolder(out, names, force=force)
    output.check()
    activations, forces, timing = timed_inference(trainer, kinematics, threads=threads)
    inference_s = timing.median_s
    head = trainer.controls(trainer.features(kinematics), kinematics.time)
    head = None if head is None else head.cpu().numpy().astype(float)
    actuators = list(trainer.actuators)
    check = None
    if model is not None:
        controls, check = exact_controls(trainer, info, kinematics, activations, head, model=model,
                                         motion=motion, external_loads=external_loads, reserves=reserves,
                                         start=start, end=end)
    else:
        controls, actuators = network_controls(trainer, head, len(kinematics.time), checkpoint)
    with output as staging:
        write_predictions(staging, names, trainer, kinematics, activations, forces, controls, actuators, check)
    summary = {"files": [str(Path(out) / n) for n in names], "n_frames": len(kinematics.time),
               "muscles": len(trainer.muscles), "actuators": len(actuators),
               "actuator_controls": "none" if not actuators else "exact (inverse dynamics)" if model is not None
               else "solved (Static Optimization of the network's forces)" if trainer.config.outputs == "forces"
               else "network",
               "timing_s": {"inference": round(inference_s, 6), "end_to_end": round(read_s + inference_s, 6),
                            "inference_spread": timing.to_dict(),
                            "includes": "inference: network and muscle module on the whole trial"
                                        + (" and Static Optimization solved per frame for the network's forces"
                                           if trainer.config.outputs == "forces" else "") + ", "
                                        f"{timing.protocol()}; end_to_end adds reading and filtering the files"}}
    if check is not None:
        column = {label: check.data[:, i] for i, label in enumerate(check.labels)}
        residuals = [check.data[:, i] for i, label in enumerate(check.labels) if label.endswith("_residual")]
        summary["physics_check"] = {
            "max_residual": float(np.abs(np.column_stack(residuals)).max()) if residuals else 0.0,
            "max_gap": float(np.nanmax(column["gap"])), "median_gap": float(np.nanmedian(column["gap"])),
            "median_optimum": float(np.nanmedian(column["optimum"]))}
    return summary


def network_controls(trainer, head: np.ndarray | None, n_frames: int, checkpoint) -> tuple[np.ndarray, list[str]]:
    """The actuator columns written without the model: the actuator head's controls (n_frames, n_actuators)
    and the actuators' names; none (with a warning) for a checkpoint written before the head existed."""
    actuators = list(trainer.actuators)
    if head is not None or not actuators:
        return (head if head is not None else np.zeros((n_frames, 0))), actuators
    log.warning("%s: this checkpoint has no actuator outputs (written before opensim-pinn had them): the forces "
                "file holds the muscles only, not the actuators %s that Static Optimization's has; give --model "
                "(and --reserves) for them, or train again", checkpoint, ", ".join(actuators))
    return np.zeros((n_frames, 0)), []


def write_predictions(folder: Path, names: list[str], trainer, kinematics, activations: np.ndarray,
                      forces: np.ndarray, controls: np.ndarray, actuators: list[str],
                      check: StorageTable | None = None, fiber_lengths: np.ndarray | None = None,
                      write=write_atomically) -> None:
    """Write :func:`prediction_files` ``names`` of one trial into ``folder``: muscle ``activations`` and
    ``forces`` (n_frames, n_muscles), actuator ``controls`` (n_frames, n_actuators) of ``actuators``
    (forces = control x optimal force), the physics check table and the ``fiber_lengths`` when given.

    The network's outputs (activations, muscle forces, the actuator head's controls) are float32 numbers:
    they are written with :data:`~opensim_pinn.storage.FLOAT32_DIGITS` digits; the exact controls (with the
    physics check, float64) and coordinates with 17. ``write(path, content)`` writes each file's bytes
    (:func:`~opensim_pinn.storage.write_atomically`; a function that hands them to a writer thread)."""
    from .static_opt import StaticOptimizationResult, activation_table, force_table

    optimal = {a.name: a.optimal_force for a in trainer.info.actuators}
    actuator_forces = controls * np.array([optimal[a] for a in actuators])
    result = StaticOptimizationResult(time=kinematics.time, labels=list(trainer.muscles) + actuators,
                                      activations=np.hstack([activations, controls]),
                                      forces=np.hstack([forces, actuator_forces]),
                                      converged=np.ones(len(kinematics.time), bool))
    digits = [FLOAT32_DIGITS] * len(trainer.muscles) + [17 if check is not None else FLOAT32_DIGITS] * len(actuators)
    write(folder / names[0], storage_bytes(force_table(result, kinematics.name), digits=digits))
    write(folder / names[1], storage_bytes(activation_table(result, kinematics.name), digits=digits))
    states = states_table(trainer, kinematics, activations, fiber_lengths)  # coordinates float64, muscles float32
    muscle_state = [label.endswith(("/activation", "/fiber_length")) for label in states.labels]
    write(folder / names[2], storage_bytes(states, digits=[FLOAT32_DIGITS if m else 17 for m in muscle_state]))
    if check is not None:
        write(folder / names[3], storage_bytes(check))


def prediction_files(trial: str, *, physics_check: bool = False) -> list[str]:
    """The files :func:`predict` writes for a trial named ``trial``: forces, activations, states
    (and the physics check, with the model)."""
    names = [f"{trial}_forces.sto", f"{trial}_activations.sto", f"{trial}_states.sto"]
    return names + [f"{trial}_physics_check.sto"] if physics_check else names


def check_actuators_match(trainer, info, reserves, checkpoint, *, command: str = "compare") -> None:
    """Raise :class:`InputError` unless the model's actuators with ``reserves`` (``info``) are the checkpoint's.

    Compared: names, classes, optimal forces, control bounds and coordinates.
    """
    def described(actuators):
        return [(a.name, a.actuator_class, a.optimal_force, a.min_control, a.max_control, a.coordinate)
                for a in actuators]

    trained, here = described(trainer.info.actuators), described(info.actuators)
    if trained == here:
        return
    used = {str(t.get("reserves")) for t in trainer.trial_settings or []}
    trained_with = ("no reserves" if used == {"None"} else f"reserves {', '.join(sorted(used))}" if used else "")
    differ = next((f"; first difference: {a[0]} (optimal force {a[2]:g}, controls {a[3]:g} to {a[4]:g}) vs "
                   f"{b[0]} ({b[2]:g}, {b[3]:g} to {b[4]:g})" for a, b in zip(trained, here) if a != b), "")
    if used == {"auto"}:
        fix = "give --reserves auto"
    elif used == {"None"}:
        fix = "leave out --reserves"
    else:
        fix = "give the reserves it was trained with"
    raise InputError(f"the checkpoint {checkpoint} was trained with {len(trained)} actuators ({trained_with}: "
                     f"{_names(trained)}); this {command} has {len(here)} "
                     f"({'no --reserves' if reserves is None else f'--reserves {reserves}'}: {_names(here)}){differ}; "
                     f"{fix}")


def _names(actuators, shown: int = 4) -> str:
    names = [a[0] for a in actuators]
    return "none" if not names else ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def exact_controls(trainer, info, kinematics, activations: np.ndarray, head: np.ndarray | None, *, model, motion,
                   external_loads, reserves, start, end) -> tuple[np.ndarray, StorageTable]:
    """The least-cost actuator controls (n_frames, n_actuators) for ``activations`` (n_frames, n_muscles),
    from the trial's inverse dynamics (OpenSim, child process), and the physics check table."""
    from .static_opt import fast_static_optimization
    from .trial import TrialSettings, prepare_trial

    settings = TrialSettings(model=str(model), motion=str(motion),
                             external_loads=None if external_loads is None else str(external_loads),
                             reserves=None if reserves is None else str(reserves), start=start, end=end,
                             lowpass=trainer.lowpass)
    trial, _ = prepare_trial(settings, info=info, kinematics=kinematics)
    targets = trainer.targets(trial)
    a = torch.as_tensor(activations, dtype=torch.float64)
    loss = trainer.loss()
    with torch.no_grad():
        controls, uncovered = loss.controls(a, targets)
    controls, uncovered = controls.numpy(), uncovered.numpy()
    # The network's loss per frame (dynamics + performance): SO's objective, plus what no actuator covers.
    objective = ((activations ** 2).sum(1) + (controls ** 2).sum(1)
                 + ((uncovered / loss.uncovered_reserve) ** 2).sum(1))
    try:  # refused when some coordinate has neither muscle nor actuator
        optimum_solution = fast_static_optimization(trial, info, trainer.muscle_model)
        optimum = (optimum_solution.activations ** 2).sum(1)
        optimum[~optimum_solution.converged] = np.nan
    except InputError as reason:
        log.warning("predict: no Static Optimization optimum for the physics check (%s)", reason)
        optimum = np.full(len(trial.time), np.nan)
    labels = [f"{c}_residual" for c in trial.coordinates] + ["objective", "optimum", "gap"]
    columns = [uncovered, objective[:, None], optimum[:, None], (objective - optimum)[:, None]]
    if head is not None and controls.shape[1]:
        labels.append("control_head_error")
        columns.append(np.sqrt(np.mean((head - controls) ** 2, axis=1))[:, None])
    table = StorageTable(name=f"{kinematics.name}_physics_check", labels=labels, time=trial.time,
                         data=np.hstack(columns), in_degrees=False,
                         comments=["Written by opensim-pinn predict: per frame, the generalised force (N m or N) "
                                   "that neither the predicted muscles nor the least-cost actuators supply of "
                                   "inverse dynamics; Static Optimization's objective (sum of squared activations "
                                   "and controls) of the prediction, its optimum, and the gap; the RMS error of "
                                   "the network's own actuator controls."])
    return controls, table


def timed_inference(trainer, kinematics, *, repeats: int = INFERENCE_REPEATS,
                    threads: int | None = INFERENCE_THREADS) -> tuple[np.ndarray, np.ndarray, InferenceTiming]:
    """Activations and muscle forces of a trial, and how long computing them took (see :class:`InferenceTiming`).

    The timed work is the whole trial through the network and the muscle module:
    normalisation, network, activation bounds, muscle-tendon paths and forces, on
    ``threads`` CPU threads (torch's setting is restored after); ``repeats`` runs, or fewer (3 at
    least) once they have taken :data:`INFERENCE_TIME_BUDGET_S`.
    """
    from .trainer import torch_threads

    if threads is not None and threads < 1:
        raise InputError(f"--threads must be 1 or more, got {threads}")

    def run():
        activations = trainer.activations(trainer.features(kinematics), kinematics.time)
        return activations.cpu().numpy().astype(float), trainer.muscle_forces(kinematics, activations)

    with torch_threads(threads):
        trainer.predict(kinematics)  # checks the trial; also the warm-up run
        times = []
        for _ in range(max(1, repeats)):
            began = time.perf_counter()
            activations, forces = run()
            times.append(time.perf_counter() - began)
            if len(times) >= 3 and sum(times) > INFERENCE_TIME_BUDGET_S:
                break
    device = str(next(trainer.network.parameters()).device)
    return activations, forces, InferenceTiming(median_s=statistics.median(times), min_s=min(times),
                                                max_s=max(times), repeats=len(times), threads=threads,
                                                device=device)


def states_table(trainer, kinematics, activations: np.ndarray, fiber_lengths: np.ndarray | None = None
                 ) -> StorageTable:
    """OpenSim 4 states of a predicted trial (see the module docstring), radians, ``inDegrees=no``.

    ``fiber_lengths`` (n_frames, n_muscles), m: :func:`rigid_tendon_fiber_lengths`, computed here if not given.
    """
    state_names = set(getattr(trainer, "state_variables", None) or [])
    owners = _state_owners(state_names)
    n_frames = len(kinematics.time)
    labels, columns = [], []
    for coordinate in trainer.info.coordinates:
        prefix = (owners.get((coordinate.name, "value"))
                  or f"/jointset/{coordinate.joint}/{coordinate.name}")
        if coordinate.name in kinematics.coordinates:
            i = kinematics.coordinates.index(coordinate.name)
            value, speed = kinematics.q[:, i], kinematics.qd[:, i]
        else:
            value, speed = np.full(n_frames, coordinate.default_value), np.zeros(n_frames)
        labels += [f"{prefix}/value", f"{prefix}/speed"]
        columns += [value, speed]
    if fiber_lengths is None:
        fiber_lengths = rigid_tendon_fiber_lengths(trainer.inference_muscle_model(), kinematics.q)
    by_name = {m.name: m for m in trainer.info.muscles}
    for m, muscle in enumerate(trainer.muscles):
        prefix = (owners.get((muscle, "activation")) or owners.get((muscle, "fiber_length"))
                  or f"/forceset/{muscle}")
        labels.append(f"{prefix}/activation")
        columns.append(activations[:, m])
        has_fiber = (f"{prefix}/fiber_length" in state_names if state_names
                     else by_name[muscle].muscle_class in ("Millard2012EquilibriumMuscle", "Thelen2003Muscle"))
        if has_fiber:
            labels.append(f"{prefix}/fiber_length")
            columns.append(fiber_lengths[:, m])
    return StorageTable(name=f"{kinematics.name}_states", labels=labels, time=kinematics.time,
                        data=np.column_stack(columns), in_degrees=False,
                        comments=["Written by opensim-pinn: coordinates filtered as OpenSim's tools do, muscle "
                                  "activations predicted by the network, fiber lengths with a rigid tendon."])


def _state_owners(state_names: set[str]) -> dict[tuple[str, str], str]:
    """(component name, state) -> path of the component that owns that state, among the model's state names
    (``/forceset/soleus_r/activation`` -> ``("soleus_r", "activation"): "/forceset/soleus_r"``); for a name
    that two components share, the first one met."""
    owners = {}
    for name in state_names:
        path, _, state = name.rpartition("/")
        owners.setdefault((path.rpartition("/")[2], state), path)
    return owners


def rigid_tendon_fiber_lengths(model, q, lengths=None) -> np.ndarray:
    """Fiber lengths (m) with a rigid tendon, (n_frames, n_muscles): the pennated fiber spans path length minus
    tendon slack length. ``model``: the float32 muscle module (:meth:`Trainer.inference_muscle_model`);
    ``q`` (n_frames, n_coordinates); ``lengths``: its path lengths at ``q`` (tensor), when already computed."""
    from . import curves

    with torch.inference_mode():
        if lengths is None:
            q = torch.as_tensor(np.asarray(q), dtype=torch.float32, device=model.max_isometric_force.device)
            lengths, _ = model.lengths_and_speeds(q, torch.zeros_like(q))
        height = model.optimal_fiber_length * torch.sin(model.pennation_angle_at_optimal)
        fiber = curves.fiber_geometry(lengths - model.tendon_slack_length, height, model.minimum_fiber_length)
    return fiber.cpu().numpy().astype(float)


def check_model_matches(trainer, info, model: str | Path, checkpoint: str | Path) -> None:
    """Raise :class:`InputError` if the muscles or coordinates of ``info`` (read from ``model``) differ from the
    checkpoint's."""
    muscles = [m.name for m in info.muscles]
    coordinates = [c.name for c in info.free_coordinates]
    if muscles != list(trainer.muscles) or coordinates != list(trainer.coordinates):
        raise InputError(f"{model}: the model {info.name} ({len(muscles)} muscles, {len(coordinates)} unlocked "
                         f"coordinates) is not the one the checkpoint {checkpoint} was trained on "
                         f"({trainer.info.name}: {len(trainer.muscles)} muscles, {len(trainer.coordinates)} "
                         "coordinates); give that model, or a checkpoint trained on this one")


__all__ = ["predict", "prediction_files", "write_predictions", "network_controls", "timed_inference",
           "InferenceTiming", "states_table", "rigid_tendon_fiber_lengths",
           "check_actuators_match", "exact_controls"]
