"""Predict muscle activations and forces of a new trial with a trained checkpoint.

Only files are read: the checkpoint carries the network, the input
normalisation, the muscle module (parameters and path polynomials) and the
model's names, so no OpenSim run is needed. The motion is filtered with the
training trials' low-pass cut-off, as Static Optimization would filter it.

Outputs (in OpenSim's formats):

- ``<trial>_forces.sto``: muscle forces (N), layout and column names of OpenSim's
  ``<name>_StaticOptimization_force.sto``. **Muscles only**: the reserve and
  residual actuator forces of Static Optimization cover what the muscles leave of
  the inverse-dynamics forces, and inverse dynamics needs OpenSim; ``compare``
  computes them. Such a file goes wherever OpenSim reads SO's force file, for
  example the JointReaction analysis's ``forces_file`` (with a model whose
  actuators are its muscles).
- ``<trial>_activations.sto``: activations, layout of ``_StaticOptimization_activation.sto``.
- ``<trial>_states.sto``: an OpenSim 4 states table: ``/jointset/<joint>/<coordinate>/value``
  and ``/speed`` of every coordinate (locked ones at their default value, speed 0),
  ``/forceset/<muscle>/activation`` and, for muscles whose model has that state,
  ``/forceset/<muscle>/fiber_length`` (rigid tendon, as SO assumes). The OpenSim
  GUI plays it with the muscles coloured by activation.
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
from .storage import StorageTable, write_storage

log = logging.getLogger(__name__)

INFERENCE_REPEATS = 21
"""Timed runs of the network and the muscle module (their median is reported), after one warm-up run."""
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
            device: str = "cpu", threads: int | None = INFERENCE_THREADS) -> dict:
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

    Returns
    -------
    dict
        ``files``, ``n_frames``, ``timing_s`` (``inference``: warm median of the
        network and muscle module on the whole trial; ``inference_spread``: min,
        max, repeats, threads; ``end_to_end``: reading and filtering the files too).
    """
    from .outputs import OutputFolder
    from .static_opt import StaticOptimizationResult, activation_table, force_table
    from .trainer import Trainer
    from .trial import load_kinematics

    trainer = Trainer.load(checkpoint, device=device)
    began = time.perf_counter()
    kinematics = load_kinematics(trainer.info, motion, external_loads, start=start, end=end,
                                 lowpass=trainer.lowpass, checkpoint=checkpoint)
    trainer.check_kinematics(kinematics)  # before the output check: every input error comes first
    read_s = time.perf_counter() - began
    name = kinematics.name
    names = prediction_files(name)
    output = OutputFolder(out, names, force=force)
    output.check()
    activations, forces, timing = timed_inference(trainer, kinematics, threads=threads)
    inference_s = timing.median_s
    result = StaticOptimizationResult(time=kinematics.time, labels=list(trainer.muscles), activations=activations,
                                      forces=forces, converged=np.ones(len(kinematics.time), bool))
    with output as staging:
        write_storage(staging / names[0], force_table(result, name))
        write_storage(staging / names[1], activation_table(result, name))
        write_storage(staging / names[2], states_table(trainer, kinematics, activations))
    return {"files": [str(Path(out) / n) for n in names], "n_frames": len(kinematics.time),
            "muscles": len(trainer.muscles),
            "timing_s": {"inference": round(inference_s, 6), "end_to_end": round(read_s + inference_s, 6),
                         "inference_spread": timing.to_dict(),
                         "includes": "inference: network and muscle module on the whole trial, "
                                     f"{timing.protocol()}; end_to_end adds reading and filtering the files"}}


def prediction_files(trial: str) -> list[str]:
    """The files :func:`predict` writes for a trial named ``trial``: forces, activations, states."""
    return [f"{trial}_forces.sto", f"{trial}_activations.sto", f"{trial}_states.sto"]


def timed_inference(trainer, kinematics, *, repeats: int = INFERENCE_REPEATS,
                    threads: int | None = INFERENCE_THREADS) -> tuple[np.ndarray, np.ndarray, InferenceTiming]:
    """Activations and muscle forces of a trial, and how long computing them took (see :class:`InferenceTiming`).

    The timed work is the whole trial through the network and the muscle module:
    normalisation, network, activation bounds, muscle-tendon paths and forces, on
    ``threads`` CPU threads (torch's setting is restored after).
    """
    from .trainer import torch_threads

    if threads is not None and threads < 1:
        raise InputError(f"--threads must be 1 or more, got {threads}")

    def run():
        activations = trainer.activations(trainer.features(kinematics))
        return activations.cpu().numpy().astype(float), trainer.muscle_forces(kinematics, activations)

    with torch_threads(threads):
        trainer.predict(kinematics)  # checks the trial; also the warm-up run
        times = []
        for _ in range(max(1, repeats)):
            began = time.perf_counter()
            activations, forces = run()
            times.append(time.perf_counter() - began)
    device = str(next(trainer.network.parameters()).device)
    return activations, forces, InferenceTiming(median_s=statistics.median(times), min_s=min(times),
                                                max_s=max(times), repeats=len(times), threads=threads,
                                                device=device)


def states_table(trainer, kinematics, activations: np.ndarray) -> StorageTable:
    """OpenSim 4 states of a predicted trial (see the module docstring), radians, ``inDegrees=no``."""
    state_names = set(getattr(trainer, "state_variables", None) or [])
    n_frames = len(kinematics.time)
    labels, columns = [], []
    for coordinate in trainer.info.coordinates:
        prefix = (_state_prefix(state_names, coordinate.name, "value")
                  or f"/jointset/{coordinate.joint}/{coordinate.name}")
        if coordinate.name in kinematics.coordinates:
            i = kinematics.coordinates.index(coordinate.name)
            value, speed = kinematics.q[:, i], kinematics.qd[:, i]
        else:
            value, speed = np.full(n_frames, coordinate.default_value), np.zeros(n_frames)
        labels += [f"{prefix}/value", f"{prefix}/speed"]
        columns += [value, speed]
    fiber_lengths = _rigid_tendon_fiber_lengths(trainer, kinematics)
    by_name = {m.name: m for m in trainer.info.muscles}
    for m, muscle in enumerate(trainer.muscles):
        prefix = (_state_prefix(state_names, muscle, "activation") or _state_prefix(state_names, muscle, "fiber_length")
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


def _state_prefix(state_names: set[str], component: str, state: str) -> str | None:
    """Path of the component named ``component`` that owns ``state`` among the model's state names."""
    for name in state_names:
        if name.endswith(f"/{component}/{state}"):
            return name[: -len(state) - 1]
    return None


def _rigid_tendon_fiber_lengths(trainer, kinematics) -> np.ndarray:
    """Fiber lengths (m) with a rigid tendon: the pennated fiber spans path length minus tendon slack length."""
    from . import curves

    model = trainer.muscle_model
    with torch.no_grad():
        q = torch.as_tensor(kinematics.q, dtype=torch.float64)
        lengths, _ = model.lengths_and_speeds(q, torch.zeros_like(q))
        height = model.optimal_fiber_length * torch.sin(model.pennation_angle_at_optimal)
        fiber = curves.fiber_geometry(lengths - model.tendon_slack_length, height, model.minimum_fiber_length)
    return fiber.numpy()


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


__all__ = ["predict", "prediction_files", "timed_inference", "InferenceTiming", "states_table"]
