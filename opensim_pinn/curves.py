"""Rigid-tendon active fiber force of OpenSim muscles, in torch.

:func:`active_fiber_force` reproduces OpenSim's
``Muscle::calcInextensibleTendonActiveFiberForce(state, 1.0)`` for each
supported class: the force a muscle makes at full activation with a rigid
tendon, which is what OpenSim Static Optimization multiplies by activation.
Per class (OpenSim 4.6 source):

- Thelen2003Muscle: Gaussian active force-length, Thelen's force-velocity at
  activation 1, times cos(pennation); zero below the minimum fiber length.
- Millard2012EquilibriumMuscle: its quintic Bezier curves, tabulated through
  the OpenSim API and interpolated here with cubic Hermite splines; the
  pennation cosine is evaluated at the *normalised* fiber length, as OpenSim
  4.6 does (``calcPennationAngle(lceN)``), which we reproduce on purpose so
  that results match OpenSim's.
- DeGrooteFregly2016Muscle: analytic curves, no pennation cosine (as OpenSim).

All functions are elementwise over a trailing muscle axis and differentiable.
"""

from __future__ import annotations

import torch

_DEGROOTE_ACTIVE = ((0.8150671134243542, 1.055033428970575, 0.162384573599574, 0.063303448465465),
                    (0.433004984392647, 0.716775413397760, -0.029947116970696, 0.200356847296188),
                    (0.1, 1.0, 0.353553390593274, 0.0))
_DEGROOTE_VELOCITY = (-0.3211346127989808, -8.149, -0.374, 0.8825327733249912)


def hermite(x: torch.Tensor, knots: torch.Tensor, values: torch.Tensor, slopes: torch.Tensor
            ) -> torch.Tensor:
    """Cubic Hermite interpolation on a uniform grid, linear extrapolation outside it.

    Parameters
    ----------
    x : tensor, shape (..., n_muscles)
    knots, values, slopes : tensor, shape (n_muscles, n_knots)
        Uniform grid per muscle, curve values and derivatives there.
    """
    n_knots = knots.shape[-1]
    start, step = knots[:, 0], knots[:, 1] - knots[:, 0]
    position = (x - start) / step
    index = position.detach().floor().clamp(0, n_knots - 2).long()
    s = (position - index).clamp(0.0, 1.0)
    gather = lambda table, i: torch.gather(table.expand(*x.shape[:-1], *table.shape), -1,  # noqa: E731
                                           i.unsqueeze(-1)).squeeze(-1)
    y0, y1 = gather(values, index), gather(values, index + 1)
    d0, d1 = gather(slopes, index) * step, gather(slopes, index + 1) * step
    s2, s3 = s * s, s * s * s
    inside = ((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * d0
              + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * d1)
    below = values[:, 0] + slopes[:, 0] * (x - knots[:, 0])
    above = values[:, -1] + slopes[:, -1] * (x - knots[:, -1])
    return torch.where(x < knots[:, 0], below, torch.where(x > knots[:, -1], above, inside))


def thelen_force_length(length: torch.Tensor, shape_active: torch.Tensor) -> torch.Tensor:
    """Thelen (2003) active force-length multiplier at normalised fiber length."""
    return torch.exp(-(length - 1.0) ** 2 / shape_active)


def thelen_force_velocity(velocity: torch.Tensor, af: torch.Tensor, flen: torch.Tensor,
                          threshold: torch.Tensor) -> torch.Tensor:
    """Thelen (2003) force-velocity multiplier at activation 1 (k = 1), as OpenSim evaluates it.

    ``velocity`` is normalised by max contraction velocity (negative = shortening).
    Concentric: (1 + v) / (1 - v / Af), zero for v <= -1; eccentric:
    (Flen - 1 + c Flen v) / (Flen - 1 + c v) with c = 2 + 2 / Af, continued
    linearly beyond ``threshold * Flen``.
    """
    c = 2.0 + 2.0 / af
    concentric = (1.0 + velocity) / (1.0 - velocity / af)
    eccentric = (flen - 1.0 + c * flen * velocity) / (flen - 1.0 + c * velocity)
    knee_force = threshold * flen
    knee_velocity = (flen - 1.0) * (1.0 - knee_force) / (c * (knee_force - flen))
    slope = c * (flen - knee_force) ** 2 / (flen - 1.0) ** 2
    linear = knee_force + slope * (velocity - knee_velocity)
    force = torch.where(velocity <= 0, concentric,
                        torch.where(velocity < knee_velocity, eccentric, linear))
    return torch.where(velocity <= -1.0, torch.zeros_like(force), force).clamp_min(0.0)


def degroote_force_length(length: torch.Tensor, width_scale: torch.Tensor) -> torch.Tensor:
    """De Groote et al. (2016) active force-length multiplier (sum of three Gaussians)."""
    x = (length - 1.0) / width_scale + 1.0
    total = torch.zeros_like(x)
    for b1, b2, b3, b4 in _DEGROOTE_ACTIVE:
        total = total + b1 * torch.exp(-0.5 * (x - b2) ** 2 / (b3 + b4 * x) ** 2)
    return total


def degroote_force_velocity(velocity: torch.Tensor) -> torch.Tensor:
    """De Groote et al. (2016) force-velocity multiplier (normalised velocity)."""
    d1, d2, d3, d4 = _DEGROOTE_VELOCITY
    z = d2 * velocity + d3
    return d1 * torch.log(z + torch.sqrt(z * z + 1.0)) + d4


def fiber_geometry(tendon_free_length: torch.Tensor, height: torch.Tensor,
                   minimum_fiber_length: torch.Tensor) -> torch.Tensor:
    """Fiber length (m) with a rigid tendon and constant-height pennation, floored at the minimum."""
    return torch.sqrt(height ** 2 + tendon_free_length ** 2).maximum(minimum_fiber_length)


def pennation_cosine(fiber_length: torch.Tensor, height: torch.Tensor,
                     maximum_pennation: torch.Tensor) -> torch.Tensor:
    """cos(asin(height / fiber_length)), the angle capped at ``maximum_pennation``."""
    sine = (height / fiber_length).minimum(torch.sin(maximum_pennation))
    return torch.sqrt(1.0 - sine ** 2)

