"""The differentiable musculoskeletal model (torch).

:class:`MusculoskeletalModel` maps coordinates to muscle-tendon lengths and
moment arms (OpenSim's path polynomials, moment arm = -dl/dq), lengths and
speeds to each muscle's rigid-tendon force at full activation (its own OpenSim
curves, :mod:`opensim_pinn.curves`), and activations to muscle forces and
generalised forces. Everything follows the dtype and device of the inputs'
module (``model.to(...)``); units are SI.

Shapes: ``q``, ``qd`` are ``(..., n_coordinates)`` over the model's unlocked
coordinates in :attr:`coordinates` order; muscle quantities are
``(..., n_muscles)``; moment arms ``(..., n_muscles, n_coordinates)``.

Examples
--------
>>> muscles = MusculoskeletalModel(info, polynomials)      # doctest: +SKIP
>>> lengths, moment_arms = muscles.paths(q)                 # doctest: +SKIP
>>> tau = muscles.generalized_forces(q, qd, activations)    # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import curves
from .osim import ModelInfo
from .paths import PathPolynomial

_CLASS_CODES = {"Thelen2003Muscle": 0, "Millard2012EquilibriumMuscle": 1, "DeGrooteFregly2016Muscle": 2}
_THELEN, _MILLARD, _DEGROOTE = 0, 1, 2


class MusculoskeletalModel(nn.Module):
    """Muscles of an OpenSim model as a torch module (buffers only: nothing is trained here).

    Parameters
    ----------
    info : ModelInfo
        From :func:`opensim_pinn.osim.model_info`.
    polynomials : list of PathPolynomial
        One per muscle, from :func:`opensim_pinn.paths.fit_paths`.
    """

    def __init__(self, info: ModelInfo, polynomials: list[PathPolynomial]):
        super().__init__()
        self.coordinates = [c.name for c in info.free_coordinates]
        self.muscles = [m.name for m in info.muscles]
        by_name = {p.muscle: p for p in polynomials}
        self._build_paths([by_name[name] for name in self.muscles])
        self._build_parameters(info)

    # ---- construction -------------------------------------------------------------
    def _build_paths(self, polynomials: list[PathPolynomial]) -> None:
        order = max(int(p.exponents.max(initial=0)) for p in polynomials)
        width = max(len(p.coordinates) for p in polynomials)
        slots, exponents, coefficients, owner = [], [], [], []
        for m, p in enumerate(polynomials):
            columns = [self.coordinates.index(c) for c in p.coordinates]
            for term, coefficient in zip(p.exponents, p.coefficients):
                padded = list(term) + [0] * (width - len(term))
                slots.append(columns + [0] * (width - len(columns)))
                exponents.append(padded)
                coefficients.append(coefficient)
                owner.append(m)
        self.max_order = order
        self.register_buffer("term_slots", torch.tensor(slots, dtype=torch.long))  # (K, D)
        self.register_buffer("term_exponents", torch.tensor(exponents, dtype=torch.long))  # (K, D)
        self.register_buffer("term_coefficients", torch.tensor(coefficients, dtype=torch.float64))
        self.register_buffer("term_owner", torch.tensor(owner, dtype=torch.long))  # (K,)

    def _build_parameters(self, info: ModelInfo) -> None:
        def vector(values):
            return torch.tensor(values, dtype=torch.float64)

        muscles = info.muscles
        self.register_buffer("muscle_class", torch.tensor([_CLASS_CODES[m.muscle_class] for m in muscles]))
        self.register_buffer("max_isometric_force", vector([m.max_isometric_force for m in muscles]))
        self.register_buffer("optimal_fiber_length", vector([m.optimal_fiber_length for m in muscles]))
        self.register_buffer("tendon_slack_length", vector([m.tendon_slack_length for m in muscles]))
        self.register_buffer("pennation_angle_at_optimal",
                             vector([m.pennation_angle_at_optimal for m in muscles]))
        self.register_buffer("max_contraction_velocity", vector([m.max_contraction_velocity for m in muscles]))
        self.register_buffer("min_control", vector([m.min_control for m in muscles]))
        self.register_buffer("max_control", vector([m.max_control for m in muscles]))

        def curve(key, default):
            return vector([m.curves.get(key, default) for m in muscles])

        self.register_buffer("minimum_fiber_length", curve("minimum_fiber_length", 0.0))
        self.register_buffer("maximum_pennation_angle", curve("maximum_pennation_angle", math.acos(0.1)))
        self.register_buffer("shape_active", curve("KshapeActive", 0.45))
        self.register_buffer("af", curve("Af", 0.25))
        self.register_buffer("flen", curve("Flen", 1.4))
        self.register_buffer("fv_threshold", curve("fv_linear_extrap_threshold", 0.95))
        self.register_buffer("width_scale", curve("active_force_width_scale", 1.0))
        n_knots = max((len(m.curves.get("active_length", [])) for m in muscles), default=0) or 2

        def table(key):
            rows = [m.curves.get(key) or torch.linspace(0.0, 1.0, n_knots).tolist() for m in muscles]
            return vector(rows)

        for key in ("active_length", "active_value", "active_slope",
                    "velocity", "velocity_value", "velocity_slope"):
            self.register_buffer(f"millard_{key}", table(key))

    # ---- paths ---------------------------------------------------------------------
    def paths(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Muscle-tendon lengths (m) and moment arms (m) at coordinates ``q``.

        Returns
        -------
        lengths : tensor, shape (..., n_muscles)
        moment_arms : tensor, shape (..., n_muscles, n_coordinates)
            ``-d length / d q``, OpenSim's sign convention.
        """
        powers = torch.stack([q ** p for p in range(self.max_order + 1)], dim=-1)  # (..., C, P+1)
        factors = powers[..., self.term_slots, self.term_exponents]  # (..., K, D)
        coefficients = self.term_coefficients.to(q.dtype)
        terms = factors.prod(dim=-1) * coefficients  # (..., K)
        n_muscles, n_coordinates = len(self.muscles), len(self.coordinates)
        lengths = q.new_zeros(*q.shape[:-1], n_muscles).index_add(-1, self.term_owner, terms)
        # d term / d q_slot = e * q^(e-1) * prod(other factors)
        lower = powers[..., self.term_slots, (self.term_exponents - 1).clamp_min(0)]
        derivative = self.term_exponents.to(q.dtype) * lower
        width = factors.shape[-1]
        partials = []
        for d in range(width):
            others = torch.cat([factors[..., :d], factors[..., d + 1:]], dim=-1).prod(dim=-1)
            partials.append(derivative[..., d] * others * coefficients)
        partials = torch.stack(partials, dim=-1)  # (..., K, D)
        flat_index = (self.term_owner[:, None] * n_coordinates + self.term_slots).reshape(-1)
        gradient = q.new_zeros(*q.shape[:-1], n_muscles * n_coordinates).index_add(
            -1, flat_index, partials.reshape(*q.shape[:-1], -1))
        return lengths, -gradient.reshape(*q.shape[:-1], n_muscles, n_coordinates)

    # ---- forces --------------------------------------------------------------------
    def active_force(self, lengths: torch.Tensor, speeds: torch.Tensor) -> torch.Tensor:
        """Rigid-tendon active fiber force at full activation (N), shape (..., n_muscles).

        OpenSim's ``calcInextensibleTendonActiveFiberForce(state, 1.0)``; ``speeds``
        are muscle-tendon lengthening speeds (m/s).
        """
        optimal = self.optimal_fiber_length
        height = optimal * torch.sin(self.pennation_angle_at_optimal)
        tendon_free = lengths - self.tendon_slack_length
        fiber = curves.fiber_geometry(tendon_free, height, self.minimum_fiber_length)
        cosine = curves.pennation_cosine(fiber, height, self.maximum_pennation_angle)
        normalized_length = fiber / optimal
        degroote_cosine = tendon_free / torch.sqrt(height ** 2 + tendon_free ** 2)
        is_degroote = self.muscle_class == _DEGROOTE
        velocity_cosine = torch.where(is_degroote, degroote_cosine, cosine)
        normalized_velocity = speeds * velocity_cosine / (optimal * self.max_contraction_velocity)

        thelen = (curves.thelen_force_length(normalized_length, self.shape_active)
                  * curves.thelen_force_velocity(normalized_velocity, self.af, self.flen, self.fv_threshold)
                  * cosine)
        millard_cosine = curves.pennation_cosine(normalized_length, height, self.maximum_pennation_angle)
        millard = (curves.hermite(normalized_length, self.millard_active_length,
                                  self.millard_active_value, self.millard_active_slope)
                   * curves.hermite(normalized_velocity, self.millard_velocity,
                                    self.millard_velocity_value, self.millard_velocity_slope)
                   * millard_cosine)
        degroote = (curves.degroote_force_length(normalized_length, self.width_scale)
                    * curves.degroote_force_velocity(normalized_velocity))
        multiplier = torch.where(self.muscle_class == _THELEN, thelen,
                                 torch.where(self.muscle_class == _MILLARD, millard, degroote))
        too_short = (~is_degroote) & ((tendon_free < self.minimum_fiber_length
                                       * torch.cos(self.maximum_pennation_angle))
                                      | (fiber <= self.minimum_fiber_length))
        return torch.where(too_short, torch.zeros_like(multiplier), multiplier * self.max_isometric_force)

    def muscle_matrix(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generalised force per unit activation, and the force at full activation.

        Returns
        -------
        matrix : tensor, shape (..., n_coordinates, n_muscles)
            ``moment_arm * active_force``: N m (or N) per unit activation.
        active_force : tensor, shape (..., n_muscles)
        """
        lengths, moment_arms = self.paths(q)
        speeds = -(moment_arms * qd.unsqueeze(-2)).sum(-1)
        force = self.active_force(lengths, speeds)
        return (moment_arms * force.unsqueeze(-1)).transpose(-1, -2), force

    def generalized_forces(self, q: torch.Tensor, qd: torch.Tensor, activations: torch.Tensor
                           ) -> torch.Tensor:
        """Generalised forces of the muscles at ``activations``, shape (..., n_coordinates)."""
        matrix, _ = self.muscle_matrix(q, qd)
        return (matrix * activations.unsqueeze(-2)).sum(-1)
