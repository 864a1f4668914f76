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

import numpy as np
import torch
from torch import nn

from . import curves
from .osim import ModelInfo
from .paths import PathPolynomial

_THELEN, _MILLARD, _DEGROOTE = 0, 1, 2
_CLASS_CODES = {"Thelen2003Muscle": _THELEN, "Millard2012EquilibriumMuscle": _MILLARD,
                "DeGrooteFregly2016Muscle": _DEGROOTE}


def _summed(shape: tuple[int, int], terms: list[tuple[int, int, float]]) -> torch.Tensor:
    """A float64 matrix of ``shape`` holding the (row, column, value) ``terms``, those at the same place
    added in order."""
    matrix = np.zeros(shape)
    if terms:
        rows, columns, values = zip(*terms)
        np.add.at(matrix, (np.array(rows), np.array(columns)), np.array(values, dtype=float))
    return torch.from_numpy(matrix)


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
        """Precompute the distinct monomials of all path polynomials and their derivatives.

        A length is ``sum_u C[m, u] x_u(q)`` over monomials x_u; its derivative along
        coordinate c is ``sum_p W[m, p] x_{r(p)}(q)`` over (monomial, coordinate) pairs p
        with coordinate c(p) = c. Muscles that cross the same joints share monomials
        (gait2392: 9,618 polynomial terms, 1,375 distinct monomials), so each is evaluated once.
        """
        monomials: dict[tuple, int] = {}
        pairs: dict[tuple, int] = {}
        length_terms, derivative_terms = [], []  # (muscle, index, coefficient)
        for m, p in enumerate(polynomials):
            columns = [self.coordinates.index(c) for c in p.coordinates]
            for term, coefficient in zip(p.exponents, p.coefficients):
                key = tuple((c, int(e)) for c, e in zip(columns, term) if e > 0)
                length_terms.append((m, monomials.setdefault(key, len(monomials)), coefficient))
                for slot, (c, e) in enumerate(key):
                    reduced = key[:slot] + ((c, e - 1),) * (e > 1) + key[slot + 1:]
                    pair = (monomials.setdefault(reduced, len(monomials)), c)
                    derivative_terms.append((m, pairs.setdefault(pair, len(pairs)), coefficient * e))
        # Pairs in coordinate order (stable): those of one coordinate are a slice (:meth:`paths`).
        ordered = sorted(pairs, key=lambda pair: pair[1])
        position = {pairs[pair]: i for i, pair in enumerate(ordered)}
        derivative_terms = [(m, position[p], coefficient) for m, p, coefficient in derivative_terms]
        width = max((len(key) for key in monomials), default=1) or 1
        self.max_order = max((e for key in monomials for _, e in key), default=0)
        n_muscles = len(polynomials)
        length_matrix = _summed((n_muscles, len(monomials)), length_terms)
        derivative_matrix = _summed((n_muscles, len(pairs)), derivative_terms)
        self.register_buffer("monomial_slots", torch.tensor(
            [[c for c, _ in k] + [0] * (width - len(k)) for k in monomials], dtype=torch.long))  # (U, D)
        self.register_buffer("monomial_exponents", torch.tensor(
            [[e for _, e in k] + [0] * (width - len(k)) for k in monomials], dtype=torch.long))  # (U, D)
        self.register_buffer("length_matrix", length_matrix)  # (n_muscles, U), m
        self.register_buffer("pair_monomial", torch.tensor([u for u, _ in ordered], dtype=torch.long))  # (P,)
        self.register_buffer("pair_coordinate", torch.tensor([c for _, c in ordered], dtype=torch.long))  # (P,)
        ends = self.pair_coordinate.bincount(minlength=len(self.coordinates)).cumsum(0).tolist()
        self.pair_slices = [slice(start, end) for start, end in zip([0] + ends[:-1], ends)]
        """The pairs of each coordinate (a slice of ``pair_monomial``)."""
        self.register_buffer("derivative_matrix", derivative_matrix)  # (n_muscles, P), m / rad or m / m

    def _build_parameters(self, info: ModelInfo) -> None:
        def vector(values):
            return torch.tensor(values, dtype=torch.float64)

        muscles = info.muscles
        self.register_buffer("muscle_class", torch.tensor([_CLASS_CODES[m.muscle_class] for m in muscles]))
        self.classes_present = frozenset(_CLASS_CODES[m.muscle_class] for m in muscles)
        """Muscle class codes in the model: :meth:`active_force` evaluates only their curves."""
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
    def _monomials(self, q: torch.Tensor) -> torch.Tensor:
        """Values of the distinct monomials, shape (..., U)."""
        n_powers = self.max_order + 1
        powers = torch.stack([q ** p for p in range(n_powers)], dim=-1).flatten(-2)  # (..., C * (P+1))
        index = (self.monomial_slots * n_powers + self.monomial_exponents).flatten()
        factors = powers.index_select(-1, index).reshape(*q.shape[:-1], *self.monomial_slots.shape)
        return factors.prod(dim=-1)

    def paths(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Muscle-tendon lengths (m) and moment arms (m) at coordinates ``q``.

        Returns
        -------
        lengths : tensor, shape (..., n_muscles)
        moment_arms : tensor, shape (..., n_muscles, n_coordinates)
            ``-d length / d q``, OpenSim's sign convention.
        """
        monomials = self._monomials(q)
        pair_values = monomials.index_select(-1, self.pair_monomial)  # (..., P)
        derivative = self.derivative_matrix.to(q.dtype)
        moment_arms = q.new_zeros(*q.shape[:-1], len(self.muscles), len(self.coordinates))
        for c, pairs in enumerate(self.pair_slices):
            moment_arms[..., c] = -(pair_values[..., pairs] @ derivative[:, pairs].T)
        return monomials @ self.length_matrix.to(q.dtype).T, moment_arms

    def lengths_and_speeds(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Muscle-tendon lengths (m) and lengthening speeds (m/s), each (..., n_muscles).

        Cheaper than :meth:`paths` (no moment arms): the speed is the derivative of
        each length along ``qd``.
        """
        monomials = self._monomials(q)
        rates = monomials.index_select(-1, self.pair_monomial) * qd.index_select(-1, self.pair_coordinate)
        return (monomials @ self.length_matrix.to(q.dtype).T, rates @ self.derivative_matrix.to(q.dtype).T)

    # ---- forces --------------------------------------------------------------------
    def active_force(self, lengths: torch.Tensor, speeds: torch.Tensor) -> torch.Tensor:
        """Rigid-tendon active fiber force at full activation (N), shape (..., n_muscles).

        OpenSim's ``calcInextensibleTendonActiveFiberForce(state, 1.0)``; ``speeds``
        are muscle-tendon lengthening speeds (m/s).
        """
        optimal = self.optimal_fiber_length
        height = optimal * torch.sin(self.pennation_angle_at_optimal)
        tendon_free = lengths - self.tendon_slack_length
        is_degroote = self.muscle_class == _DEGROOTE
        floor = torch.where(is_degroote, torch.zeros_like(self.minimum_fiber_length), self.minimum_fiber_length)
        fiber = curves.fiber_geometry(tendon_free, height, floor)  # DeGroote: no floor, as OpenSim
        cosine = curves.pennation_cosine(fiber, height, self.maximum_pennation_angle)
        normalized_length = fiber / optimal
        degroote_cosine = tendon_free / fiber
        velocity_cosine = torch.where(is_degroote, degroote_cosine, cosine)
        normalized_velocity = speeds * velocity_cosine / (optimal * self.max_contraction_velocity)

        multipliers = {}  # only the curves of the classes present (a third of the work for one class)
        if _THELEN in self.classes_present:
            multipliers[_THELEN] = (curves.thelen_force_length(normalized_length, self.shape_active)
                                    * curves.thelen_force_velocity(normalized_velocity, self.af, self.flen,
                                                                   self.fv_threshold)
                                    * cosine)
        if _MILLARD in self.classes_present:
            millard_cosine = curves.pennation_cosine(normalized_length, height, self.maximum_pennation_angle)
            multipliers[_MILLARD] = (curves.hermite(normalized_length, self.millard_active_length,
                                                    self.millard_active_value, self.millard_active_slope)
                                     * curves.hermite(normalized_velocity, self.millard_velocity,
                                                      self.millard_velocity_value, self.millard_velocity_slope)
                                     * millard_cosine)
        if _DEGROOTE in self.classes_present:
            multipliers[_DEGROOTE] = (curves.degroote_force_length(normalized_length, self.width_scale)
                                      * curves.degroote_force_velocity(normalized_velocity))
        codes = sorted(multipliers)
        multiplier = multipliers[codes[-1]]
        for code in codes[:-1]:
            multiplier = torch.where(self.muscle_class == code, multipliers[code], multiplier)
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

    def muscle_forces(self, q: torch.Tensor, qd: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """Muscle forces (N) = activation * rigid-tendon force at full activation, (..., n_muscles)."""
        return activations * self.active_force(*self.lengths_and_speeds(q, qd))


def path_errors(muscle_model: MusculoskeletalModel, model_path: str, q, qd) -> dict:
    """RMS differences between the torch muscle module and OpenSim on frames ``q``, ``qd``.

    Parameters
    ----------
    q, qd : ndarray, shape (n_frames, n_coordinates)
        In ``muscle_model.coordinates`` order.

    Returns
    -------
    dict
        ``length_mm`` and ``moment_arm_mm`` (worst coordinate) per muscle, RMS over
        frames in millimetres; ``active_force_N`` per muscle (RMS, N); and the worst of each.
    """
    from .child import run_in_child
    from .metrics import rmse
    from .osim import muscle_reference

    reference = run_in_child("muscle reference values", muscle_reference, model_path,
                             muscle_model.coordinates, q, qd)
    with torch.no_grad():
        model = muscle_model.to(torch.float64)
        q_t, qd_t = torch.as_tensor(q, dtype=torch.float64), torch.as_tensor(qd, dtype=torch.float64)
        lengths, moment_arms = model.paths(q_t)
        force = model.active_force(lengths, -(moment_arms * qd_t.unsqueeze(-2)).sum(-1))  # as muscle_matrix
    length = rmse(reference["lengths"], lengths.numpy()) * 1000
    arm = rmse(reference["moment_arms"], moment_arms.numpy()).max(axis=1) * 1000
    force_error = rmse(reference["active_force"], force.numpy())
    names = muscle_model.muscles
    return {"length_mm": dict(zip(names, length.round(4).tolist())),
            "moment_arm_mm": dict(zip(names, arm.round(4).tolist())),
            "active_force_N": dict(zip(names, force_error.round(3).tolist())),
            "worst_length_mm": [names[int(length.argmax())], float(length.max())],
            "worst_moment_arm_mm": [names[int(arm.argmax())], float(arm.max())],
            "worst_active_force_N": [names[int(force_error.argmax())], float(force_error.max())]}
