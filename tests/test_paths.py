"""Muscle paths as polynomials (opensim_pinn.paths, MusculoskeletalModel.paths) against OpenSim.

A small arm built through the OpenSim API: ground (upper arm) -> PinJoint 'elbow' ->
forearm -> PinJoint 'wrist' -> hand, with a one-joint Thelen flexor and Millard extensor
(each with a via point) and a two-joint Thelen muscle. OpenSim's PolynomialPathFitter
is run in-process (``fit_paths``) around a synthetic 30-frame motion; the torch module's
lengths and moment arms are compared with OpenSim's ``getLength`` / ``computeMomentArm``.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
import torch

from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.osim import model_info, muscle_reference
from opensim_pinn.paths import PathFitSettings, PathPolynomial, fit_paths, read_path_set, term_exponents

osim = pytest.importorskip("opensim")

COORDINATES = ["elbow_flex", "wrist_flex"]
MUSCLES = ["flexor", "extensor", "biarticular"]
# Fit quality asked of the polynomials on the motion's poses. The fitter's own tolerances
# are 0.1 mm RMS (PathFitSettings); measured here: lengths 0.006 mm RMS (0.013 mm max),
# moment arms 0.064 mm RMS (0.14 mm max) over 117 poses between and on the fitted frames.
LENGTH_RMS_MM = 0.1
MOMENT_ARM_RMS_MM = 0.5


def _build_model(path) -> None:
    model = osim.Model()
    model.setName("hinge_arm")
    forearm = osim.Body("forearm", 1.0, osim.Vec3(0.12, 0, 0), osim.Inertia(0.01))
    hand = osim.Body("hand", 0.4, osim.Vec3(0.05, 0, 0), osim.Inertia(0.001))
    model.addBody(forearm)
    model.addBody(hand)
    elbow = osim.PinJoint("elbow", model.getGround(), osim.Vec3(0), osim.Vec3(0), forearm, osim.Vec3(0), osim.Vec3(0))
    wrist = osim.PinJoint("wrist", forearm, osim.Vec3(0.25, 0, 0), osim.Vec3(0), hand, osim.Vec3(0), osim.Vec3(0))
    for joint, name, low, high in ((elbow, "elbow_flex", 0.0, 2.4), (wrist, "wrist_flex", -1.0, 1.0)):
        coordinate = joint.updCoordinate()
        coordinate.setName(name)
        coordinate.setRangeMin(low)
        coordinate.setRangeMax(high)
        model.addJoint(joint)
    ground = model.getGround()
    flexor = osim.Thelen2003Muscle("flexor", 600.0, 0.12, 0.10, 0.1)
    flexor.addNewPathPoint("origin", ground, osim.Vec3(-0.22, 0.03, 0))
    flexor.addNewPathPoint("via", ground, osim.Vec3(-0.03, 0.035, 0))
    flexor.addNewPathPoint("insertion", forearm, osim.Vec3(0.06, 0.02, 0))
    extensor = osim.Millard2012EquilibriumMuscle("extensor", 800.0, 0.10, 0.12, 0.2)
    extensor.addNewPathPoint("origin", ground, osim.Vec3(-0.22, -0.03, 0))
    extensor.addNewPathPoint("via", ground, osim.Vec3(-0.04, -0.035, 0))
    extensor.addNewPathPoint("insertion", forearm, osim.Vec3(-0.025, -0.01, 0))
    biarticular = osim.Thelen2003Muscle("biarticular", 300.0, 0.15, 0.20, 0.0)
    biarticular.addNewPathPoint("origin", ground, osim.Vec3(-0.15, 0.02, 0))
    biarticular.addNewPathPoint("via", forearm, osim.Vec3(0.2, 0.025, 0))
    biarticular.addNewPathPoint("insertion", hand, osim.Vec3(0.05, 0.015, 0))
    for muscle in (flexor, extensor, biarticular):
        model.addForce(muscle)
    model.finalizeConnections()
    model.printToXML(str(path))


def _motion(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elbow 0.4..1.8 rad and wrist -0.4..0.4 rad over one 0.3 s cycle, and their speeds."""
    phase = 2 * np.pi * time / 0.3
    q = np.column_stack([1.1 + 0.7 * np.sin(phase), 0.4 * np.sin(phase + 1.0)])
    qd = np.column_stack([0.7 * np.cos(phase), 0.4 * np.cos(phase + 1.0)]) * 2 * np.pi / 0.3
    return q, qd


class HingeCase:
    def __init__(self, folder):
        osim.Logger.removeFileSink()
        osim.Logger.setLevelString("error")
        self.folder = folder
        self.path = str(folder / "hinge_arm.osim")
        _build_model(self.path)
        self.time = np.arange(30) * 0.01
        self.q, _ = _motion(self.time)
        self.settings = PathFitSettings()
        self.polynomials = fit_paths(self.path, COORDINATES, self.time, self.q, self.settings)
        self.info = model_info(self.path)
        self.module = MusculoskeletalModel(self.info, self.polynomials).to(torch.float64)
        self.model = osim.Model(self.path)
        self.state = self.model.initSystem()

    def opensim(self, q: np.ndarray, qd: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Direct OpenSim calls, muscles in MUSCLES order, coordinates in COORDINATES order."""
        coordinates = [self.model.getCoordinateSet().get(name) for name in COORDINATES]
        muscles = [self.model.getMuscles().get(name) for name in MUSCLES]
        out = {"lengths": [], "moment_arms": [], "speeds": [], "active_force": []}
        for frame, row in enumerate(q):
            for i, coordinate in enumerate(coordinates):
                coordinate.setValue(self.state, float(row[i]), False)
                coordinate.setSpeedValue(self.state, 0.0 if qd is None else float(qd[frame, i]))
            self.model.realizeVelocity(self.state)
            out["lengths"].append([m.getLength(self.state) for m in muscles])
            out["moment_arms"].append([[m.computeMomentArm(self.state, c) for c in coordinates] for m in muscles])
            out["speeds"].append([m.getLengtheningSpeed(self.state) for m in muscles])
            out["active_force"].append([m.calcInextensibleTendonActiveFiberForce(self.state, 1.0)
                                        for m in muscles])
        return {key: np.array(value) for key, value in out.items()}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hinge")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # anything OpenSim writes lands there
        yield HingeCase(folder)


# ---- term order -------------------------------------------------------------------------

PRIMES = (2.0, 3.0, 5.0, 7.0, 11.0)


def _opensim_exponents(dimension: int, order: int) -> list[tuple[int, ...]]:
    """Exponents of OpenSim's MultivariatePolynomialFunction terms, in its own order, read
    from ``getTermValues`` at distinct primes (each term value factors uniquely)."""
    function = osim.MultivariatePolynomialFunction()
    function.setDimension(dimension)
    function.setOrder(order)
    function.setCoefficients(osim.Vector(comb(order + dimension, dimension), 1.0))
    values = function.getTermValues(osim.Vector(list(PRIMES[:dimension])))
    exponents = []
    for k in range(values.size()):
        value, term = round(values[k]), []
        for prime in PRIMES[:dimension]:
            power = 0
            while value % int(prime) == 0:
                value //= int(prime)
                power += 1
            term.append(power)
        assert value == 1
        exponents.append(tuple(term))
    return exponents


@pytest.mark.parametrize("dimension, order", [(1, 3), (1, 8), (2, 2), (2, 5), (3, 4), (4, 3), (5, 2)])
def test_term_exponents_follow_opensim_order(dimension, order):
    ours = term_exponents(dimension, order)
    assert [tuple(row) for row in ours] == _opensim_exponents(dimension, order)
    assert ours.shape == (comb(order + dimension, dimension), dimension)


def test_polynomial_matches_opensim_function():
    """PathPolynomial.length with term_exponents is MultivariatePolynomialFunction.calcValue."""
    rng = np.random.default_rng(4)
    exponents = term_exponents(3, 4)
    coefficients = rng.standard_normal(len(exponents))
    function = osim.MultivariatePolynomialFunction()
    function.setDimension(3)
    function.setOrder(4)
    function.setCoefficients(osim.Vector(coefficients.tolist()))
    polynomial = PathPolynomial("m", ["a", "b", "c"], exponents, coefficients)
    x = rng.uniform(-1.5, 1.5, (20, 3))
    expected = [function.calcValue(osim.Vector(row.tolist())) for row in x]
    tol = 1e-12  # sums of 35 terms of size <~ 5 in float64, in a different order
    np.testing.assert_allclose(polynomial.length(x), expected, rtol=0, atol=tol)


# ---- the fitted polynomials ---------------------------------------------------------------

def test_fit_covers_every_muscle_with_its_coordinates(case):
    by_muscle = {p.muscle: p for p in case.polynomials}
    assert sorted(by_muscle) == sorted(MUSCLES)
    assert by_muscle["flexor"].coordinates == ["elbow_flex"]
    assert by_muscle["extensor"].coordinates == ["elbow_flex"]
    assert by_muscle["biarticular"].coordinates == ["elbow_flex", "wrist_flex"]
    for p in case.polynomials:
        assert p.exponents.sum(axis=1).max() <= case.settings.max_order
    spans = {m.name: m.coordinates for m in case.info.muscles}
    assert spans == {"flexor": ["elbow_flex"], "extensor": ["elbow_flex"],
                     "biarticular": ["elbow_flex", "wrist_flex"]}


def test_lengths_and_moment_arms_match_opensim(case):
    """On 117 poses of the motion (the 30 fitted frames and poses between them)."""
    time = np.linspace(0.0, 0.29, 117)
    q, _ = _motion(time)
    reference = case.opensim(q)
    with torch.no_grad():
        lengths, moment_arms = case.module.paths(torch.as_tensor(q))
    length_rms = np.sqrt(np.mean((lengths.numpy() - reference["lengths"]) ** 2, axis=0)) * 1000
    arm_rms = np.sqrt(np.mean((moment_arms.numpy() - reference["moment_arms"]) ** 2, axis=0)) * 1000
    assert length_rms.max() < LENGTH_RMS_MM, dict(zip(MUSCLES, length_rms))
    assert arm_rms.max() < MOMENT_ARM_RMS_MM, dict(zip(MUSCLES, arm_rms.tolist()))
    # One-joint muscles have no wrist term at all, exactly as OpenSim (moment arm 0).
    assert np.all(moment_arms.numpy()[:, :2, 1] == 0) and np.all(reference["moment_arms"][:, :2, 1] == 0)
    # Signs: the flexor and the two-joint muscle flex the elbow, the extensor extends it.
    assert np.all(reference["moment_arms"][:, [0, 2], 0] > 0) and np.all(reference["moment_arms"][:, 1, 0] < 0)


def test_numpy_and_torch_evaluations_agree(case):
    q, _ = _motion(np.linspace(0.0, 0.29, 17))
    with torch.no_grad():
        lengths, _ = case.module.paths(torch.as_tensor(q))
    for m, name in enumerate(case.module.muscles):
        polynomial = next(p for p in case.polynomials if p.muscle == name)
        columns = [COORDINATES.index(c) for c in polynomial.coordinates]
        tol = 1e-14  # m; same polynomial in float64, monomials shared differently
        np.testing.assert_allclose(lengths[:, m].numpy(), polynomial.length(q[:, columns]), rtol=0, atol=tol)


def test_moment_arms_are_minus_length_gradient(case):
    q = torch.tensor(_motion(np.linspace(0.0, 0.29, 13))[0], requires_grad=True)
    lengths, moment_arms = case.module.paths(q)
    gradient = torch.stack([torch.autograd.grad(lengths[:, m].sum(), q, retain_graph=True)[0]
                            for m in range(len(MUSCLES))], dim=1)
    tol = 1e-10  # m; the same derivative, written out by hand vs by autograd, in float64
    np.testing.assert_allclose(moment_arms.detach().numpy(), -gradient.numpy(), rtol=0, atol=tol)


def test_speeds_are_moment_arms_times_coordinate_speeds(case):
    q, qd = _motion(np.linspace(0.0, 0.29, 13))
    q, qd = torch.as_tensor(q), torch.as_tensor(qd)
    with torch.no_grad():
        lengths, speeds = case.module.lengths_and_speeds(q, qd)
        path_lengths, moment_arms = case.module.paths(q)
    tol = 1e-12  # m, m/s; same sums in float64
    np.testing.assert_allclose(lengths.numpy(), path_lengths.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(speeds.numpy(), -(moment_arms * qd.unsqueeze(-2)).sum(-1).numpy(),
                               rtol=0, atol=tol)


def test_speeds_and_forces_match_opensim(case):
    """End to end: polynomial paths, then the curves, against OpenSim on the motion."""
    time = np.linspace(0.0, 0.29, 30)
    q, qd = _motion(time)
    reference = case.opensim(q, qd)
    with torch.no_grad():
        _, speeds = case.module.lengths_and_speeds(torch.as_tensor(q), torch.as_tensor(qd))
        _, force = case.module.muscle_matrix(torch.as_tensor(q), torch.as_tensor(qd))
    # m/s; moment-arm error (< 0.5 mm) times coordinate speed (< 15 rad/s): measured up to 1.3e-3.
    speed_tol = 7.5e-3
    assert np.abs(speeds.numpy() - reference["speeds"]).max() < speed_tol
    # The path errors move the operating point on the curves: length error x force-length
    # slope (~2 Fmax / optimal length) plus speed error x force-velocity slope (~5 Fmax per
    # vmax x optimal length) and Millard's tabulated curves (< 1e-2 N). 1 % of the maximum
    # isometric force; measured up to 0.13 % (1.0 N of 800 N; the fitter samples randomly).
    force_tol = 0.01 * np.array([m.max_isometric_force for m in case.info.muscles])
    error = np.abs(force.numpy() - reference["active_force"][:, [MUSCLES.index(m) for m in case.module.muscles]])
    assert np.all(error.max(axis=0) < force_tol), error.max(axis=0)


# ---- read_path_set on the fitter's own output -------------------------------------------------

def _read_sto(path) -> tuple[list[str], np.ndarray]:
    table = osim.TimeSeriesTable(str(path))
    return list(table.getColumnLabels()), table.getMatrix().to_numpy()


def test_read_path_set_reproduces_the_fitters_evaluation(case):
    """Run PolynomialPathFitter into a folder, parse its FunctionBasedPathSet with
    read_path_set, and evaluate the polynomials at the fitter's sampled coordinates:
    they must equal the fitter's own fitted lengths and moment arms."""
    table = osim.TimeSeriesTable()
    table.setColumnLabels(COORDINATES)
    for t, row in zip(case.time, case.q):
        table.appendRow(float(t), osim.RowVector(row.tolist()))
    table.addTableMetaDataString("inDegrees", "no")
    output = case.folder / "fitter"
    output.mkdir()
    fitter = osim.PolynomialPathFitter()
    fitter.setModel(osim.ModelProcessor(osim.Model(case.path)))
    fitter.setCoordinateValues(osim.TableProcessor(table))
    fitter.setOutputDirectory(str(output))
    fitter.setMaximumPolynomialOrder(6)
    fitter.setNumSamplesPerFrame(5)
    fitter.setNumParallelThreads(2)
    fitter.run()
    [path_set] = output.glob("*_FunctionBasedPathSet.xml")
    polynomials = {p.muscle: p for p in read_path_set(path_set)}
    assert sorted(polynomials) == sorted(MUSCLES)

    [samples] = output.glob("*_coordinate_values_sampled.sto")
    [fitted] = output.glob("*_path_lengths_sampled_fitted.sto")
    [fitted_arms] = output.glob("*_moment_arms_sampled_fitted.sto")
    sample_labels, sampled = _read_sto(samples)
    q = sampled[:, [sample_labels.index(f"/jointset/{joint}/{name}/value")
                    for joint, name in (("elbow", "elbow_flex"), ("wrist", "wrist_flex"))]]
    length_labels, lengths = _read_sto(fitted)
    arm_labels, arms = _read_sto(fitted_arms)
    module = MusculoskeletalModel(case.info, list(polynomials.values())).to(torch.float64)
    with torch.no_grad():
        our_lengths, our_arms = module.paths(torch.as_tensor(q))
    tol = 1e-12  # m; the fitter prints 16 significant digits, we evaluate the same polynomial
    for m, name in enumerate(module.muscles):
        expected = lengths[:, length_labels.index(f"/forceset/{name}_length")]
        np.testing.assert_allclose(our_lengths[:, m].numpy(), expected, rtol=0, atol=tol)
        for c, coordinate in enumerate(COORDINATES):
            label = f"/forceset/{name}_moment_arm_{coordinate}"
            if label in arm_labels:
                np.testing.assert_allclose(our_arms[:, m, c].numpy(), arms[:, arm_labels.index(label)],
                                           rtol=0, atol=tol)


def test_read_path_set_rejects_wrong_coefficient_count(in_tmp):
    text = ("<OpenSimDocument><Set_FunctionBasedPath_><objects>"
            "<FunctionBasedPath name=\"/forceset/m\"><coordinate_paths>/jointset/j/q</coordinate_paths>"
            "<length_function><MultivariatePolynomialFunction><coefficients>1 2 3</coefficients>"
            "<dimension>1</dimension><order>3</order></MultivariatePolynomialFunction></length_function>"
            "</FunctionBasedPath></objects></Set_FunctionBasedPath_></OpenSimDocument>")
    (in_tmp / "bad.xml").write_text(text)
    with pytest.raises(ValueError, match="3 coefficients, expected 4"):
        read_path_set(in_tmp / "bad.xml")


# ---- muscle_reference ------------------------------------------------------------------------

def test_muscle_reference_equals_direct_opensim_calls(case):
    time = np.linspace(0.0, 0.29, 9)
    q, qd = _motion(time)
    reference = muscle_reference(case.path, COORDINATES, q, qd)
    direct = case.opensim(q, qd)
    order = [MUSCLES.index(m.name) for m in case.info.muscles]
    tol = 0.0  # the same OpenSim calls on the same model file: identical numbers
    for key in ("lengths", "speeds", "active_force", "moment_arms"):
        np.testing.assert_allclose(reference[key], direct[key][:, order], rtol=0, atol=tol, err_msg=key)
