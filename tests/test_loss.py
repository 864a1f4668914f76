"""The physics-informed loss is Static Optimization's objective (opensim_pinn.loss), and the
training's curvature preconditioning solves it (opensim_pinn.trainer).

Synthetic frames: random muscle matrices (generalised force per unit activation),
generalised forces within the muscles' reach, and reserve actuators on some or all
coordinates; no OpenSim needed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opensim_pinn.loss import PhysicsLoss, physics_targets
from opensim_pinn.static_opt import solve_bounded_least_norm
from opensim_pinn.newton import curvature, newton_direction

N_FRAMES, N_COORDINATES, N_MUSCLES = 6, 3, 5
MIN_CONTROL, MAX_CONTROL = 0.01, 1.0
RESERVE = 10.0  # optimal force of the synthetic reserve actuators, N m
SOLVER_TOLERANCE = 1e-6  # the bounded least-norm solver's equality tolerance (relative)


class FixedMuscles:
    """Stands in for MusculoskeletalModel: a fixed muscle matrix and active force per frame."""

    def __init__(self, matrix: torch.Tensor, force: torch.Tensor):
        self.matrix, self.force = matrix, force

    def muscle_matrix(self, q, qd):
        return self.matrix, self.force


def synthetic(*, covered: tuple[int, ...] = (0, 1, 2), seed: int = 0, dtype=torch.float64):
    """Targets and loss for frames where reserves act on the ``covered`` coordinates only."""
    generator = torch.Generator().manual_seed(seed)
    force = 500 + 1000 * torch.rand(N_FRAMES, N_MUSCLES, generator=generator, dtype=dtype)
    arms = 0.05 * torch.randn(N_FRAMES, N_COORDINATES, N_MUSCLES, generator=generator, dtype=dtype)
    matrix = arms * force[:, None, :]
    reachable = 0.2 * torch.rand(N_FRAMES, N_MUSCLES, generator=generator, dtype=dtype) + 0.02
    tau = (matrix @ reachable.unsqueeze(-1)).squeeze(-1)
    actuator_map = torch.zeros(N_FRAMES, len(covered), N_COORDINATES, dtype=dtype)
    for a, c in enumerate(covered):
        actuator_map[:, a, c] = RESERVE
    q = torch.zeros(N_FRAMES, N_COORDINATES, dtype=dtype)
    targets = physics_targets(q, q, tau, actuator_map, FixedMuscles(matrix, force))
    full = torch.ones(N_MUSCLES, dtype=dtype)
    n_actuators = len(covered)
    loss = PhysicsLoss(MIN_CONTROL * full, MAX_CONTROL * full,
                       torch.full((n_actuators,), -1e3, dtype=dtype), torch.full((n_actuators,), 1e3, dtype=dtype))
    return targets, loss, actuator_map


def static_optimization(targets, actuator_map):
    """SO's answer by the project's fast solver: muscles then actuators per frame."""
    matrix = torch.cat([targets.muscle_matrix, actuator_map.transpose(1, 2)], dim=2)
    n_actuators = actuator_map.shape[1]
    lower = torch.tensor([MIN_CONTROL] * N_MUSCLES + [-1e3] * n_actuators, dtype=matrix.dtype)
    upper = torch.tensor([MAX_CONTROL] * N_MUSCLES + [1e3] * n_actuators, dtype=matrix.dtype)
    x, converged = solve_bounded_least_norm(matrix, targets.tau, lower, upper)
    assert converged.all()
    return x[:, :N_MUSCLES], x[:, N_MUSCLES:]


def test_unit_weights_make_the_loss_static_optimizations_objective():
    targets, loss, actuator_map = synthetic()
    activations, controls = static_optimization(targets, actuator_map)
    terms = loss(activations, targets)
    objective = (activations ** 2).sum(-1) + (controls ** 2).sum(-1)  # SO, activation exponent 2
    torch.testing.assert_close(terms["total"], objective.mean(), rtol=1e-6, atol=1e-9)
    assert float(terms["boundary"]) == 0.0


def test_controls_cover_the_residual_exactly_when_every_coordinate_has_a_reserve():
    targets, loss, actuator_map = synthetic()
    activations = torch.full((N_FRAMES, N_MUSCLES), 0.1, dtype=torch.float64)
    controls, uncovered = loss.controls(activations, targets)
    produced = (targets.muscle_matrix @ activations.unsqueeze(-1)).squeeze(-1) \
        + torch.einsum("tac,ta->tc", actuator_map, controls)
    torch.testing.assert_close(produced, targets.tau)
    assert uncovered.abs().max() < 1e-9


def test_uncovered_residual_is_charged_where_no_actuator_acts():
    targets, loss, actuator_map = synthetic(covered=(0,))
    activations = torch.full((N_FRAMES, N_MUSCLES), 0.1, dtype=torch.float64)
    controls, uncovered = loss.controls(activations, targets)
    residual = targets.tau - (targets.muscle_matrix @ activations.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(controls[:, 0], residual[:, 0] / RESERVE)
    torch.testing.assert_close(uncovered[:, 1:], residual[:, 1:])
    assert uncovered[:, 0].abs().max() < 1e-9


@pytest.mark.parametrize("covered", [(0, 1, 2), (0,), ()])
def test_static_optimization_minimises_the_loss(covered):
    """Perturbing SO's activations (within bounds) never lowers the loss.

    Coordinates without an actuator are charged as if a reserve of optimal force
    ``uncovered_reserve`` acted there: SO with those virtual reserves is the loss's minimiser.
    """
    targets, loss, actuator_map = synthetic(covered=covered)
    virtual = torch.zeros(N_FRAMES, N_COORDINATES - len(covered), N_COORDINATES, dtype=torch.float64)
    for a, c in enumerate(c for c in range(N_COORDINATES) if c not in covered):
        virtual[:, a, c] = loss.uncovered_reserve
    best, _ = static_optimization(targets, torch.cat([actuator_map, virtual], dim=1))
    at_best = float(loss(best, targets)["total"])
    generator = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(20):
            step = scale * torch.randn(best.shape, generator=generator, dtype=best.dtype)
            perturbed = (best + step).clamp(MIN_CONTROL, MAX_CONTROL)
            assert float(loss(perturbed, targets)["total"]) >= at_best - 1e-9 * (1 + abs(at_best))


def test_loss_gradcheck_float64():
    targets, loss, _ = synthetic(covered=(0, 2))
    activations = torch.rand(N_FRAMES, N_MUSCLES, dtype=torch.float64, requires_grad=True)
    for name in ("dynamics", "performance", "boundary", "total"):
        assert torch.autograd.gradcheck(lambda a: loss(a, targets)[name], (activations,))


def test_boundary_term_penalises_only_activations_outside_bounds():
    targets, loss, _ = synthetic()
    inside = torch.full((N_FRAMES, N_MUSCLES), 0.5, dtype=torch.float64)
    assert float(loss(inside, targets)["boundary"]) == 0.0
    below, above = inside.clone(), inside.clone()
    below[0, 0], above[0, 0] = MIN_CONTROL - 0.1, MAX_CONTROL + 0.1
    expected = 0.1 ** 2 / N_FRAMES
    assert float(loss(below, targets)["boundary"]) == pytest.approx(expected)
    assert float(loss(above, targets)["boundary"]) == pytest.approx(expected)


@pytest.mark.parametrize("covered", [(0, 1, 2), (1,), ()])
def test_curvature_is_the_hessian_of_each_frames_loss(covered):
    targets, loss, _ = synthetic(covered=covered)
    hessian = curvature(loss, targets, N_MUSCLES)
    activations = torch.full((N_FRAMES, N_MUSCLES), 0.3, dtype=torch.float64)
    for frame in range(N_FRAMES):
        def frame_loss(a, frame=frame):
            full = activations.clone()
            full[frame] = a
            return loss(full, targets)["total"] * N_FRAMES  # the frame's own loss
        exact = torch.autograd.functional.hessian(frame_loss, activations[frame])
        torch.testing.assert_close(hessian[frame], exact, rtol=1e-8, atol=1e-8)


def test_newton_direction_lands_on_the_minimiser_of_a_quadratic():
    """With unit slope and no damping, one step reaches the (unconstrained) per-frame minimiser:
    the preconditioned gradient points straight at SO's answer, however stiff the dynamics term."""
    targets, loss, _ = synthetic(covered=())  # stiff: no reserves, the dynamics is an equality in effect
    loss.loss_weights["boundary"] = 0.0  # the quadratic part only (bounds are the sigmoid's job in training)
    hessian = curvature(loss, targets, N_MUSCLES)
    start = torch.full((N_FRAMES, N_MUSCLES), 0.3, dtype=torch.float64, requires_grad=True)
    gradient, = torch.autograd.grad(loss(start, targets)["total"] * N_FRAMES, start)
    step = newton_direction(gradient, torch.ones_like(gradient), hessian, 0.0)
    landed = (start - step).detach().requires_grad_(True)
    after, = torch.autograd.grad(loss(landed, targets)["total"] * N_FRAMES, landed)
    assert after.abs().max() < 1e-6 * gradient.abs().max()
    condition = torch.linalg.cond(hessian).max()
    assert condition > 1e3  # the case where plain gradients crawl


def test_newton_direction_vanishes_where_the_gradient_does():
    hessian = torch.eye(N_MUSCLES, dtype=torch.float64).expand(N_FRAMES, -1, -1) * 4.0
    zero = torch.zeros(N_FRAMES, N_MUSCLES, dtype=torch.float64)
    slope = torch.full_like(zero, 0.2)
    assert newton_direction(zero, slope, hessian, 1e-6).abs().max() == 0
    # saturated outputs (zero slope) get no push, whatever their gradient
    ones = torch.ones_like(zero)
    assert newton_direction(ones, torch.zeros_like(zero), hessian, 1e-6).abs().max() == 0
    np.testing.assert_allclose(newton_direction(ones, slope, hessian, 0.0).numpy(), 1.0 / (4.0 * 0.2))
