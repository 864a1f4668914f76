"""Generalised forces of the external loads, in torch, from the model's own joint kinematics.

Inverse dynamics splits exactly into two parts::

    tau = tau_motion(q, qd, qdd) - J(q)^T w

the forces that move the bodies (inertia, gravity, passive forces) and the generalised
forces of the external loads ``w`` (ground reaction force, centre of pressure, free
moment) through the Jacobian of the bodies they act on. The second part is where most of
the joint moments of gait come from, and it is pure kinematics: a network that has to learn
it from one stride gets it wrong on the next one. :class:`LoadKinematics` computes it
exactly, without OpenSim, from the poses of the loaded bodies.

Each joint between ground and a loaded body is a fitted function of its own unlocked
coordinates: the child body's rotation matrix and origin in the parent body (12 numbers)
as a linear combination of basis functions, fitted by least squares to OpenSim's own
transforms (:func:`opensim_pinn.osim.joint_transform_samples`) and checked on other
samples (:data:`TRANSFORM_TOLERANCE`). A joint of one coordinate uses
``1, cos q, sin q`` and powers of ``q / pi`` up to :data:`ONE_COORDINATE_DEGREE` (the knee's
translations are splines of its angle); a joint of several coordinates uses the products
of ``1, cos q, sin q`` (rotations) and ``1, q`` (translations) over its coordinates, which
hold every joint whose axes turn and slide with one coordinate each (pelvis, hip, ball
joints of gait models). A load at ground point ``p`` on body ``B`` does virtual work
``f . dx_P + m . dtheta`` over a displacement of the body point ``P`` at ``p``, so its
generalised forces are the gradient (autograd) of
``f . (x_B(q) + R_B(q) r) - tr(R_0^T [m]x R_B(q)) / 2`` at the frame's ``q``, with ``r`` and
``R_0`` held at the frame's pose.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError

ONE_COORDINATE_DEGREE = 10
"""Highest power of ``q / pi`` in the basis of a joint of one coordinate."""

TRANSFORM_TOLERANCE = 1e-4
"""Largest error (m; rotation matrix entries) of a fitted joint transform on samples it was not fitted to:
0.1 mm at the foot moves a 1 kN load's moments by 0.1 N m."""


def _basis(values: torch.Tensor, rotational: list[bool]) -> torch.Tensor:
    """Basis functions (n, n_basis) of a joint's coordinates ``values`` (n, k); (n, 1) ones for k = 0."""
    if values.shape[1] == 0:
        return values.new_ones(values.shape[0], 1)
    if values.shape[1] == 1:
        q = values[:, 0]
        scaled = q / np.pi
        return torch.stack([torch.ones_like(q), torch.cos(q), torch.sin(q)]
                           + [scaled ** e for e in range(1, ONE_COORDINATE_DEGREE + 1)], 1)
    out = None
    for value, is_rotation in zip(values.T, rotational):
        factor = torch.stack([torch.ones_like(value), torch.cos(value), torch.sin(value)] if is_rotation
                             else [torch.ones_like(value), value], 1)
        out = factor if out is None else (out[:, :, None] * factor[:, None, :]).flatten(1)
    return out


def fit_joints(samples: list[dict], model: str = "the model") -> list[dict]:
    """Fitted joints from :func:`opensim_pinn.osim.joint_transform_samples`: each sample's dict with
    ``coefficients`` (n_basis, 12) in place of its samples, and ``error`` on samples it was not fitted to.

    Raises
    ------
    InputError
        A joint's transform does not follow the basis within :data:`TRANSFORM_TOLERANCE`.
    """
    joints = []
    for sample in samples:
        values = torch.as_tensor(sample["values"], dtype=torch.float64)
        targets = np.asarray(sample["transforms"], float).reshape(len(values), 12)
        phi = _basis(values, sample["rotational"]).numpy()
        fit = max(1, int(0.75 * len(values)))  # fitted on 3/4 of the samples, checked on the rest
        coefficients = np.linalg.lstsq(phi[:fit], targets[:fit], rcond=None)[0]
        error = float(np.abs(phi[fit:] @ coefficients - targets[fit:]).max()) if fit < len(values) else 0.0
        if error > TRANSFORM_TOLERANCE:
            raise InputError(f"{model}: joint {sample['joint']}'s transform is not a function of its coordinates "
                             f"that opensim-pinn can follow (error {error:.2g}); train with --outputs activations")
        joints.append({key: sample[key] for key in ("joint", "parent", "child", "coordinates", "rotational")}
                      | {"coefficients": np.linalg.lstsq(phi, targets, rcond=None)[0], "error": error})
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
                "joints": [{**j, "coefficients": np.asarray(j["coefficients"]).tolist()} for j in self.joints]}

    @classmethod
    def from_state(cls, state: dict) -> "LoadKinematics":
        return cls([{**j, "coefficients": np.asarray(j["coefficients"], float)} for j in state["joints"]],
                   state["coordinates"])

    def pose(self, q: torch.Tensor, body: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation (n, 3, 3) and origin (n, 3), m, of ``body`` in ground at coordinates ``q`` (n, n_coordinates)."""
        chain, name = [], body
        while name in self._parent:
            chain.append(self._parent[name])
            name = self._parent[name]["parent"]
        if name != "ground":
            raise ValueError(f"body {body} is not connected to ground by the fitted joints")
        n = q.shape[0]
        rotation = torch.eye(3, dtype=q.dtype, device=q.device).expand(n, 3, 3)
        origin = q.new_zeros(n, 3)
        for joint in reversed(chain):
            values = q[:, [self.coordinates.index(c) for c in joint["coordinates"]]]
            coefficients = torch.as_tensor(joint["coefficients"], dtype=q.dtype, device=q.device)
            transform = (_basis(values, joint["rotational"]) @ coefficients).reshape(n, 3, 4)
            origin = origin + (rotation @ transform[:, :, 3:]).squeeze(-1)
            rotation = rotation @ transform[:, :, :3]
        return rotation, origin

    def generalized_forces(self, q: np.ndarray, bodies: list[str], loads: np.ndarray) -> np.ndarray:
        """Generalised forces of the loads, (n_frames, n_coordinates): what they add to the joints' moments.

        ``q`` (n_frames, n_coordinates), rad or m; ``bodies``: the body each load acts on; ``loads``
        (n_frames, n_loads, 9): force (N), point (m) and free moment (N m), each xyz in ground. Inverse
        dynamics with the loads is inverse dynamics without them minus this.
        """
        angles = torch.as_tensor(q, dtype=torch.float64).requires_grad_(True)
        loads = torch.as_tensor(loads, dtype=torch.float64)
        work = angles.new_zeros(())
        for k, body in enumerate(bodies):
            rotation, origin = self.pose(angles, body)
            force, point, moment = loads[:, k, :3], loads[:, k, 3:6], loads[:, k, 6:]
            station = (rotation.detach().transpose(1, 2) @ (point - origin.detach()).unsqueeze(-1))  # in the body
            work = work + (force * (origin + (rotation @ station).squeeze(-1))).sum()
            skew = torch.zeros(len(moment), 3, 3, dtype=moment.dtype)
            skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -moment[:, 2], moment[:, 1], -moment[:, 0]
            skew = skew - skew.transpose(1, 2)
            work = work - 0.5 * torch.einsum("nji,njk,nki->", rotation.detach(), skew, rotation)
        if not work.requires_grad:  # no loads
            return np.zeros(q.shape)
        gradient, = torch.autograd.grad(work, angles)
        return gradient.numpy()


__all__ = ["LoadKinematics", "fit_joints", "TRANSFORM_TOLERANCE", "ONE_COORDINATE_DEGREE"]
