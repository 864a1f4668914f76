"""Rigid-tendon active fiber force (opensim_pinn.curves, MusculoskeletalModel.active_force)
against OpenSim's ``Muscle.calcInextensibleTendonActiveFiberForce(state, 1.0)``.

The model is one block on a slider with one muscle per class and pennation (0 and 0.4 rad),
each from a ground point on the slider axis to the block, so that every muscle-tendon
length is the slider coordinate plus a constant and a straight-line path polynomial
``c0 + x`` is exact: only the force curves are compared. OpenSim's own ``getLength`` and
``getLengtheningSpeed`` are the inputs of the torch module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opensim_pinn import curves
from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.osim import model_info
from opensim_pinn.paths import PathPolynomial

osim = pytest.importorskip("opensim")

MILLARD, THELEN, DEGROOTE = "Millard2012EquilibriumMuscle", "Thelen2003Muscle", "DeGrooteFregly2016Muscle"
# name, class, max isometric force (N), optimal fiber length (m), tendon slack length (m),
# pennation at optimal (rad), max contraction velocity (optimal lengths / s)
SPECS = [
    ("millard_0", MILLARD, 1000.0, 0.10, 0.20, 0.0, 10.0),
    ("millard_p", MILLARD, 800.0, 0.08, 0.15, 0.4, 8.0),
    ("thelen_0", THELEN, 1000.0, 0.10, 0.20, 0.0, 10.0),
    ("thelen_p", THELEN, 800.0, 0.08, 0.15, 0.4, 12.0),
    ("degroote_0", DEGROOTE, 1000.0, 0.10, 0.20, 0.0, 10.0),
    ("degroote_p", DEGROOTE, 800.0, 0.08, 0.15, 0.4, 8.0),
]
NAMES = [spec[0] for spec in SPECS]

# Tolerances on the force (N), per class.
TOLERANCE_N = {
    # Millard's quintic Bezier curves are tabulated at 400 points and interpolated with cubic
    # Hermite splines (exact values and slopes at the knots): the interpolation error is
    # ~h^4 f''''/384, largest at the active force-length peak (measured 2.5e-3 N of 1000 N).
    MILLARD: 1e-2,
    # Analytic curves in float64 on both sides; OpenSim goes through asin/cos of the
    # pennation angle, we use sqrt(1 - sin^2) (measured 1.6e-9 N for Thelen, 6e-12 N for De Groote).
    THELEN: 1e-6,
    DEGROOTE: 1e-6,
}


def _offset(optimal: float, slack: float, pennation: float) -> float:
    """Ground-point distance that puts the fiber at its optimal length when the slider is at 0."""
    return slack + optimal * math.cos(pennation)


OFFSETS = np.array([_offset(o, s, a) for _, _, _, o, s, a, _ in SPECS])


def _build_model():
    model = osim.Model()
    model.setName("slider_muscles")
    block = osim.Body("block", 1.0, osim.Vec3(0), osim.Inertia(0.01))
    model.addBody(block)
    joint = osim.SliderJoint("slider", model.getGround(), osim.Vec3(0), osim.Vec3(0),
                             block, osim.Vec3(0), osim.Vec3(0))
    coordinate = joint.updCoordinate()
    coordinate.setName("x")
    coordinate.setRangeMin(-1.0)
    coordinate.setRangeMax(1.0)
    model.addJoint(joint)
    for (name, kind, force, optimal, slack, pennation, vmax), offset in zip(SPECS, OFFSETS):
        if kind == MILLARD:
            muscle = osim.Millard2012EquilibriumMuscle(name, force, optimal, slack, pennation)
            if pennation > 0:  # non-default curves
                muscle.upd_ActiveForceLengthCurve().set_min_norm_active_fiber_length(0.5)
                muscle.upd_ForceVelocityCurve().set_max_eccentric_velocity_force_multiplier(1.6)
        elif kind == THELEN:
            muscle = osim.Thelen2003Muscle(name, force, optimal, slack, pennation)
            if pennation > 0:
                muscle.set_KshapeActive(0.3)
                muscle.set_Af(0.3)
                muscle.set_Flen(1.6)
                muscle.set_fv_linear_extrap_threshold(0.9)
        else:
            muscle = osim.DeGrooteFregly2016Muscle()
            muscle.setName(name)
            muscle.set_max_isometric_force(force)
            muscle.set_optimal_fiber_length(optimal)
            muscle.set_tendon_slack_length(slack)
            muscle.set_pennation_angle_at_optimal(pennation)
            if pennation > 0:
                muscle.set_active_force_width_scale(1.2)
        muscle.set_max_contraction_velocity(vmax)
        muscle.addNewPathPoint("origin", model.getGround(), osim.Vec3(-offset, 0, 0))
        muscle.addNewPathPoint("insertion", block, osim.Vec3(0, 0, 0))
        model.addForce(muscle)
    model.finalizeConnections()
    return model


class SliderCase:
    """The OpenSim model, its state, and the torch module built from its printed .osim."""

    def __init__(self, folder):
        osim.Logger.removeFileSink()
        osim.Logger.setLevelString("error")
        path = folder / "slider_muscles.osim"
        _build_model().printToXML(str(path))
        self.model = osim.Model(str(path))
        self.state = self.model.initSystem()
        self.coordinate = self.model.getCoordinateSet().get("x")
        self.muscles = [self.model.getMuscles().get(name) for name in NAMES]
        self.info = model_info(path)
        polynomials = [PathPolynomial(muscle=name, coordinates=["x"], exponents=np.array([[0], [1]]),
                                      coefficients=np.array([offset, 1.0]))
                       for name, offset in zip(NAMES, OFFSETS)]
        self.module = MusculoskeletalModel(self.info, polynomials).to(torch.float64)

    def opensim(self, q: np.ndarray, qd: np.ndarray) -> dict[str, np.ndarray]:
        """Lengths, speeds and rigid-tendon active forces from OpenSim on the grid q x qd."""
        out = {"lengths": [], "speeds": [], "force": [], "q": [], "qd": []}
        for value in q:
            for speed in qd:
                self.coordinate.setValue(self.state, float(value), False)
                self.coordinate.setSpeedValue(self.state, float(speed))
                self.model.realizeVelocity(self.state)
                out["q"].append(value)
                out["qd"].append(speed)
                out["lengths"].append([m.getLength(self.state) for m in self.muscles])
                out["speeds"].append([m.getLengtheningSpeed(self.state) for m in self.muscles])
                out["force"].append([m.calcInextensibleTendonActiveFiberForce(self.state, 1.0)
                                     for m in self.muscles])
        return {key: np.array(value) for key, value in out.items()}

    def torch_force(self, lengths: np.ndarray, speeds: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module.active_force(torch.as_tensor(lengths), torch.as_tensor(speeds)).numpy()

    def threshold_coordinates(self) -> list[float]:
        """Slider values where a Thelen or Millard fiber reaches its minimum length (below it
        OpenSim returns 0), at -1e-7, +1e-7 and +1e-3 m. (De Groote has no such cut-off.)"""
        values = []
        for muscle, offset in zip(self.info.muscles, OFFSETS):
            if muscle.muscle_class == DEGROOTE:
                continue
            minimum = muscle.curves["minimum_fiber_length"]
            height = muscle.optimal_fiber_length * math.sin(muscle.pennation_angle_at_optimal)
            if minimum > height:
                at = math.sqrt(minimum ** 2 - height ** 2) + muscle.tendon_slack_length - offset
                values += [at - 1e-7, at + 1e-7, at + 1e-3]
        return values


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return SliderCase(tmp_path_factory.mktemp("slider"))


# Slider values: from normalised fiber lengths ~0.2 (De Groote's curves' lower end)
# to ~1.9 (long fibers); speeds: concentric and eccentric, beyond |vN| = 1 for every muscle.
Q_GRID = np.linspace(-0.08, 0.095, 36)
QD_GRID = np.linspace(-1.8, 1.8, 19)  # m/s; vmax x optimal length is 0.64 to 1 m/s


def test_model_info_reads_the_parameters(case):
    by_name = {m.name: m for m in case.info.muscles}
    assert [m.name for m in case.info.muscles] == NAMES
    for name, kind, force, optimal, slack, pennation, vmax in SPECS:
        muscle = by_name[name]
        assert muscle.muscle_class == kind
        assert (muscle.max_isometric_force, muscle.optimal_fiber_length, muscle.tendon_slack_length,
                muscle.pennation_angle_at_optimal, muscle.max_contraction_velocity) == \
            (force, optimal, slack, pennation, vmax)
        assert muscle.coordinates == ["x"]
    thelen = by_name["thelen_p"].curves
    assert (thelen["KshapeActive"], thelen["Af"], thelen["Flen"], thelen["fv_linear_extrap_threshold"]) == \
        (0.3, 0.3, 1.6, 0.9)
    assert by_name["degroote_p"].curves["active_force_width_scale"] == 1.2


def test_straight_path_polynomial_is_exact(case):
    reference = case.opensim(Q_GRID, [0.7])
    lengths, _ = case.module.paths(torch.as_tensor(reference["q"])[:, None])
    tol = 1e-15  # m; one addition in float64 on both sides (measured 0)
    np.testing.assert_allclose(lengths.numpy(), reference["lengths"], rtol=0, atol=tol)
    lengths, speeds = case.module.lengths_and_speeds(torch.as_tensor(reference["q"])[:, None],
                                                     torch.as_tensor(reference["qd"])[:, None])
    np.testing.assert_allclose(speeds.numpy(), reference["speeds"], rtol=0, atol=tol)


@pytest.mark.parametrize("kind", [MILLARD, THELEN, DEGROOTE])
def test_active_force_matches_opensim(case, kind):
    q = np.sort(np.concatenate([Q_GRID, case.threshold_coordinates()]))
    reference = case.opensim(q, QD_GRID)
    force = case.torch_force(reference["lengths"], reference["speeds"])
    columns = [i for i, spec in enumerate(SPECS) if spec[1] == kind]
    error = np.abs(force[:, columns] - reference["force"][:, columns])
    assert error.max() <= TOLERANCE_N[kind], {NAMES[c]: float(e) for c, e in zip(columns, error.max(axis=0))}
    # The grid covers what it claims: zero force (too short / too fast), and large forces.
    assert (reference["force"][:, columns] == 0).any() or kind == DEGROOTE
    assert reference["force"][:, columns].max() > 0.9 * min(SPECS[c][2] for c in columns)


def test_grid_covers_fast_and_short_fibers(case):
    """|vN| beyond 1 and normalised fiber lengths from ~0.2 to ~1.9 for every muscle."""
    for muscle, offset, vmax in zip(case.info.muscles, OFFSETS, [s[6] for s in SPECS]):
        lengths = Q_GRID + offset - muscle.tendon_slack_length
        height = muscle.optimal_fiber_length * math.sin(muscle.pennation_angle_at_optimal)
        normalised = np.sqrt(lengths ** 2 + height ** 2) / muscle.optimal_fiber_length
        assert normalised.min() < 0.45 and normalised.max() > 1.7
        assert QD_GRID.max() / (vmax * muscle.optimal_fiber_length) > 1.5


def test_degroote_below_minimum_fiber_length(case):
    """OpenSim does not floor a De Groote fiber at its minimum length (0.2 optimal) in
    calcInextensibleTendonActiveFiberForce; neither may we (it was 11.20 N instead of 5.67 N
    at lN = 0.1 before the fix)."""
    q = np.linspace(-0.095, -0.081, 8)  # degroote_0 fiber 0.05 to 0.19 optimal lengths
    reference = case.opensim(q, [-0.3, 0.0, 0.3])
    force = case.torch_force(reference["lengths"], reference["speeds"])
    column = NAMES.index("degroote_0")
    assert np.abs(force[:, column] - reference["force"][:, column]).max() <= TOLERANCE_N[DEGROOTE]


def test_active_force_gradcheck(case):
    """Analytic gradients wrt lengths and speeds at smooth points (away from v = 0, where
    Thelen's force-velocity curve has a kink, and from the minimum fiber lengths)."""
    q = np.array([-0.03, 0.013, 0.052])
    qd = np.array([-1.3, -0.45, 0.27, 1.2])
    lengths = torch.tensor(np.repeat(q, len(qd))[:, None] + OFFSETS, requires_grad=True)
    speeds = torch.tensor(np.tile(qd, len(q))[:, None].repeat(len(SPECS), axis=1), requires_grad=True)
    # float64 central differences (eps 1e-6): default gradcheck tolerances (atol 1e-5, rtol 1e-3).
    assert torch.autograd.gradcheck(case.module.active_force, (lengths, speeds), eps=1e-6)


def test_active_force_gradient_is_finite_on_the_grid(case):
    q, qd = np.meshgrid(Q_GRID, QD_GRID, indexing="ij")  # includes qd = 0 exactly
    lengths = torch.tensor(q.reshape(-1, 1) + OFFSETS, requires_grad=True)
    speeds = torch.tensor(np.repeat(qd.reshape(-1, 1), len(SPECS), axis=1), requires_grad=True)
    case.module.active_force(lengths, speeds).sum().backward()
    assert torch.isfinite(lengths.grad).all() and torch.isfinite(speeds.grad).all()


def test_hermite_reproduces_a_cubic():
    """Cubic Hermite interpolation with exact values and slopes is exact for a cubic inside
    the grid, and continues linearly (with the end slopes) outside it."""
    torch.manual_seed(0)
    coefficients = torch.tensor([[0.3, -1.2, 0.7, 2.0], [1.0, 0.5, -3.0, 0.25]], dtype=torch.float64)

    def cubic(x, c):
        return c[:, 0] + c[:, 1] * x + c[:, 2] * x ** 2 + c[:, 3] * x ** 3

    def slope(x, c):
        return c[:, 1] + 2 * c[:, 2] * x + 3 * c[:, 3] * x ** 2

    knots = torch.stack([torch.linspace(-1.0, 2.0, 13, dtype=torch.float64),
                         torch.linspace(0.5, 1.5, 13, dtype=torch.float64)])
    values = cubic(knots.T, coefficients).T
    slopes = slope(knots.T, coefficients).T
    inside = torch.stack([torch.rand(200) * 3 - 1, torch.rand(200) + 0.5], dim=-1).to(torch.float64)
    inside = torch.cat([inside, knots.T])  # the knots themselves, the ends included
    tol = 1e-12  # exact in exact arithmetic; float64 round-off of values of size ~10
    np.testing.assert_allclose(curves.hermite(inside, knots, values, slopes).numpy(),
                               cubic(inside, coefficients).numpy(), rtol=0, atol=tol)
    outside = torch.tensor([[-1.5, 0.2], [2.5, 1.9]], dtype=torch.float64)
    ends = torch.tensor([[-1.0, 0.5], [2.0, 1.5]], dtype=torch.float64)
    expected = cubic(ends, coefficients) + slope(ends, coefficients) * (outside - ends)
    np.testing.assert_allclose(curves.hermite(outside, knots, values, slopes).numpy(), expected.numpy(),
                               rtol=0, atol=tol)
