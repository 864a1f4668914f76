"""The batched bounded least-norm solver (static_opt.solve_bounded_least_norm) against
scipy's SLSQP on random feasible problems shaped like Static Optimization:

    min ||x||^2  s.t.  A x = b,  lower <= x <= upper

with "muscle" variables in [0.01, 1] (columns of size 10-100 N m per unit activation) and
unbounded "reserve" variables (columns of size ~1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

from opensim_pinn.static_opt import solve_bounded_least_norm

N_FRAMES = 12
# Relative objective agreement with SLSQP (ftol 1e-12, equalities met to ~1e-13) when our
# solver is asked for equalities to 1e-8 (1 + |b|): measured at most 1.7e-8 relative.
OBJECTIVE_RTOL = 1e-6
# At the default tolerance (equalities to 1e-6 (1 + |b|), |b| ~ 100 N m here) the residual
# itself shifts the objective by about 2 lambda . r: measured at most 2.3e-6 relative.
DEFAULT_OBJECTIVE_RTOL = 1e-5


def _problem(seed: int, n_equations: int, n_variables: int, n_free: int, n_frames: int = N_FRAMES):
    rng = np.random.default_rng(seed)
    n_bounded = n_variables - n_free
    matrix = rng.standard_normal((n_frames, n_equations, n_variables))
    matrix[:, :, :n_bounded] *= rng.uniform(10, 100, (n_frames, 1, n_bounded))
    feasible = np.concatenate([rng.uniform(0.01, 0.95, (n_frames, n_bounded)),
                               rng.standard_normal((n_frames, n_free))], axis=1)
    target = np.einsum("fev,fv->fe", matrix, feasible)
    lower = np.array([0.01] * n_bounded + [-np.inf] * n_free)
    upper = np.array([1.0] * n_bounded + [np.inf] * n_free)
    return matrix, target, lower, upper


def _solve(matrix, target, lower, upper, **options):
    x, converged = solve_bounded_least_norm(*(torch.as_tensor(a, dtype=torch.float64)
                                              for a in (matrix, target, lower, upper)), **options)
    return x.numpy(), converged.numpy()


def _slsqp(matrix, target, lower, upper):
    n_variables = matrix.shape[1]
    result = minimize(lambda z: z @ z, np.clip(np.zeros(n_variables), lower, upper), jac=lambda z: 2 * z,
                      method="SLSQP", bounds=list(zip(lower, upper)),
                      constraints=[{"type": "eq", "fun": lambda z: matrix @ z - target, "jac": lambda z: matrix}],
                      options={"ftol": 1e-12, "maxiter": 1000})
    # SLSQP may end with "Positive directional derivative for linesearch"
    # (status 8): it cannot improve further in float64. Accept it when the equalities hold
    # to 1e-10 relative, far tighter than the solver under test.
    residual = np.abs(matrix @ result.x - target).max()
    assert result.success or (result.status == 8 and residual <= 1e-10 * (1 + np.abs(target).max())), \
        result.message
    return result.x


SHAPES = [(2, 5, 0), (3, 12, 2), (4, 20, 4), (6, 30, 6), (6, 8, 0), (5, 30, 0)]


def _residual(matrix, target, x):
    return np.abs(np.einsum("fev,fv->fe", matrix, x) - target).max(axis=1)


@pytest.mark.parametrize("n_equations, n_variables, n_free", SHAPES)
def test_matches_slsqp_on_feasible_problems(n_equations, n_variables, n_free):
    matrix, target, lower, upper = _problem(n_variables, n_equations, n_variables, n_free)
    x, converged = _solve(matrix, target, lower, upper, tolerance=1e-8)
    assert converged.all()
    assert np.all(_residual(matrix, target, x) <= 1e-8 * (1 + np.abs(target).max(axis=1)))
    assert np.all(x >= lower) and np.all(x <= upper)  # x is clipped to them: exact
    active = 0
    for frame in range(N_FRAMES):
        reference = _slsqp(matrix[frame], target[frame], lower, upper)
        objective, expected = x[frame] @ x[frame], reference @ reference
        assert abs(objective - expected) <= OBJECTIVE_RTOL * expected, (frame, objective, expected)
        # The objective is strictly convex, so the minimiser is unique: measured 3e-7 per
        # variable (6 x 8 case); 1e-5 is far below the bounds' 0.01.
        np.testing.assert_allclose(x[frame], reference, rtol=0, atol=1e-5)
        active += int(np.sum(np.isclose(x[frame], lower) | np.isclose(x[frame], upper)))
    if n_free < n_variables - n_equations:
        assert active > 0, "the problems must exercise the bounds"


@pytest.mark.parametrize("n_equations, n_variables, n_free", SHAPES)
def test_default_tolerance_is_optimal(n_equations, n_variables, n_free):
    """Default tolerance: the equalities hold to 1e-6 (1 + max|b|) per frame, the bounds
    exactly, and x satisfies the optimality (KKT) conditions for its own right-hand side:
    x = clip(A^T lambda, lower, upper) for some lambda, recovered here from the free variables."""
    matrix, target, lower, upper = _problem(n_variables, n_equations, n_variables, n_free)
    x, converged = _solve(matrix, target, lower, upper)
    assert converged.all()
    assert np.all(_residual(matrix, target, x) <= 1e-6 * (1 + np.abs(target).max(axis=1)))
    assert np.all(x >= lower) and np.all(x <= upper)
    tight, _ = _solve(matrix, target, lower, upper, tolerance=1e-8)
    objective, expected = (x * x).sum(axis=1), (tight * tight).sum(axis=1)
    assert np.all(np.abs(objective - expected) <= DEFAULT_OBJECTIVE_RTOL * expected)
    for frame in range(N_FRAMES):
        free = (x[frame] > lower) & (x[frame] < upper)
        if free.sum() < n_equations:
            continue
        multipliers = np.linalg.lstsq(matrix[frame][:, free].T, x[frame][free], rcond=None)[0]
        unclipped = matrix[frame].T @ multipliers
        tol = 1e-9  # x_free = A_free^T lambda to round-off of a least-squares solve
        np.testing.assert_allclose(unclipped[free], x[frame][free], rtol=0, atol=tol)
        assert np.all(unclipped[x[frame] == lower] <= lower[x[frame] == lower] + tol)
        assert np.all(unclipped[x[frame] == upper] >= upper[x[frame] == upper] - tol)


def test_interior_solution_is_the_pseudo_inverse():
    """When the least-norm solution of A x = b lies inside the bounds it is pinv(A) b."""
    matrix, _, _, _ = _problem(3, 3, 10, 0)
    target = np.einsum("fev,fv->fe", matrix, np.full((N_FRAMES, 10), 0.3)) * 0.2
    expected = np.einsum("fve,fe->fv", np.linalg.pinv(matrix), target)
    lower, upper = np.full(10, -10.0), np.full(10, 10.0)
    assert np.all(np.abs(expected) < 10)
    x, converged = _solve(matrix, target, lower, upper)
    assert converged.all()
    tol = 1e-10  # the starting point is this solution, solved in float64 (with 1e-12 relative regularisation)
    np.testing.assert_allclose(x, expected, rtol=0, atol=tol)


def test_infeasible_frame_is_reported():
    matrix, target, lower, upper = _problem(11, 4, 12, 0, n_frames=5)
    # Frame 2: all-positive columns, positive lower bounds, a negative target: A x >= 0 > b.
    matrix[2] = np.abs(matrix[2])
    target[2] = -np.abs(target[2]) - 1.0
    # Frame 4: a target 50 times too large; confirmed infeasible by a linear program.
    target[4] *= 50
    check = linprog(np.zeros(12), A_eq=matrix[4], b_eq=target[4], bounds=list(zip(lower, upper)))
    assert check.status == 2, "frame 4 must be infeasible"
    x, converged = _solve(matrix, target, lower, upper)
    assert converged.tolist() == [True, True, False, True, False]
    assert np.all(x >= lower) and np.all(x <= upper)
    residual = np.abs(np.einsum("fev,fv->fe", matrix, x) - target).max(axis=1)
    assert np.all(residual[[0, 1, 3]] <= 1e-6 * (1 + np.abs(target[[0, 1, 3]]).max(axis=1)))


def test_degenerate_rows():
    """A coordinate that nothing acts on with zero load (zero row, zero target), a frame of
    zeros, and a repeated equation are still solved."""
    matrix, target, lower, upper = _problem(1, 4, 12, 2, n_frames=3)
    matrix[0, 2], target[0, 2] = 0.0, 0.0
    matrix[1], target[1] = 0.0, 0.0
    matrix[2, 3], target[2, 3] = matrix[2, 1], target[2, 1]
    x, converged = _solve(matrix, target, lower, upper)
    assert converged.all()
    residual = np.abs(np.einsum("fev,fv->fe", matrix, x) - target).max(axis=1)
    assert np.all(residual <= 1e-6 * (1 + np.abs(target).max(axis=1)))
    # Nothing to balance: every variable at its smallest magnitude (0.01 or 0).
    np.testing.assert_array_equal(x[1], np.clip(np.zeros(12), lower, upper))


def test_warm_start_from_neighbouring_frames_finds_the_same_optimum():
    """static_opt.solve_frames (every 5th frame first, the others from the nearest one's multipliers) on a
    smoothly changing trial: the same optimum per frame as cold starts, to the default tolerance."""
    from opensim_pinn.static_opt import solve_frames

    matrix, target, lower, upper = _problem(7, 4, 20, 4, n_frames=1)
    phase = np.linspace(0, 2 * np.pi, 60)
    drift = 1 + 0.2 * np.sin(phase)[:, None, None] * np.cos(np.arange(20))[None, None, :]
    matrix = matrix * drift  # (60, 4, 20), varying smoothly from frame to frame
    target = target * (1 + 0.3 * np.cos(phase))[:, None]
    tensors = [torch.as_tensor(a, dtype=torch.float64) for a in (matrix, target, lower, upper)]
    warm, warm_converged = solve_frames(*tensors, stride=5)
    cold, cold_converged = _solve(matrix, target, lower, upper)
    assert warm_converged.all() and cold_converged.all()
    warm = warm.numpy()
    np.testing.assert_allclose((warm ** 2).sum(1), (cold ** 2).sum(1), rtol=DEFAULT_OBJECTIVE_RTOL)
    assert np.all(warm >= lower - 1e-12) and np.all(warm <= upper + 1e-12)
