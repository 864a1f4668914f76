"""Tests of the built-in demo: generated model, synthesized trial, and that OpenSim's
inverse dynamics and Static Optimization work on them (opensim_pinn.demo_model)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from scipy.interpolate import CubicSpline
from scipy.optimize import linprog

osim = pytest.importorskip("opensim")

from opensim_pinn import demo_model  # noqa: E402
from opensim_pinn.storage import read_storage  # noqa: E402

COMMITTED_MODEL = Path(__file__).resolve().parents[1] / "models" / "opensim_pinn_lower_limb.osim"
COORDINATES = ("hip_flexion_r", "knee_angle_r", "ankle_angle_r")
# Expected moment-arm sign per muscle and coordinate (OpenSim: moment arm = -dL/dq;
# hip flexion +, knee extension +, ankle dorsiflexion +); 0 = muscle does not cross.
EXPECTED_SIGNS = {
    "iliopsoas_r": (1, 0, 0),
    "glut_max_r": (-1, 0, 0),
    "hamstrings_r": (-1, -1, 0),
    "bifemsh_r": (0, -1, 0),
    "rect_fem_r": (1, 1, 0),
    "vasti_r": (0, 1, 0),
    "gastroc_r": (0, -1, -1),
    "soleus_r": (0, 0, -1),
    "tib_ant_r": (0, 0, 1),
}
MUSCLES = tuple(EXPECTED_SIGNS)
CUTOFF_HZ = 6.0  # OpenSim SO's default low-pass of the coordinates; ID uses the same


@contextlib.contextmanager
def _working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")
    return demo_model.write_demo_project(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A separate current folder for OpenSim tools, away from the inputs and the repo."""
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="module")
def id_moments(demo, run_dir) -> tuple[np.ndarray, np.ndarray]:
    """OpenSim InverseDynamicsTool on the trial: time (n,), moments (n, 3) in N m."""
    model = osim.Model(str(demo["model"]))  # its own model, kept alive until the tool is done
    tool = osim.InverseDynamicsTool()
    tool.setModel(model)
    tool.setCoordinatesFileName(str(demo["motion"]))
    tool.setExternalLoadsFileName(str(demo["external_loads"]))
    tool.setLowpassCutoffFrequency(CUTOFF_HZ)
    excluded = osim.ArrayStr()
    excluded.append("Muscles")  # net joint moments, not net of the muscles' passive forces
    tool.setExcludedForces(excluded)
    tool.setStartTime(0.0)
    tool.setEndTime(2.4)
    tool.setResultsDir(str(run_dir))
    tool.setOutputGenForceFileName("walk_ID.sto")
    with _working_directory(run_dir):
        assert tool.run()
    table = read_storage(run_dir / "walk_ID.sto")
    return table.time, np.column_stack([table.column(f"{c}_moment") for c in COORDINATES])


@pytest.fixture(scope="module")
def muscle_capacity(demo, id_moments) -> tuple[np.ndarray, np.ndarray]:
    """Moment arms (n, 3, m) in m and active force at full activation (n, m) in N, per
    frame of the ID output, from the motion file (spline velocities, rigid tendon)."""
    time, _ = id_moments
    motion = read_storage(demo["motion"])
    splines = {c: CubicSpline(motion.time, np.deg2rad(motion.column(c))) for c in COORDINATES}
    model = osim.Model(str(demo["model"]))
    state = model.initSystem()
    coordinates = [model.getCoordinateSet().get(c) for c in COORDINATES]
    muscles = [model.getMuscles().get(m) for m in MUSCLES]
    arms = np.zeros((len(time), len(COORDINATES), len(MUSCLES)))
    forces = np.zeros((len(time), len(MUSCLES)))
    for i, t in enumerate(time):
        for name, coordinate in zip(COORDINATES, coordinates):
            coordinate.setValue(state, float(splines[name](t)), False)
            coordinate.setSpeedValue(state, float(splines[name](t, 1)))
        model.realizeVelocity(state)
        for k, muscle in enumerate(muscles):
            forces[i, k] = muscle.calcInextensibleTendonActiveFiberForce(state, 1.0)
            arms[i, :, k] = [muscle.computeMomentArm(state, c) for c in coordinates]
    return arms, forces


def _least_max_activation(arms: np.ndarray, forces: np.ndarray, moments: np.ndarray) -> float:
    """Smallest s such that some 0 <= a <= s gives sum_m arms[:, m] a_m forces_m = moments
    (a linear programme); inf when no activations reproduce the moments."""
    n_muscles = len(forces)
    cost = np.r_[np.zeros(n_muscles), 1.0]
    a_ub = np.hstack([np.eye(n_muscles), -np.ones((n_muscles, 1))])
    a_eq = np.hstack([arms * forces, np.zeros((len(moments), 1))])
    result = linprog(cost, A_ub=a_ub, b_ub=np.zeros(n_muscles), A_eq=a_eq, b_eq=moments,
                     bounds=[(0.0, None)] * (n_muscles + 1))
    return float(result.x[-1]) if result.status == 0 else np.inf


def test_model_loads_with_three_coordinates_and_nine_muscles(demo):
    model = osim.Model(str(demo["model"]))
    model.initSystem()
    assert model.getName() == "opensim_pinn_lower_limb"
    assert [model.getCoordinateSet().get(i).getName() for i in range(model.getNumCoordinates())] \
        == list(COORDINATES)
    assert [model.getMuscles().get(i).getName() for i in range(model.getMuscles().getSize())] == list(MUSCLES)
    assert model.getActuators().getSize() == len(MUSCLES)  # muscles only, no reserves
    for muscle in model.getMuscles():
        millard = osim.Millard2012EquilibriumMuscle.safeDownCast(muscle)
        assert millard.get_ignore_tendon_compliance() and millard.get_ignore_activation_dynamics()
        assert millard.get_max_contraction_velocity() == 10.0
    assert "Delp" in model.get_publications() and "Winter" in model.get_publications()


@pytest.mark.parametrize("knee_degrees", [0.0, -20.0, -40.0, -65.0])
def test_moment_arm_signs_match_anatomy(demo, knee_degrees):
    # neutral hip and ankle; the knee over the trial's range (0 to -62 deg)
    model = osim.Model(str(demo["model"]))
    state = model.initSystem()
    coordinates = [model.getCoordinateSet().get(c) for c in COORDINATES]
    coordinates[1].setValue(state, np.deg2rad(knee_degrees))
    for name, signs in EXPECTED_SIGNS.items():
        muscle = model.getMuscles().get(name)
        for coordinate, sign in zip(coordinates, signs):
            arm = muscle.computeMomentArm(state, coordinate)
            if sign == 0:
                assert abs(arm) < 1e-9, (name, coordinate.getName(), arm)
            else:  # 1-8 cm: the range of Delp's lower-limb moment arms
                assert 0.01 < sign * arm < 0.08, (name, coordinate.getName(), arm)


def test_regenerated_model_equals_committed(tmp_path):
    osim.Logger.removeFileSink()
    fresh = demo_model.build_lower_limb_model(tmp_path)
    parser = etree.XMLParser(remove_blank_text=True)
    committed_tree = etree.tostring(etree.parse(str(COMMITTED_MODEL), parser))
    fresh_tree = etree.tostring(etree.parse(str(fresh), parser))
    assert fresh_tree == committed_tree, (
        "models/opensim_pinn_lower_limb.osim is stale: run python -m opensim_pinn.demo_model models/")
    assert demo_model.GENERATED_COMMENT in COMMITTED_MODEL.read_text()


def test_writing_the_project_prints_nothing_on_stdout(tmp_path):
    """``opensim-pinn demo`` prints its JSON summary on stdout; OpenSim's info lines must not mix in."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    written = subprocess.run([sys.executable, "-c", "import sys; from opensim_pinn.demo_model import "
                              "write_demo_project; write_demo_project(sys.argv[1])", str(tmp_path)],
                             capture_output=True, text=True, env=environment, check=True)
    assert written.stdout == ""


def test_trial_is_read_by_opensim_and_read_storage(demo):
    for key, labels in (("motion", COORDINATES), ("grf", demo_model.GRF_LABELS)):
        table = osim.TimeSeriesTable(str(demo[key]))
        assert list(table.getColumnLabels()) == list(labels)
        assert table.getNumRows() == 241
        ours = read_storage(demo[key])
        assert ours.labels == list(labels) and ours.n_frames == 241
        assert any("opensim-pinn" in line for line in ours.comments)
    motion = read_storage(demo["motion"])
    assert motion.in_degrees
    assert np.isclose(motion.time[-1], 2.4)
    knee = motion.column("knee_angle_r")
    assert -70.0 < knee.min() < -55.0 and knee.max() < 0.0  # degrees, flexion negative
    grf = read_storage(demo["grf"])
    weight = demo_model.BODY_MASS * demo_model.GRAVITY
    vertical = grf.column("ground_force_vy")
    assert 1.0 < vertical.max() / weight < 1.2
    swing = np.mod(grf.time / 1.2, 1.0) > demo_model.STANCE_FRACTION + 0.01
    assert np.all(vertical[swing] == 0.0)
    shear = grf.column("ground_force_vx")
    assert shear.min() < -0.05 * weight and shear.max() > 0.05 * weight  # braking, propulsion
    loads = osim.ExternalLoads(str(demo["external_loads"]), True)
    assert loads.getDataFileName() == "walk_grf.mot"
    assert loads.get(0).get_applied_to_body() == "calcn_r"


def test_inverse_dynamics_peaks_are_physiological(id_moments):
    # Normal walking peaks (Winter 2009): hip and knee about 0.5-1 N m/kg, ankle
    # plantarflexion about 1.3-1.6 N m/kg. Tolerances are wide (factor ~2) because
    # the trial is synthetic with a fixed pelvis, but they catch sign errors,
    # degree/radian slips and a GRF at the wrong place or scale.
    time, moments = id_moments
    per_kg = moments / demo_model.BODY_MASS
    hip, knee, ankle = per_kg.T
    assert 0.3 < hip.max() < 1.5 and -1.5 < hip.min() < -0.3
    assert 0.3 < knee.max() < 1.5 and -1.5 < knee.min() < -0.3
    assert -2.0 < ankle.min() < -1.2 and ankle.max() < 0.5
    late_stance = (np.mod(time / 1.2, 1.0) > 0.4) & (np.mod(time / 1.2, 1.0) < 0.55)
    assert ankle[late_stance].min() == ankle.min()  # push-off is the plantarflexor peak


@pytest.mark.parametrize("phase", [0.10, 0.30, 0.50])  # loading response, mid, push-off
def test_stance_moments_within_muscle_capacity(id_moments, muscle_capacity, phase):
    time, moments = id_moments
    arms, forces = muscle_capacity
    frame = int(np.argmin(np.abs(time - (1.2 + phase * 1.2))))
    assert _least_max_activation(arms[frame], forces[frame], moments[frame]) < 0.9


def test_every_frame_feasible_without_reserves(id_moments, muscle_capacity):
    # At every frame some activations in [0, 0.9] reproduce the ID moments; the 10 %
    # margin covers this check using unfiltered kinematics where SO filters at 6 Hz.
    _, moments = id_moments
    arms, forces = muscle_capacity
    needed = [_least_max_activation(arms[i], forces[i], moments[i]) for i in range(len(moments))]
    assert max(needed) < 0.9


def test_static_optimization_solves_every_frame(demo, run_dir, id_moments, muscle_capacity):
    tool = osim.AnalyzeTool()
    tool.setName("walk")
    tool.setModelFilename(str(demo["model"]))
    tool.setCoordinatesFileName(str(demo["motion"]))
    tool.setExternalLoadsFileName(str(demo["external_loads"]))
    tool.setLowpassCutoffFrequency(CUTOFF_HZ)
    tool.setInitialTime(0.0)
    tool.setFinalTime(2.4)
    tool.setResultsDir(str(run_dir / "so"))
    so = osim.StaticOptimization()
    so.setStartTime(0.0)
    so.setEndTime(2.4)
    so.setActivationExponent(2.0)
    so.setUseMusclePhysiology(True)
    tool.getAnalysisSet().cloneAndAppend(so)
    setup = run_dir / "so_setup.xml"
    tool.printToXML(str(setup))  # a tool built in Python does not load the motion itself
    with _working_directory(run_dir):
        assert osim.AnalyzeTool(str(setup)).run()
    activations = read_storage(run_dir / "so" / "walk_StaticOptimization_activation.sto")
    forces = read_storage(run_dir / "so" / "walk_StaticOptimization_force.sto")
    assert activations.n_frames == 241 and activations.labels == list(MUSCLES)
    a = activations.data
    assert np.all(a >= 0.0) and np.all(a <= 1.0)
    # SO met its constraint at every frame: the muscle forces reproduce the ID moments
    _, moments = id_moments
    arms, _ = muscle_capacity
    muscle_forces = np.column_stack([forces.column(m) for m in MUSCLES])
    produced = np.einsum("ijm,im->ij", arms, muscle_forces)
    # 0.5 N m: here the moment arms come from unfiltered angles, SO's from 6 Hz filtered
    # ones (observed: 0.1 N m); a frame where SO gave up would miss by tens of N m
    assert np.abs(produced - moments).max() < 0.5
    # plausible pattern (Winter 2009 EMG): vasti in loading response, soleus and
    # gastrocnemius at push-off, hamstrings in terminal swing
    phase = np.mod(activations.time / 1.2, 1.0)
    column = dict(zip(MUSCLES, a.T))
    assert 0.05 < phase[np.argmax(column["vasti_r"])] < 0.25
    assert 0.35 < phase[np.argmax(column["soleus_r"])] < 0.6
    assert 0.35 < phase[np.argmax(column["gastroc_r"])] < 0.6
    terminal_swing = phase > 0.9
    mid_swing = (phase > 0.7) & (phase < 0.8)
    assert column["hamstrings_r"][terminal_swing].mean() > 3 * column["hamstrings_r"][mid_swing].mean()
