"""The curvature-preconditioned training direction (see :mod:`opensim_pinn.trainer`'s docstring).

Per frame, the physics loss is a quadratic in the activations with a constant
Hessian :func:`curvature`; training back-propagates the damped Newton direction
:func:`newton_direction` in logit space instead of the plain gradient.
"""

from __future__ import annotations

import torch

from .loss import PhysicsLoss, PhysicsTargets


def curvature(loss: PhysicsLoss, targets: PhysicsTargets, n_muscles: int) -> torch.Tensor:
    """Per-frame Hessian of the loss with respect to the activations, (n_frames, n_muscles, n_muscles).

    The controls and the uncovered residual are affine in the activations, so
    their Jacobians come from :meth:`PhysicsLoss.controls` at the unit vectors;
    the bound penalties are left out (activations are kept within bounds).
    """
    n_frames = targets.tau.shape[0]
    dtype, device = targets.tau.dtype, targets.tau.device
    zero = torch.zeros(1, n_frames, n_muscles, dtype=dtype, device=device)
    basis = torch.eye(n_muscles, dtype=dtype, device=device)[:, None, :].expand(n_muscles, n_frames, n_muscles)
    controls0, uncovered0 = loss.controls(zero, targets)
    controls1, uncovered1 = loss.controls(basis, targets)
    jacobian_controls = (controls1 - controls0).permute(1, 2, 0)  # (T, A, M)
    jacobian_uncovered = (uncovered1 - uncovered0).permute(1, 2, 0) / loss.uncovered_reserve  # (T, C, M)
    w = loss.loss_weights
    gram = (jacobian_controls.transpose(1, 2) @ jacobian_controls
            + jacobian_uncovered.transpose(1, 2) @ jacobian_uncovered)
    return 2 * w["performance"] * torch.eye(n_muscles, dtype=dtype, device=device) + 2 * w["dynamics"] * gram


def newton_direction(gradient: torch.Tensor, slope: torch.Tensor, hessian: torch.Tensor,
                      damping: float) -> torch.Tensor:
    """Levenberg-Marquardt step in logit space: (S H S + damping diag H)^-1 S g, per frame.

    ``gradient`` and ``slope`` (d activation / d logit) are (..., n_muscles),
    ``hessian`` is (..., n_muscles, n_muscles).
    """
    diagonal = hessian.diagonal(dim1=-2, dim2=-1)
    system = slope.unsqueeze(-1) * hessian  # built in place: one (..., M, M) tensor, not four
    system.mul_(slope.unsqueeze(-2)).diagonal(dim1=-2, dim2=-1).add_(
        damping * diagonal + 1e-12 * diagonal.mean(-1, keepdim=True))
    factor, info = torch.linalg.cholesky_ex(system)
    rhs = (slope * gradient).unsqueeze(-1)
    if bool((info != 0).any()):  # not positive definite in float32: fall back on a general solve
        return torch.linalg.solve(system, rhs).squeeze(-1)
    # Two triangular solves: the numbers of cholesky_solve, in under half its time for batches of small systems.
    forward = torch.linalg.solve_triangular(factor, rhs, upper=False)
    return torch.linalg.solve_triangular(factor.mT, forward, upper=True).squeeze(-1)
