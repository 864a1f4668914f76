"""Outputs in coordinate space: Static Optimization's multipliers (``TrainConfig.outputs = "multipliers"``).

Per frame the physics loss with unit weights is
``L(a) = w_d (tau - M a)^T W (tau - M a) + w_p a^T a`` (plus the bound penalties),
``W = P^T P + U^T U / uncovered_reserve^2`` (:mod:`opensim_pinn.loss`: ``P`` the
least-cost reserve solve, ``U`` the uncovered projector). Its minimiser over
``lower <= a <= upper`` satisfies, exactly (KKT)::

    a = clip(M^T lam, lower, upper),   lam = (w_d / w_p) W (tau - M a)

so the network outputs ``lam`` (n_coordinates per frame, in units of
:func:`multiplier_scale`), and the activations come from the muscle matrix at
the frame's own ``q``, ``qd``. ``lam`` is also the maximiser of SO's dual, a
concave, continuously differentiable function of ``lam`` whose gradient is
``r(a(lam)) - V lam`` (``V = ((w_d / w_p) W)^-1``, ``r = tau - M a``) and whose
negative Hessian is ``V + M D M^T`` (``D``: the muscles strictly inside their
bounds). Training back-propagates, per frame, the step of the negated dual with the
fixed metric ``K = V + M M^T`` (:func:`dual_curvature`; Levenberg-Marquardt damped
early on): ``K`` bounds the Hessian from above at every ``lam``, so the step is a
majorise-minimise step that never overshoots, even where every muscle is clipped
(the Newton step with the active set ``D`` did overshoot: on the built-in model,
which has no reserves so that ``V`` is small, it did not converge), and ``K`` is
computed once per frame, like the curvature of :mod:`opensim_pinn.newton`. The
actuator bounds' penalty is left out of the multipliers (as of that curvature);
the primal loss is still what :attr:`Trainer.history` reports.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .loss import PhysicsLoss, PhysicsTargets
from .newton import newton_direction

OUTPUTS = ("activations", "multipliers", "forces")
"""What the network's muscle head outputs: one logit per muscle, one multiplier per coordinate, or the
generalised forces of motion per coordinate (:mod:`opensim_pinn.motion_forces`)."""


def check_outputs(outputs: str) -> None:
    """A one-line error unless ``outputs`` (the ``--outputs`` option) is one of :data:`OUTPUTS`."""
    if outputs not in OUTPUTS:
        raise InputError(f"--outputs {outputs}: choose one of {', '.join(OUTPUTS)}")


def require_activation_outputs(trainer, use: str) -> None:
    """A one-line error if the trainer's network outputs multipliers or forces, which ``use`` ("stream",
    "be exported") cannot take yet."""
    outputs = trainer.config.outputs
    if outputs != "activations":
        raise InputError(f"this checkpoint's network outputs {outputs} (train --outputs {outputs}), which cannot "
                         f"{use} yet; train with --outputs activations")


def residual_weight(loss: PhysicsLoss, targets: PhysicsTargets) -> torch.Tensor:
    """``(w_d / w_p) W`` per frame, shape (..., n_coordinates, n_coordinates): ``lam`` = this @ residual."""
    p, u = targets.reserve_solve, targets.uncovered / loss.uncovered_reserve
    w = loss.loss_weights
    return (w["dynamics"] / w["performance"]) * (p.transpose(-1, -2) @ p + u.transpose(-1, -2) @ u)


def dual_curvature(loss: PhysicsLoss, targets: PhysicsTargets) -> torch.Tensor:
    """``K = V + M M^T`` per frame, (..., n_coordinates, n_coordinates): ``V`` the inverse of
    :func:`residual_weight` (compute it in float64: ``V`` is the reserves' optimal forces squared)."""
    m = targets.muscle_matrix
    return torch.linalg.inv(residual_weight(loss, targets)) + m @ m.transpose(-1, -2)


def multiplier_activations(multipliers: torch.Tensor, muscle_matrix: torch.Tensor, lower: torch.Tensor,
                           upper: torch.Tensor) -> torch.Tensor:
    """``clip(M^T lam)``: activations (..., n_muscles) from multipliers (..., n_coordinates) and M (..., C, M)."""
    free = (muscle_matrix.transpose(-1, -2) @ multipliers.unsqueeze(-1)).squeeze(-1)
    return torch.minimum(torch.maximum(free, lower), upper)


def multiplier_scale(loss: PhysicsLoss, targets: list[PhysicsTargets]) -> np.ndarray:
    """Units of the network's multiplier outputs per coordinate, shape (n_coordinates,).

    The RMS over the training frames of the multipliers of SO without bounds,
    ``lam = (I + Q M M^T)^-1 Q tau`` (``Q`` = :func:`residual_weight`), so that the
    network's outputs are O(1); 1 where that RMS is 0.
    """
    values = []
    for t in targets:
        q = residual_weight(loss, t).double()
        m = t.muscle_matrix.double()
        eye = torch.eye(q.shape[-1], dtype=q.dtype).expand_as(q)
        values.append(torch.linalg.solve(eye + q @ m @ m.transpose(-1, -2), (q @ t.tau.double().unsqueeze(-1)))
                      .squeeze(-1))
    rms = torch.cat(values).pow(2).mean(0).sqrt().numpy()
    return np.where(rms > 0, rms, 1.0)


def dual_direction(outputs: torch.Tensor, scale: torch.Tensor, activations: torch.Tensor,
                   targets: PhysicsTargets, curvature: torch.Tensor, damping: float) -> torch.Tensor:
    """The training direction in the network's output units, (..., n_coordinates).

    ``outputs`` (..., C) are the network's raw multipliers, ``lam = scale * outputs``;
    ``activations`` = :func:`multiplier_activations` of ``lam``; ``curvature`` = :func:`dual_curvature`.
    Gradient of the negated dual ``scale * (V lam - r)`` (``V lam = K lam - M M^T lam``), metric
    ``S K S`` damped by ``damping * diag``.
    """
    lam = scale * outputs
    m = targets.muscle_matrix
    free = (m.transpose(-1, -2) @ lam.unsqueeze(-1)).squeeze(-1)  # M^T lam: the activations before clipping
    gradient = (curvature @ lam.unsqueeze(-1)).squeeze(-1) - targets.tau \
        - (m @ (free - activations).unsqueeze(-1)).squeeze(-1)
    hessian = scale.unsqueeze(-1) * curvature * scale.unsqueeze(-2)
    return newton_direction(scale * gradient, torch.ones_like(gradient), hessian, damping)
