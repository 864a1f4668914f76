"""The physics-informed, label-free loss: OpenSim Static Optimization's objective as a penalty.

For activations ``a`` the muscles leave a generalised-force residual
``r = tau - M(q, qd) a`` (M = moment arm x rigid-tendon force at full
activation, N m per unit activation). Static Optimization covers ``r`` with
reserve/residual actuators at least cost: the controls ``u = P r`` with
``P = pinv(G^T)`` (G: each actuator's generalised force per unit control) cost
``sum u^2``, exactly SO's actuator term. Whatever part of ``r`` no actuator can
produce (a coordinate with no actuator) is charged as if a virtual reserve of
optimal force ``uncovered_reserve`` acted there. So, term by term:

- ``dynamics``  (L_d): ``sum_r u_r^2 + sum_j (r_perp,j / uncovered_reserve)^2``,
  the residual normalised per coordinate by the actuators' optimal forces;
- ``performance`` (L_p): ``sum_m a_m^2``, SO's criterion (activation exponent 2);
- ``boundary`` (L_b): squared excursion of activations below ``min_control`` or
  above ``max_control`` and of controls outside their bounds.

With unit weights on L_d and L_p, minimising the loss over ``a`` is exactly
Static Optimization (when bounds are not active): this is why the defaults need
no tuning, and why the network trained on a trial lands on SO's answer.
Each term is the mean over frames of a per-frame sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_LOSS_WEIGHTS = {"dynamics": 1.0, "performance": 1.0, "boundary": 1000.0}
"""Weights of the terms. Unit L_d and L_p weights make the loss SO's objective; the
boundary weight keeps activations within [min_control, max_control] to about 0.1 %."""

DEFAULT_UNCOVERED_RESERVE = 1.0
"""Optimal force (N m or N) of the virtual reserve charged on coordinates no actuator covers."""


@dataclass
class PhysicsTargets:
    """Per-frame physics of a trial, precomputed once (nothing here depends on the network).

    Attributes
    ----------
    muscle_matrix : tensor, shape (n_frames, n_coordinates, n_muscles)
        Generalised force per unit activation (N m or N).
    active_force : tensor, shape (n_frames, n_muscles)
        Muscle force at full activation (N).
    tau : tensor, shape (n_frames, n_coordinates)
        Generalised forces to supply (inverse dynamics without muscles).
    reserve_solve : tensor, shape (n_frames, n_actuators, n_coordinates)
        ``pinv(G^T)``: least-norm actuator controls for a residual.
    uncovered : tensor, shape (n_frames, n_coordinates, n_coordinates)
        Projector onto the residual components that no actuator can produce.
    """

    muscle_matrix: torch.Tensor
    active_force: torch.Tensor
    tau: torch.Tensor
    reserve_solve: torch.Tensor
    uncovered: torch.Tensor

    def __getitem__(self, index) -> "PhysicsTargets":
        return PhysicsTargets(*(value[index] for value in self.__dict__.values()))

    def to(self, *args, **kwargs) -> "PhysicsTargets":
        return PhysicsTargets(*(value.to(*args, **kwargs) for value in self.__dict__.values()))


def physics_targets(q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor, actuator_map: torch.Tensor,
                    muscle_model) -> PhysicsTargets:
    """Precompute :class:`PhysicsTargets` for frames ``q``, ``qd`` (n_frames, n_coordinates).

    ``actuator_map`` has shape (n_frames, n_actuators, n_coordinates); it may have no actuators.
    """
    with torch.no_grad():
        muscle_matrix, active_force = muscle_model.muscle_matrix(q, qd)
        n_frames, n_coordinates = tau.shape
        eye = torch.eye(n_coordinates, dtype=tau.dtype, device=tau.device).expand(n_frames, -1, -1)
        if actuator_map.shape[1]:
            reserve_solve = torch.linalg.pinv(actuator_map.transpose(1, 2))  # (n_frames, A, C)
            uncovered = eye - actuator_map.transpose(1, 2) @ reserve_solve
        else:
            reserve_solve = tau.new_zeros(n_frames, 0, n_coordinates)
            uncovered = eye.clone()
    return PhysicsTargets(muscle_matrix, active_force, tau, reserve_solve, uncovered)


class PhysicsLoss:
    """Named loss terms of the physics-informed loss.

    Parameters
    ----------
    min_control, max_control : tensor, shape (n_muscles,)
        Activation bounds of each muscle.
    actuator_min, actuator_max : tensor, shape (n_actuators,)
        Control bounds of each actuator.
    loss_weights : dict, optional
        Weights of ``dynamics``, ``performance`` and ``boundary``
        (defaults: :data:`DEFAULT_LOSS_WEIGHTS`).
    uncovered_reserve : float
        See :data:`DEFAULT_UNCOVERED_RESERVE`.
    """

    def __init__(self, min_control: torch.Tensor, max_control: torch.Tensor, actuator_min: torch.Tensor,
                 actuator_max: torch.Tensor, *, loss_weights: dict | None = None,
                 uncovered_reserve: float = DEFAULT_UNCOVERED_RESERVE):
        self.min_control, self.max_control = min_control, max_control
        self.actuator_min, self.actuator_max = actuator_min, actuator_max
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.uncovered_reserve = uncovered_reserve

    def controls(self, activations: torch.Tensor, targets: PhysicsTargets) -> tuple[torch.Tensor, torch.Tensor]:
        """Least-cost actuator controls and the residual they cannot cover.

        Parameters
        ----------
        activations : tensor, shape (..., n_frames, n_muscles)

        Returns
        -------
        controls : tensor, shape (..., n_frames, n_actuators)
        uncovered : tensor, shape (..., n_frames, n_coordinates)
            Generalised force (N m or N) neither muscles nor actuators supply.
        """
        muscle = (targets.muscle_matrix @ activations.unsqueeze(-1)).squeeze(-1)
        residual = targets.tau - muscle
        controls = (targets.reserve_solve @ residual.unsqueeze(-1)).squeeze(-1)
        uncovered = (targets.uncovered @ residual.unsqueeze(-1)).squeeze(-1)
        return controls, uncovered

    def __call__(self, activations: torch.Tensor, targets: PhysicsTargets) -> dict[str, torch.Tensor]:
        """Loss terms (means over frames of per-frame sums) and their weighted ``total``."""
        controls, uncovered = self.controls(activations, targets)
        dynamics = (controls ** 2).sum(-1) + ((uncovered / self.uncovered_reserve) ** 2).sum(-1)
        performance = (activations ** 2).sum(-1)
        boundary = ((torch.relu(self.min_control - activations) ** 2).sum(-1)
                    + (torch.relu(activations - self.max_control) ** 2).sum(-1)
                    + (torch.relu(self.actuator_min - controls) ** 2).sum(-1)
                    + (torch.relu(controls - self.actuator_max) ** 2).sum(-1))
        terms = {"dynamics": dynamics.mean(), "performance": performance.mean(), "boundary": boundary.mean()}
        terms["total"] = sum(self.loss_weights[name] * value for name, value in terms.items())
        return terms
