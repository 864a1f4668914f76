"""Outputs in coordinate space: the generalised forces of motion (``TrainConfig.outputs = "forces"``).

Static Optimization's activations are a function of the frame's ``q``, ``qd`` and of the
generalised forces ``tau`` it must balance (:mod:`opensim_pinn.static_opt`). Inverse
dynamics splits ``tau`` exactly::

    tau = tau_motion(q, qd, qdd) - Q_loads(q, loads)

``Q_loads``, the generalised forces of the external loads, is kinematics:
:class:`~opensim_pinn.body_kinematics.LoadKinematics` computes it exactly, without
OpenSim. The network learns only ``tau_motion`` (inertia, gravity, passive forces: a
smooth function of the kinematics, and the smaller part of the joint moments in gait; all
of ``tau`` for a model without external loads) from the inverse dynamics of its training
trials, with ``Q_loads`` among its inputs; the activations and actuator controls then come
from Static Optimization's own problem, solved exactly per frame with the muscle module
(:func:`solve_frames`). So on new trials the network's errors reach the activations only
through its estimate of ``tau_motion``.

The actuators' generalised forces per unit control are taken as constant (their mean over
the training frames): exact for reserves (CoordinateActuators), approximate for residual
point and torque actuators of the root, whose maps turn with the pelvis. Those act on
coordinates no muscle spans, so the activations are exact either way; training refuses
actuators whose maps vary on the muscles' coordinates.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .errors import InputError

log = logging.getLogger(__name__)

MAP_TOLERANCE = 1e-6
"""Largest change over the training frames (relative to its largest entry) of an actuator's generalised
force on a muscle's coordinate, for its map to count as constant."""


def build_load_kinematics(model_path: str, trials, coordinates: list[str]):
    """:class:`~opensim_pinn.body_kinematics.LoadKinematics` of the bodies the ``trials``' loads act on, its
    joints fitted over the coordinates' ranges and the trials' reach (OpenSim in a child process, well under
    a second of sampling)."""
    from .body_kinematics import LoadKinematics, fit_joints
    from .child import run_in_child
    from .osim import joint_transform_samples

    q = np.concatenate([t.q for t in trials])
    reach = {name: (float(q[:, c].min()), float(q[:, c].max())) for c, name in enumerate(coordinates)}
    bodies = sorted({body for t in trials for body in t.load_bodies})
    samples = run_in_child("sampling the joints of the loaded bodies", joint_transform_samples, model_path, bodies,
                           reach=reach)
    return LoadKinematics(fit_joints(samples, model_path), coordinates)


def _frames(kinematics) -> list[tuple[str, str]]:
    """(force frame, point frame) of each load."""
    return [tuple(f.split(",")) for f in kinematics.load_frames]


def check_loads(kinematics, what: str) -> None:
    """A one-line error unless the trial's loads can be followed: all there, each force in ground, each point in
    ground or in the body the load acts on."""
    if kinematics.grf_labels and not (len(kinematics.load_bodies) == kinematics.loads.shape[1] > 0):
        raise InputError(f"{what}: its loads' points and moments are missing (read it with "
                         "opensim_pinn.trial.load_kinematics or prepare_trial)")
    other = sorted({f"{force} (force), {point} (point)" for (force, point), body in
                    zip(_frames(kinematics), kinematics.load_bodies) if force != "ground" or point not in
                    ("ground", body)})
    if other:
        raise InputError(f"{what}: loads expressed in {'; '.join(other)}; --outputs forces needs each force in "
                         "ground and its point in ground or in the body it acts on (the usual ExternalLoads setup)")
    if not np.isfinite(kinematics.loads).all():
        raise InputError(f"{what}: its loads' forces, points or moments are not all finite numbers; fix the "
                         "ExternalLoads data file")


def load_forces(load_kinematics, kinematics, what: str = "the trial") -> np.ndarray:
    """``Q_loads`` of a trial (n_frames, n_coordinates), N m or N (see the module docstring)."""
    load_kinematics.check_reach(kinematics.q, what)
    point_in_body = [point == body for (_, point), body in zip(_frames(kinematics), kinematics.load_bodies)]
    return load_kinematics.generalized_forces(kinematics.q, kinematics.load_bodies, kinematics.loads, point_in_body)


def rms_scale(values: list[np.ndarray]) -> np.ndarray:
    """Per column, the RMS of ``values`` (each (n_frames, n)) over all frames; 1 where it is 0."""
    rms = np.sqrt(np.mean(np.concatenate(values) ** 2, axis=0))
    return np.where(rms > 1e-9, rms, 1.0)


def constant_actuator_map(trials, muscle_coordinates: np.ndarray) -> np.ndarray:
    """The actuators' generalised forces per unit control (n_actuators, n_coordinates), N m or N: their
    mean over the trials' frames.

    Raises
    ------
    InputError
        An actuator's map changes over the frames on a coordinate that muscles span (``muscle_coordinates``,
        bool per coordinate), where it would change the activations.
    """
    maps = np.concatenate([t.actuator_map for t in trials])
    if maps.shape[1] == 0:
        return np.zeros((0, maps.shape[2]))
    mean = maps.mean(axis=0)
    change = np.abs(maps - mean)[:, :, muscle_coordinates].max(axis=(0, 2))
    size = np.abs(maps).max(axis=(0, 2))
    varying = [a for a, name in enumerate(trials[0].actuators) if change[a] > MAP_TOLERANCE * max(size[a], 1e-12)]
    if varying:
        names = ", ".join(trials[0].actuators[a] for a in varying)
        raise InputError(f"actuators {names} act on the muscles' coordinates with generalised forces that change "
                         "with the pose; --outputs forces needs reserves of fixed direction (CoordinateActuators) "
                         "there: use other reserves or --outputs activations")
    return mean


def solve_frames(muscle_matrix: torch.Tensor, tau: torch.Tensor, actuator_map: torch.Tensor, lower: torch.Tensor,
                 upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Static Optimization of each frame for ``tau`` (n_frames, n_coordinates): activations (n_frames, n_muscles)
    and actuator controls (n_frames, n_actuators), in the dtype of the inputs (float64 for the solver's tolerance).

    ``muscle_matrix`` (n_frames, n_coordinates, n_muscles); ``actuator_map`` (n_actuators, n_coordinates);
    ``lower``, ``upper``: bounds of the muscles, then of the actuators. Frames whose ``tau`` the muscles and
    actuators cannot meet get the solver's closest answer, with a warning (as the fast solver's).
    """
    from . import static_opt

    n_muscles = muscle_matrix.shape[2]
    actuators = actuator_map.T.expand(muscle_matrix.shape[0], -1, -1)
    x, converged = static_opt.solve_frames(torch.cat([muscle_matrix, actuators], dim=2), tau, lower, upper)
    if not bool(converged.all()):
        log.warning("static optimization of the network's forces: %d of %d frames did not meet the equations "
                    "(muscles and actuators too weak there)", int((~converged).sum()), len(converged))
    return x[:, :n_muscles], x[:, n_muscles:]


__all__ = ["build_load_kinematics", "check_loads", "load_forces", "rms_scale", "constant_actuator_map",
           "solve_frames", "MAP_TOLERANCE"]
