"""Generalised forces of the external loads, in torch, from the model's own joint kinematics.

Inverse dynamics splits exactly into two parts::

    tau = tau_motion(q, qd, qdd) - J(q)^T w

the forces that move the bodies (inertia, gravity, passive forces) and the generalised
forces of the external loads ``w`` (ground reaction force, centre of pressure, free
moment) through the Jacobian of the bodies they act on. The second part is where most of
the joint moments of gait come from, and it is pure kinematics: a network that has to learn
it from one stride gets it wrong on the next one. :class:`LoadKinematics` computes it
exactly, without OpenSim, from the poses of the loaded bodies.

Each joint between ground and a loaded body is a function of its own unlocked coordinates:
the child body's rotation matrix and origin in the parent body (12 numbers), from OpenSim's
own transforms (:func:`opensim_pinn.osim.joint_transform_samples`) and checked on other
samples (:data:`TRANSFORM_TOLERANCE`). A joint of one coordinate is a table over the
coordinate's range, interpolated with cubic Hermite splines (the knee's translations are
splines of its angle); a joint of several coordinates is a least-squares combination of the
products of ``1, cos q, sin q`` (rotations) and ``1, q`` (translations) over its coordinates,
which holds every joint whose axes turn and slide with one coordinate each (pelvis, hip, ball
joints of gait models); a joint without free coordinates is a constant.

A load at ground point ``p`` on body ``B`` does virtual work ``f . dx_P + m . dtheta`` over a
displacement of the body point ``P`` at ``p``, so its generalised forces are the gradient
(autograd) of ``f . (x_B(q) + R_B(q) r) - tr(R_0^T [m]x R_B(q)) / 2`` at the frame's ``q``,
with ``r`` and ``R_0`` held at the frame's pose.
"""

from __future__ import annotations

import numpy as np
import torch

from . import curves
from .errors import InputError

_ARRAYS = ("ranges", "knots", "table", "slopes", "coefficients")
"""Array entries of a fitted joint (lists in a checkpoint)."""

TRANSFORM_TOLERANCE = 1e-4
"""Largest error (m; rotation matrix entries) of a joint's transform on samples it was not made from:
0.1 mm at the foot moves a 1 kN load's moments by 0.1 N m."""


def _basis(values: torch.Tensor, rotational: list[bool]) -> torch.Tensor:
    """Basis functions (n, n_basis) of a joint of several coordinates, ``values`` (n, k)."""
    out = None
    for value, is_rotation in zip(values.T, rotational):
        factor = torch.stack([torch.ones_like(value), torch.cos(value), torch.sin(value)] if is_rotation
                             else [torch.ones_like(value), value], 1)
        out = factor if out is None else (out[:, :, None] * factor[:, None, :]).flatten(1)
    return out


def _transform(joint: dict, values: torch.Tensor) -> torch.Tensor:
    """A fitted joint's transforms (n, 12), rows of [R | p], at its coordinates ``values`` (n, k)."""
    if "table" in joint:  # one coordinate
        table = torch.as_tensor(joint["table"], dtype=values.dtype)  # (12, n_knots)
        slopes = torch.as_tensor(joint["slopes"], dtype=values.dtype)
        knots = torch.as_tensor(joint["knots"], dtype=values.dtype).expand_as(table)
        return curves.hermite(values.expand(-1, 12), knots, table, slopes)
    coefficients = torch.as_tensor(joint["coefficients"], dtype=values.dtype)
    if values.shape[1] == 0:
        return coefficients.expand(values.shape[0], 12)
    return _basis(values, joint["rotational"]) @ coefficients


def fit_joints(samples: list[dict], model: str = "the model") -> list[dict]:
    """Fitted joints from :func:`opensim_pinn.osim.joint_transform_samples`: each sample's names, ``ranges``
    and ``rotational`` with, for one coordinate, its ``knots``, ``table`` (12, n_knots) and ``slopes``, else
    ``coefficients`` (n_basis, 12); ``error``: the largest on the check samples.

    Raises
    ------
    InputError
        A joint's transform does not follow its form within :data:`TRANSFORM_TOLERANCE`.
    """
    from scipy.interpolate import CubicSpline

    joints = []
    for sample in samples:
        values = np.asarray(sample["values"], float)
        targets = np.asarray(sample["transforms"], float).reshape(len(values), 12)
        joint = {key: sample[key] for key in ("joint", "parent", "child", "coordinates", "rotational")}
        joint["ranges"] = np.asarray(sample["ranges"], float).reshape(-1, 2)
        if values.shape[1] == 1:
            knots = values[:, 0]
            joint.update(knots=knots, table=targets.T,
                         slopes=CubicSpline(knots, targets, axis=0).derivative()(knots).T)
        elif values.shape[1] == 0:
            joint["coefficients"] = targets[:1]
        else:
            phi = _basis(torch.as_tensor(values), joint["rotational"]).numpy()
            joint["coefficients"] = np.linalg.lstsq(phi, targets, rcond=None)[0]
        checks = np.asarray(sample["check_values"], float).reshape(len(sample["check_values"]), values.shape[1])
        expected = np.asarray(sample["check_transforms"], float).reshape(len(checks), 12)
        error = float(np.abs(_transform(joint, torch.as_tensor(checks)).numpy() - expected).max()) \
            if len(checks) else 0.0
        if error > TRANSFORM_TOLERANCE:
            raise InputError(f"{model}: joint {sample['joint']}'s transform is not a function of its coordinates "
                             f"that opensim-pinn can follow (error {error:.2g}); train with --outputs activations")
        joints.append(joint | {"error": error})
    return joints


class LoadKinematics:
    """Generalised forces (N m, N) of external loads: :meth:`generalized_forces`.

    Parameters
    ----------
    joints : list of dict
        :func:`fit_joints`, parents before children.
    coordinates : list of str
        The model's unlocked coordinates: the columns of ``q`` and of the result.
    """

    def __init__(self, joints: list[dict], coordinates: list[str]):
        self.joints = joints
        self.coordinates = list(coordinates)
        missing = {c for j in joints for c in j["coordinates"]} - set(self.coordinates)
        if missing:
            raise ValueError(f"joint coordinates {sorted(missing)} are not among the coordinates")
        self._parent = {j["child"]: j for j in joints}

    def state(self) -> dict:
        """What a checkpoint stores (plain lists); :meth:`from_state` rebuilds it."""
        return {"coordinates": self.coordinates,
                "joints": [{k: np.asarray(v).tolist() if k in _ARRAYS else v for k, v in j.items()}
                           for j in self.joints]}

    @classmethod
    def from_state(cls, state: dict) -> "LoadKinematics":
        joints = [{k: np.asarray(v, float) if k in _ARRAYS else v for k, v in j.items()} for j in state["joints"]]
        for joint in joints:
            joint["ranges"] = joint["ranges"].reshape(-1, 2)
        return cls(joints, state["coordinates"])

    def check_reach(self, q: np.ndarray, what: str) -> None:
        """A one-line error if ``q`` (n_frames, n_coordinates) leaves the ranges the joints were fitted over
        (outside them the fitted transforms are not the model's)."""
        for joint in self.joints:
            for name, rotational, (low, high) in zip(joint["coordinates"], joint["rotational"], joint["ranges"]):
                values = q[:, self.coordinates.index(name)]
                if values.min() < low - 1e-9 or values.max() > high + 1e-9:
                    unit, scale = ("deg", 180 / np.pi) if rotational else ("m", 1.0)
                    reached = f"{scale * values.min():.4g} to {scale * values.max():.4g} {unit}"
                    raise InputError(f"{what}: {name} reaches {reached}, beyond the {scale * low:.4g} to "
                                     f"{scale * high:.4g} {unit} over which the loads' kinematics were fitted at "
                                     "training; include such a trial in training (or widen the coordinate's "
                                     "range in the model)")

    def pose(self, q: torch.Tensor, body: str, known: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation (n, 3, 3) and origin (n, 3), m, of ``body`` in ground at coordinates ``q`` (n, n_coordinates).

        ``known``: poses already computed at this ``q``, by body (filled in: bodies that share joints, the two
        feet, compute them once)."""
        known = {} if known is None else known
        if body not in known:
            if body == "ground":
                known[body] = torch.eye(3, dtype=q.dtype, device=q.device).expand(q.shape[0], 3, 3), \
                    q.new_zeros(q.shape[0], 3)
            elif body not in self._parent:
                raise InputError(f"the loads act on body {body}, which the checkpoint's loads kinematics do not "
                                 "reach; give loads on the bodies it was trained with")
            else:
                joint = self._parent[body]
                rotation, origin = self.pose(q, joint["parent"], known)
                values = q[:, [self.coordinates.index(c) for c in joint["coordinates"]]]
                transform = _transform(joint, values).reshape(q.shape[0], 3, 4)
                known[body] = rotation @ transform[:, :, :3], origin + (rotation @ transform[:, :, 3:]).squeeze(-1)
        return known[body]

    def generalized_forces(self, q: np.ndarray, bodies: list[str], loads: np.ndarray,
                           point_in_body: list[bool] | None = None) -> np.ndarray:
        """Generalised forces of the loads, (n_frames, n_coordinates): what they add to the joints' moments.

        ``q`` (n_frames, n_coordinates), rad or m; ``bodies``: the body each load acts on; ``loads``
        (n_frames, n_loads, 9): force (N) in ground, point (m) and free moment (N m) in ground, each xyz;
        ``point_in_body``: per load, whether its point is given in the body it acts on instead of in ground.
        Inverse dynamics with the loads is inverse dynamics without them minus this. Works under
        ``torch.no_grad`` and ``torch.inference_mode`` too (the gradient is taken in a context of its own).
        """
        if not bodies:
            return np.zeros(q.shape)
        with torch.inference_mode(False), torch.enable_grad():
            angles = torch.tensor(q, dtype=torch.float64, requires_grad=True)
            loads = torch.tensor(loads, dtype=torch.float64)
            work, known = angles.new_zeros(()), {}
            for k, body in enumerate(bodies):
                rotation, origin = self.pose(angles, body, known)
                force, point, moment = loads[:, k, :3], loads[:, k, 3:6], loads[:, k, 6:]
                station = point.unsqueeze(-1) if point_in_body and point_in_body[k] else \
                    rotation.detach().transpose(1, 2) @ (point - origin.detach()).unsqueeze(-1)  # in the body
                work = work + (force * (origin + (rotation @ station).squeeze(-1))).sum()
                skew = torch.zeros(len(moment), 3, 3, dtype=moment.dtype)
                skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -moment[:, 2], moment[:, 1], -moment[:, 0]
                skew = skew - skew.transpose(1, 2)
                work = work - 0.5 * torch.einsum("nji,njk,nki->", rotation.detach(), skew, rotation)
            if not work.requires_grad:  # loads on bodies fixed to ground
                return np.zeros(q.shape)
            gradient, = torch.autograd.grad(work, angles)
        return gradient.numpy()


__all__ = ["LoadKinematics", "fit_joints", "TRANSFORM_TOLERANCE"]
