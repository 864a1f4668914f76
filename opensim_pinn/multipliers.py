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
concave function of ``lam`` whose gradient is ``r(a(lam)) - V lam`` (``V`` =
``(w_d / w_p)^-1 W^-1``, ``r = tau - M a``) and whose negative Hessian
``V + M D M^T`` (``D``: muscles strictly inside their bounds) is positive
definite at every ``lam``, even where every muscle is clipped. Training
back-propagates that dual's damped Newton direction (:func:`dual_direction`):
no muscle can be stuck at a bound as it could with the primal loss through the clip.
The actuator bounds' penalty is left out of the multipliers (as of the curvature in
:mod:`opensim_pinn.newton`); the primal loss is still what :attr:`Trainer.history` reports.
"""

from __future__ import annotations

import numpy as np
import torch

from .loss import PhysicsLoss, PhysicsTargets
from .newton import newton_direction

OUTPUTS = ("activations", "multipliers")
"""What the network's muscle head outputs: one logit per muscle, or one multiplier per coordinate."""


def residual_weight(loss: PhysicsLoss, targets: PhysicsTargets) -> torch.Tensor:
    """``(w_d / w_p) W`` per frame, shape (..., n_coordinates, n_coordinates): ``lam`` = this @ residual."""
    p, u = targets.reserve_solve, targets.uncovered / loss.uncovered_reserve
    w = loss.loss_weights
    return (w["dynamics"] / w["performance"]) * (p.transpose(-1, -2) @ p + u.transpose(-1, -2) @ u)


def dual_metric(loss: PhysicsLoss, targets: PhysicsTargets) -> torch.Tensor:
    """``V`` = inverse of :func:`residual_weight` per frame (float64 in, same dtype out), (..., C, C)."""
    return torch.linalg.inv(residual_weight(loss, targets))


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
                   targets: PhysicsTargets, metric: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                   damping: float) -> torch.Tensor:
    """Damped Newton direction of SO's negated dual in the network's output units, (..., n_coordinates).

    ``outputs`` (..., C) are the network's raw multipliers, ``lam = scale * outputs``;
    ``activations`` = :func:`multiplier_activations` of ``lam``; ``metric`` = :func:`dual_metric`.
    Gradient ``scale * (V lam - r)``, Hessian ``S (V + M D M^T) S``, Levenberg-Marquardt damped.
    """
    lam = scale * outputs
    m = targets.muscle_matrix
    residual = targets.tau - (m @ activations.unsqueeze(-1)).squeeze(-1)
    gradient = scale * ((metric @ lam.unsqueeze(-1)).squeeze(-1) - residual)
    inside = ((activations > lower) & (activations < upper)).to(m.dtype)
    hessian = metric + (m * inside.unsqueeze(-2)) @ m.transpose(-1, -2)
    hessian = scale.unsqueeze(-1) * hessian * scale.unsqueeze(-2)
    return newton_direction(gradient, torch.ones_like(gradient), hessian, damping)
