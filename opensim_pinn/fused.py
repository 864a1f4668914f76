"""Fused inference parts for the streaming frame step: few, batched tensor operations per frame.

Everything that depends only on the checkpoint is computed once, in float64, and
stored as float32 buffers:

- :class:`FusedEncoder`: the per-frame encoder and feature integration of
  :class:`~opensim_pinn.network.MJCABiGRU` (``mjca`` or ``bigru``) with the input
  normalisation folded into the first weights. For ``mjca`` each joint's (q, qd, qdd)
  goes through one batched product to its residual, query, key and value (the joint
  projection, the attention's input projection and its scale fused); the GRF token's
  key and value come from one more; the LayerNorm's affine part is folded into the
  feature integration.
- :class:`FusedMuscleForces`: muscle forces: the distinct monomials of all muscles'
  path polynomials and their time derivatives (all powers of all coordinates and their
  rates, one gather, the product over each monomial's slots with the product rule), one
  batched matrix product per block of coordinate groups for lengths and lengthening
  speeds together, then the rigid-tendon force curves of all muscles at once with their
  constants precomputed.

Both give the numbers of the modules they are built from, up to float32 rounding
(tests/test_fused.py). They trace to TorchScript and export to ONNX.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import curves
from .muscle import _DEGROOTE, _MILLARD, _THELEN, MusculoskeletalModel


def _f32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float32).contiguous()


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU, ``x Phi(x)``, written with ``erf``: equal to :func:`torch.nn.functional.gelu` to float32
    rounding, and several times faster in eager PyTorch on one frame's short vectors (as ONNX exports it)."""
    return x * torch.erf(x * 0.5 ** 0.5).mul_(0.5).add_(0.5)


class FusedEncoder(nn.Module):
    """Raw features (K, n_features) to the frame features (K, 2 * gru_hidden) the GRU reads.

    Parameters
    ----------
    network : MJCABiGRU
        ``mjca`` or ``bigru`` architecture.
    mean, std : tensor, shape (n_features,)
        The network's input normalisation.
    """

    def __init__(self, network, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        mean, std = mean.double(), std.double()
        integration = network.integration[0]
        w_int, b_int = integration.weight.detach().double(), integration.bias.detach().double()
        self.mjca = network.config.architecture == "mjca"
        if not self.mjca:  # bigru: normalisation into the integration layer
            self.register_buffer("integration_weight", _f32((w_int / std).T))
            self.register_buffer("integration_bias", _f32(b_int - w_int @ (mean / std)))
            return
        encoder = network.encoder
        joints, attention, norm = encoder.joints, encoder.attention, encoder.norm
        c, d = joints.weight.shape[0], joints.weight.shape[2]
        heads = attention.num_heads
        self.n_coordinates, self.d_model, self.heads = c, d, heads
        self.eps = float(norm.eps)
        w_in = attention.in_proj_weight.detach().double()
        b_in = attention.in_proj_bias.detach().double()
        scale = 1.0 / math.sqrt(d // heads)
        w_q, w_k, w_v = w_in[:d] * scale, w_in[d:2 * d], w_in[2 * d:]
        b_q, b_k, b_v = b_in[:d] * scale, b_in[d:2 * d], b_in[2 * d:]
        w_o = attention.out_proj.weight.detach().double()
        b_o = attention.out_proj.bias.detach().double()
        # Joint c's token from its raw (q, qd, qdd): per_joint[c, j] = (f[j*C + c] - mean) / std.
        m = mean[:3 * c].reshape(3, c).T  # (C, 3)
        s = std[:3 * c].reshape(3, c).T
        w_joint = joints.weight.detach().double() / s[..., None]  # (C, 3, d)
        b_joint = joints.bias.detach().double() - torch.einsum("cj,cjd->cd", m / s, joints.weight.detach().double())
        # Each joint token to [residual (+ out_proj bias), query, key, value]: (C, 3, 4d) and (C, 4d).
        maps = [torch.eye(d, dtype=torch.float64), w_q.T, w_k.T, w_v.T]
        shifts = [b_o, b_q, b_k, b_v]
        self.register_buffer("joint_weight", _f32(torch.cat([w_joint @ a for a in maps], -1)))
        self.register_buffer("joint_bias", _f32(torch.cat([b_joint @ a + b for a, b in zip(maps, shifts)], -1)
                                                .unsqueeze(1)))  # (C, 1, 4d)
        self.has_grf = encoder.grf is not None
        if self.has_grf:  # the GRF token's key and value: (G, 2d), (2d,)
            w_g, b_g = encoder.grf.weight.detach().double(), encoder.grf.bias.detach().double()
            w_grf = w_g.T / std[3 * c:, None]
            b_grf = b_g - (mean[3 * c:] / std[3 * c:]) @ w_g.T
            self.register_buffer("grf_weight", _f32(torch.cat([w_grf @ w_k.T, w_grf @ w_v.T], -1)))
            self.register_buffer("grf_bias", _f32(torch.cat([b_grf @ w_k.T + b_k, b_grf @ w_v.T + b_v])))
        self.register_buffer("out_weight", _f32(w_o.T))  # (d, d)
        gamma = norm.weight.detach().double().repeat(c)
        beta = norm.bias.detach().double().repeat(c)
        self.register_buffer("integration_weight", _f32((w_int * gamma).T))  # (C*d, 2H)
        self.register_buffer("integration_bias", _f32(b_int + w_int @ beta))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.mjca:
            return gelu(torch.addmm(self.integration_bias, features, self.integration_weight))
        c, d, h = self.n_coordinates, self.d_model, self.heads
        k = features.shape[0]
        per_joint = features[:, :3 * c].reshape(k, 3, c).permute(2, 0, 1).contiguous()  # (C, K, 3); bmm: 4x faster
        joint = torch.bmm(per_joint, self.joint_weight) + self.joint_bias  # (C, K, 4d)
        residual, queries = joint[..., :d], joint[..., d:2 * d]
        keys_values = joint[..., 2 * d:]  # (C, K, 2d)
        if self.has_grf:
            grf = torch.addmm(self.grf_bias, features[:, 3 * c:], self.grf_weight)  # (K, 2d)
            keys_values = torch.cat([keys_values, grf.unsqueeze(0)], 0)  # (C+1, K, 2d)
        n_keys = keys_values.shape[0]
        dh = d // h
        q = queries.reshape(c, k * h, dh).transpose(0, 1)  # (K*h, C, dh)
        kv = keys_values.reshape(n_keys, k, 2, h, dh).permute(2, 1, 3, 0, 4).reshape(2, k * h, n_keys, dh)
        weights = torch.softmax(torch.bmm(q, kv[0].transpose(1, 2)), -1)  # (K*h, C, C+1)
        attended = torch.bmm(weights, kv[1]).reshape(k, h, c, dh).permute(0, 2, 1, 3).reshape(k, c, d)
        mixed = torch.matmul(attended, self.out_weight) + residual.transpose(0, 1)  # (K, C, d)
        normed = F.layer_norm(mixed, (d,), eps=self.eps).reshape(k, c * d)
        return gelu(torch.addmm(self.integration_bias, normed, self.integration_weight))


class HermiteCurve(nn.Module):
    """:func:`opensim_pinn.curves.hermite` of one curve per muscle, its tables flattened once: x (..., n_muscles)
    to the curve's values (any leading shape, in ONNX too)."""

    def __init__(self, knots: torch.Tensor, values: torch.Tensor, slopes: torch.Tensor):
        super().__init__()
        n_muscles, self.n_knots = knots.shape
        step = knots[:, 1] - knots[:, 0]
        self.register_buffer("start", _f32(knots[:, 0]))
        self.register_buffer("end", _f32(knots[:, -1]))
        self.register_buffer("inverse_step", _f32(1 / step))
        self.register_buffer("offsets", torch.arange(n_muscles) * self.n_knots)
        self.register_buffer("values", _f32(values.flatten()))
        self.register_buffer("slopes", _f32((slopes * step[:, None]).flatten()))  # per unit of the knot interval
        self.register_buffer("first_value", _f32(values[:, 0]))
        self.register_buffer("first_slope", _f32(slopes[:, 0]))
        self.register_buffer("last_value", _f32(values[:, -1]))
        self.register_buffer("last_slope", _f32(slopes[:, -1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = (x - self.start) * self.inverse_step
        index = position.floor().clamp(0, self.n_knots - 2)
        s = (position - index).clamp(0.0, 1.0)
        flat = index.long() + self.offsets
        y0, y1, d0, d1 = self.values[flat], self.values[flat + 1], self.slopes[flat], self.slopes[flat + 1]
        s2 = s * s
        s3 = s2 * s
        inside = ((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * d0 + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * d1)
        below = torch.addcmul(self.first_value, self.first_slope, x - self.start)
        above = torch.addcmul(self.last_value, self.last_slope, x - self.end)
        return torch.where(x < self.start, below, torch.where(x > self.end, above, inside))


class FusedMuscleForces(nn.Module):
    """Muscle forces (N): ``forward(q, qd, activations)``, shapes (..., n_coordinates) and (..., n_muscles), float32.

    The same lengths, speeds and rigid-tendon forces as
    :meth:`MusculoskeletalModel.muscle_forces <opensim_pinn.muscle.MusculoskeletalModel.muscle_forces>`.
    """

    def __init__(self, muscles: MusculoskeletalModel):
        super().__init__()
        m = copy.deepcopy(muscles).to(torch.float64)
        self.n_coordinates, self.max_order = len(m.coordinates), max(1, m.max_order)
        width = self.max_order + 1
        self.register_buffer("exponents", torch.arange(width, dtype=torch.float32))
        # d/dq of q**e (column e) from the powers: powers @ power_slope = e q**(e - 1)
        self.register_buffer("power_slope", torch.diag(torch.arange(1, width, dtype=torch.float32), 1))
        self.n_slots = m.monomial_slots.shape[1]  # S slots per monomial: a coordinate's power each
        self.length_blocks = []  # (buffer name, groups, monomials per group), in column order
        columns, positions, offset = [], {}, 0  # each block's monomials, group after group; muscles' output columns
        for i, members in enumerate(_length_blocks(_length_groups(m.length_matrix, m.monomial_slots,
                                                                  m.monomial_exponents))):
            n_monomials, n_muscles = (max(len(group[k]) for group in members) for k in (1, 0))
            block = torch.zeros(len(members), n_monomials, n_muscles, dtype=torch.float64)
            for g, (muscles, support) in enumerate(members):  # zero coefficients pad a smaller group
                block[g, :len(support), :len(muscles)] = m.length_matrix[muscles][:, support].T
                positions.update((j, offset + g * n_muscles + k) for k, j in enumerate(muscles))
                columns += support + [0] * (n_monomials - len(support))
            offset += len(members) * n_muscles
            self.register_buffer(f"length_block_{i}", _f32(block))  # (groups, monomials, muscles)
            self.length_blocks.append((f"length_block_{i}", len(members), n_monomials))
        self.n_columns = len(columns)
        # slot-major: slot s of every column, then slot s + 1 (one gather, then one split into slots)
        self.register_buffer("monomial_index", (m.monomial_slots * width + m.monomial_exponents)[columns].T.flatten())
        self.register_buffer("muscle_columns", torch.tensor([positions[j] for j in range(len(m.muscles))]))
        self.classes = frozenset(m.classes_present)
        is_degroote = m.muscle_class == _DEGROOTE
        floor = torch.where(is_degroote, torch.zeros_like(m.minimum_fiber_length), m.minimum_fiber_length)
        height = m.optimal_fiber_length * torch.sin(m.pennation_angle_at_optimal)
        sin_max = torch.sin(m.maximum_pennation_angle)
        constants = {
            "tendon_slack_length": m.tendon_slack_length, "height_squared": height ** 2, "floor": floor,
            "height": height, "sin_max_squared": sin_max ** 2, "inverse_optimal": 1 / m.optimal_fiber_length,
            "inverse_max_speed": 1 / (m.optimal_fiber_length * m.max_contraction_velocity),
            "max_isometric_force": m.max_isometric_force,
            # too short (zero force, not DeGroote): tendon-free length below this, or fiber at its floor
            "short_tendon": torch.where(is_degroote, torch.full_like(floor, -math.inf),
                                        m.minimum_fiber_length * torch.cos(m.maximum_pennation_angle)),
            "short_fiber": torch.where(is_degroote, torch.full_like(floor, -math.inf), m.minimum_fiber_length)}
        if _THELEN in self.classes:  # thelen_force_length / thelen_force_velocity with their constants
            af, flen, threshold = m.af, m.flen, m.fv_threshold
            cc = 2.0 + 2.0 / af
            knee_force = threshold * flen
            knee_velocity = (flen - 1.0) * (1.0 - knee_force) / (cc * (knee_force - flen))
            slope = cc * (flen - knee_force) ** 2 / (flen - 1.0) ** 2
            constants.update(negative_inverse_shape=-1 / m.shape_active, inverse_af=1 / af,
                             eccentric_a=flen - 1.0, eccentric_b=cc * flen, eccentric_c=cc, knee_velocity=knee_velocity,
                             linear_intercept=knee_force - slope * knee_velocity, linear_slope=slope)
        for name, value in constants.items():
            self.register_buffer(name, _f32(value))
        self.register_buffer("muscle_class", m.muscle_class.clone())
        if _MILLARD in self.classes:
            self.register_buffer("max_pennation", _f32(m.maximum_pennation_angle))
            self.millard_length = HermiteCurve(m.millard_active_length, m.millard_active_value, m.millard_active_slope)
            self.millard_velocity = HermiteCurve(m.millard_velocity, m.millard_velocity_value, m.millard_velocity_slope)
        if _DEGROOTE in self.classes:
            self.register_buffer("width_scale", _f32(m.width_scale))

    def lengths_and_speeds(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Muscle-tendon lengths (m) and lengthening speeds (m/s), each (..., n_muscles), from q, qd
        (..., n_coordinates): the value and time derivative (product rule) of each group's monomials in one
        gather, then through the group's length polynomials' coefficients, one batched matrix product for the
        groups of each shape (:func:`_length_groups`)."""
        powers = torch.pow(q.unsqueeze(-1), self.exponents)  # (..., C, P+1)
        rates = (powers @ self.power_slope) * qd.unsqueeze(-1)  # d(q**e)/dt
        table = torch.stack([powers.flatten(-2), rates.flatten(-2)], -2)  # (..., 2, C (P+1))
        # gather, not index_select: ONNX Runtime's GatherElements is three times faster than its Gather here
        factors = table.gather(-1, self.monomial_index.expand(*table.shape[:-1], -1))  # (..., 2, S N): powers, rates
        slots = factors.unflatten(-1, (self.n_slots, self.n_columns)).flatten(-3, -2).split(1, -2)
        value, rate = slots[0], slots[self.n_slots]  # each column's monomial and its time derivative, (..., 1, N):
        for k in range(1, self.n_slots):  # the product over its slots, with the product rule
            power, power_rate = slots[k], slots[self.n_slots + k]
            value, rate = value * power, torch.addcmul(rate * power, value, power_rate)
        monomials = torch.cat([value, rate], -2)  # (..., 2, N)
        rows = monomials.reshape(-1, monomials.shape[-1])  # (R, N): R = 2 per frame
        pieces = rows.split([n_groups * n for _, n_groups, n in self.length_blocks], -1)
        # groups first, (groups, R, monomials) @ (groups, monomials, muscles): a batched product that does not
        # broadcast, so the coefficients are read in place, not copied
        blocks = [torch.bmm(piece.unflatten(-1, (n_groups, n)).transpose(0, 1), getattr(self, name))
                  .transpose(0, 1).flatten(-2) for piece, (name, n_groups, n) in zip(pieces, self.length_blocks)]
        columns = torch.cat(blocks, -1).index_select(-1, self.muscle_columns)  # (R, n_muscles)
        # back to (..., 2, n_muscles); -1 keeps the frames a dynamic axis in ONNX
        lengths, speeds = columns.reshape((-1,) + monomials.shape[1:-1] + columns.shape[-1:]).unbind(-2)
        return lengths, speeds

    def active_force(self, lengths: torch.Tensor, speeds: torch.Tensor) -> torch.Tensor:
        """Rigid-tendon force at full activation (N), as :meth:`MusculoskeletalModel.active_force`."""
        tendon_free = lengths - self.tendon_slack_length
        fiber = torch.addcmul(self.height_squared, tendon_free, tendon_free).sqrt().maximum(self.floor)
        sine = self.height / fiber
        cosine = (1.0 - (sine * sine).minimum(self.sin_max_squared)).sqrt()
        length = fiber * self.inverse_optimal
        velocity_cosine = cosine
        if _DEGROOTE in self.classes:
            velocity_cosine = torch.where(self.muscle_class == _DEGROOTE, tendon_free / fiber, cosine)
        velocity = speeds * velocity_cosine * self.inverse_max_speed
        multiplier = None
        if _THELEN in self.classes:
            stretch = length - 1.0
            force_length = torch.exp(stretch * stretch * self.negative_inverse_shape)
            concentric = (1.0 + velocity) / (1.0 - velocity * self.inverse_af)
            eccentric = (torch.addcmul(self.eccentric_a, self.eccentric_b, velocity)
                         / torch.addcmul(self.eccentric_a, self.eccentric_c, velocity))
            linear = torch.addcmul(self.linear_intercept, self.linear_slope, velocity)
            force_velocity = torch.where(velocity <= 0, concentric,
                                         torch.where(velocity < self.knee_velocity, eccentric, linear))
            force_velocity = force_velocity.clamp_min(0.0)  # also zero for v <= -1: (1 + v) <= 0 there
            multiplier = force_length * force_velocity * cosine
        if _MILLARD in self.classes:
            millard_cosine = curves.pennation_cosine(length, self.height, self.max_pennation)
            millard = self.millard_length(length) * self.millard_velocity(velocity) * millard_cosine
            multiplier = self._for_class(_MILLARD, millard, multiplier)
        if _DEGROOTE in self.classes:
            degroote = (curves.degroote_force_length(length, self.width_scale)
                        * curves.degroote_force_velocity(velocity))
            multiplier = self._for_class(_DEGROOTE, degroote, multiplier)
        too_short = (tendon_free < self.short_tendon) | (fiber <= self.short_fiber)
        return torch.where(too_short, 0.0, multiplier * self.max_isometric_force)

    def _for_class(self, code: int, values: torch.Tensor, others: torch.Tensor | None) -> torch.Tensor:
        """``values`` for the muscles of class ``code``, ``others`` (the other classes' values, if any) elsewhere."""
        return values if others is None else torch.where(self.muscle_class == code, values, others)

    def forward(self, q: torch.Tensor, qd: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        return activations * self.active_force(*self.lengths_and_speeds(q, qd))


class FusedNetwork(nn.Module):
    """What both the streaming step and the exported window model compute with, from a fitted trainer (float32).

    ``encoder`` (:class:`FusedEncoder`), the GRU cell weights of both directions
    (:meth:`gru`; :meth:`first_step`: both directions' first step, the GRU cell written out), the muscle
    and actuator heads side by side (:meth:`heads`: one first layer, a block-diagonal
    second one), the activation bounds ``lower`` and ``span`` (n_muscles,),
    ``control_scale`` and ``actuator_scale`` (n_actuators,: the head's outputs to controls,
    and to forces = control x optimal force) and ``muscle_forces``
    (:class:`FusedMuscleForces`). Networks with a per-frame encoder and one GRU layer only
    (:func:`fusable`).
    """

    def __init__(self, trainer):
        super().__init__()
        network = copy.deepcopy(trainer.network).cpu().float().eval()
        mean = torch.tensor(trainer.feature_mean, dtype=torch.float32)
        std = torch.tensor(trainer.feature_std, dtype=torch.float32)
        self.encoder = FusedEncoder(network, mean, std)
        self.muscle_forces = FusedMuscleForces(trainer.muscle_model)
        self.n_coordinates, self.n_features = len(trainer.coordinates), len(trainer.feature_mean)
        self.hidden_size = network.gru.hidden_size
        lower, upper = trainer._bounds("cpu")
        self.register_buffer("lower", lower)
        self.register_buffer("span", upper - lower)
        for direction, suffix in (("forward", ""), ("backward", "_reverse")):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.register_buffer(f"{direction}_{name}", _f32(getattr(network.gru, f"{name}_l0{suffix}")))
        self._first_step_weights()
        heads = [network.head] + ([network.actuator_head] if network.actuator_head is not None else [])
        self.n_muscles = network.head[2].out_features
        self.register_buffer("head_weight", _f32(torch.cat([h[0].weight for h in heads]).T))
        self.register_buffer("head_bias", _f32(torch.cat([h[0].bias for h in heads])))
        self.register_buffer("out_weight", _f32(torch.block_diag(*(h[2].weight for h in heads)).T))
        self.register_buffer("out_bias", _f32(torch.cat([h[2].bias for h in heads])))
        self.n_actuators = len(trainer.actuators) if network.actuator_head is not None else 0
        optimal = {a.name: a.optimal_force for a in trainer.info.actuators}
        scale = np.asarray(trainer.control_scale, float).reshape(-1)[:self.n_actuators]
        self.register_buffer("control_scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("actuator_scale", torch.tensor(
            scale * np.array([optimal[a] for a in trainer.actuators[:self.n_actuators]]), dtype=torch.float32))

    def gru(self, x: torch.Tensor, h0: torch.Tensor, direction: str) -> torch.Tensor:
        """One direction's GRU over ``x`` (time, batch, D) from ``h0`` (1, batch, H): outputs (time, batch, H)."""
        weights = [getattr(self, f"{direction}_{n}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        return torch.gru(x, h0, weights, True, 1, 0.0, False, False, False)[0]

    def _first_step_weights(self) -> None:
        """:meth:`first_step`'s weights, from the GRU cell weights: both directions' gates side by side,
        columns [r_f r_b z_f z_b n_f n_b].

        ``step_input_weight`` (D, 6H) with the input biases, and the hidden biases of r and z (the backward
        direction starts from zero: its hidden part is its bias alone); ``step_hidden_weight`` (H, 6H), the
        forward direction's hidden weights (zeros in the backward columns), with the hidden biases of n.
        """
        h = self.hidden_size
        parts = {(name, direction[0]): dict(zip("rzn", getattr(self, f"{direction}_{name}").double().split(h)))
                 for direction in ("forward", "backward") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        columns = [(gate, d) for gate in "rzn" for d in "fb"]
        zeros = torch.zeros(h, h, dtype=torch.float64)
        self.register_buffer("step_input_weight", _f32(torch.cat([parts["weight_ih", d][g] for g, d in columns]).T))
        self.register_buffer("step_input_bias", _f32(torch.cat(
            [parts["bias_ih", d][g] + (parts["bias_hh", d][g] if g != "n" else 0) for g, d in columns])))
        self.register_buffer("step_hidden_weight", _f32(torch.cat(
            [parts["weight_hh", d][g] if d == "f" else zeros for g, d in columns]).T))
        self.register_buffer("step_hidden_bias", _f32(torch.cat(
            [parts["bias_hh", d][g] if g == "n" else torch.zeros(h, dtype=torch.float64) for g, d in columns])))

    def first_step(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Both directions' first step over one frame ``x`` (batch, D): the forward one from ``hidden``
        (batch, H), the backward one from zero; outputs (batch, 2H), forward first.

        The GRU cell of :class:`torch.nn.GRU` (``r``, ``z``, ``n`` gates) written out for both directions at
        once: a dozen small operations instead of a GRU call, which costs several times more for one step.
        """
        h = self.hidden_size
        inputs = torch.addmm(self.step_input_bias, x, self.step_input_weight)  # (batch, 6H)
        recurrent = torch.addmm(self.step_hidden_bias, hidden, self.step_hidden_weight)
        reset_update = torch.sigmoid(inputs[:, :4 * h] + recurrent[:, :4 * h])  # [r_f r_b z_f z_b]
        new = torch.tanh(torch.addcmul(inputs[:, 4 * h:], reset_update[:, :2 * h], recurrent[:, 4 * h:]))
        previous = torch.cat([hidden, torch.zeros_like(hidden)], -1)  # [h_f, 0]
        return torch.addcmul(new, reset_update[:, 2 * h:], previous - new)  # (1 - z) n + z h

    def heads(self, trunk: torch.Tensor) -> torch.Tensor:
        """Both heads' outputs (..., n_muscles + n_actuators) from the trunk (..., 2H + D): logits, then the
        actuator head's normalised controls."""
        return torch.addmm(self.out_bias, gelu(torch.addmm(self.head_bias, trunk, self.head_weight)),
                           self.out_weight)


def _length_groups(length_matrix: torch.Tensor, slots: torch.Tensor, exponents: torch.Tensor) -> list:
    """The muscles whose length polynomials involve the same coordinates, with the monomials they use.

    ``length_matrix`` (n_muscles, U) holds each muscle's coefficients of the U distinct monomials
    (``slots``, ``exponents``: (U, S), a coordinate and its power in each slot). Returns a list of
    (muscles, monomials): lists of indices; the monomials are the union of the muscles' non-zero
    coefficients (at least one). A group's coefficients are a dense block (a muscle of lower degree
    has zeros in it); together the blocks hold far fewer coefficients than ``length_matrix``
    (gait2392: 11 800 of 128 000).
    """
    involved = [frozenset(c for c, e in zip(s, x) if e > 0) for s, x in zip(slots.tolist(), exponents.tolist())]
    groups: dict[frozenset, tuple[list, set]] = {}
    for j, row in enumerate(length_matrix):
        used = row.nonzero().flatten().tolist() or [0]
        muscles, support = groups.setdefault(frozenset().union(*(involved[u] for u in used)), ([], set()))
        muscles.append(j)
        support.update(used)
    return [(muscles, sorted(support)) for muscles, support in groups.values()]


BLOCK_PADDING = 5000
"""Zero coefficients worth one matrix product less (ONNX Runtime: ~1.5 us a node, ~0.3 ns a coefficient)."""


def _length_blocks(groups: list) -> list[list]:
    """``groups`` (:func:`_length_groups`) in blocks: a block's groups are padded to its largest numbers of
    monomials and muscles and go through one batched matrix product. In order of monomials, neighbouring
    blocks are merged while that adds at most :data:`BLOCK_PADDING` zero coefficients."""
    def size(block):
        return len(block) * max(len(g[1]) for g in block) * max(len(g[0]) for g in block)

    blocks = [[g] for g in sorted(groups, key=lambda g: (len(g[1]), len(g[0])))]
    while len(blocks) > 1:
        added = [size(a + b) - size(a) - size(b) for a, b in zip(blocks, blocks[1:])]
        i = int(np.argmin(added))
        if added[i] > BLOCK_PADDING:
            break
        blocks[i:i + 2] = [blocks[i] + blocks[i + 1]]
    return blocks


def fusable(network) -> bool:
    """Whether :class:`FusedNetwork` can take this network (a per-frame encoder, one GRU layer: not cnn or mlp)."""
    return network.per_frame_encoder and network.gru is not None and network.config.gru_layers == 1


__all__ = ["FusedEncoder", "FusedMuscleForces", "FusedNetwork", "fusable"]
