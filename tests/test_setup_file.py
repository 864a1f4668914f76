"""``--setup FILE``: OpenSim's Static Optimization setups (opensim_pinn.setup_file), and the actuator checks.

Unit tests read setups the tests write (relative paths, defaults, overrides,
refusals) and check the reading against OpenSim's own AnalyzeTool. The shared
setups of ../shared/data run end to end: ``static-opt --setup`` gives the same
force files as the explicit options (both solvers on arm26, the fast one on
gait2392), and OpenSim running the setup file itself gives the same forces as
``static-opt --setup --solver opensim``; ``train --setup`` and ``compare --setup``
run on arm26. Then the two refusals: ``compare`` with actuators other than the
checkpoint's, ``static-opt --solver opensim`` with a coordinate nothing acts on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn import cli
from opensim_pinn.errors import InputError
from opensim_pinn.setup_file import read_setup
from opensim_pinn.storage import StorageTable, read_storage, write_storage
from shared_cases import CASES

SAME = 1e-9  # N: the same inputs through the same solver give the same forces (bit-identical in practice)
OPENSIM_OUTPUT = 1e-6  # relative: OpenSim writes the setup's output_precision (8 significant digits)

ANALYSIS = """<StaticOptimization name="StaticOptimization">
        <on>{on}</on><step_interval>{step}</step_interval><use_model_force_set>{model_forces}</use_model_force_set>
        <activation_exponent>{exponent}</activation_exponent><use_muscle_physiology>{physiology}</use_muscle_physiology>
      </StaticOptimization>"""
SETUP = """<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000">
  <AnalyzeTool name="{name}">
    <model_file>{model}</model_file>
    <replace_force_set>{replace}</replace_force_set>
    <force_set_files>{force_sets}</force_set_files>
    <results_directory>{results}</results_directory>
    <initial_time>{initial}</initial_time>
    <final_time>{final}</final_time>
    <AnalysisSet name="Analyses"><objects>{analyses}</objects><groups /></AnalysisSet>
    <external_loads_file>{loads}</external_loads_file>
    <states_file>{states}</states_file>
    <coordinates_file>{coordinates}</coordinates_file>
    <speeds_file />
    <lowpass_cutoff_frequency_for_coordinates>{lowpass}</lowpass_cutoff_frequency_for_coordinates>
  </AnalyzeTool>
</OpenSimDocument>
"""
DEFAULTS = dict(name="trial", model="../data/model.osim", replace="false", force_sets=" reserves.xml ",
                results="out", initial="0.2", final="0.8", loads="", states="", coordinates="../data/walk.mot",
                lowpass="6", on="true", step="2", model_forces="true", exponent="2", physiology="true",
                analyses=None)


def write_setup(path: Path, **changes) -> Path:
    values = {**DEFAULTS, **changes}
    if values["analyses"] is None:
        values["analyses"] = ANALYSIS.format(**values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SETUP.format(**values))
    return path


# ---- reading --------------------------------------------------------------------------

def test_relative_paths_are_relative_to_the_setup_folder(tmp_path, monkeypatch):
    setup = write_setup(tmp_path / "setups" / "so.xml")
    monkeypatch.chdir(tmp_path)  # read through a relative path, from another folder
    read = read_setup("setups/so.xml")
    folder = tmp_path / "setups"
    assert read.model == folder / "../data/model.osim"
    assert read.coordinates_file == folder / "../data/walk.mot"
    assert read.force_set_files == [folder / "reserves.xml"]
    assert read.results_directory == folder / "out"
    assert read.external_loads_file is None  # an empty element is no file
    assert (read.name, read.initial_time, read.final_time, read.lowpass, read.step_interval) == \
        ("trial", 0.2, 0.8, 6.0, 2)
    assert setup.is_file()


def test_left_out_elements_take_opensim_defaults(tmp_path):
    setup = tmp_path / "minimal.xml"
    setup.write_text('<OpenSimDocument Version="40000"><AnalyzeTool name="m"><AnalysisSet><objects>'
                     '<StaticOptimization name="so"/></objects></AnalysisSet></AnalyzeTool></OpenSimDocument>')
    read = read_setup(setup)
    # OpenSim 4.6's AnalyzeTool(): initial 0 s, final 1 s, lowpass -1, results "./"; StaticOptimization: step 1
    assert (read.initial_time, read.final_time, read.lowpass, read.step_interval) == (0.0, 1.0, -1.0, 1)
    assert read.results_directory == tmp_path and read.model is None and read.force_set_files == []


@pytest.mark.parametrize("case, setup", [("gait2392", "setup_static_optimization.xml"),
                                         ("arm26", "arm26_Setup_StaticOptimization.xml")])
def test_shared_setups_read_as_opensim_reads_them(shared_data, case, setup):
    """Our reading of the shared setups against OpenSim's AnalyzeTool (model not loaded), in a subprocess."""
    path = shared_data / case / setup
    script = ("import json, sys, opensim\n"
              "opensim.Logger.setLevelString('error')\n"
              "t = opensim.AnalyzeTool(sys.argv[1], False)\n"
              "a = opensim.StaticOptimization.safeDownCast(t.getAnalysisSet().get('StaticOptimization'))\n"
              "f = t.getForceSetFiles()\n"
              "print(json.dumps([t.getName(), t.getModelFilename(), [f.get(i) for i in range(f.getSize())],\n"
              "    t.getCoordinatesFileName(), t.getExternalLoadsFileName(), t.getResultsDir(), t.getInitialTime(),\n"
              "    t.getFinalTime(), t.getLowpassCutoffFrequency(), a.getStepInterval(), a.getActivationExponent(),\n"
              "    a.getUseMusclePhysiology(), t.getReplaceForceSet()]))\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (name, model, force_sets, coordinates, loads, results, initial, final, lowpass, step, exponent, physiology,
     replace) = json.loads(done.stdout.strip().splitlines()[-1])
    read = read_setup(path)
    folder = path.parent

    def ours(value):
        return None if not value else folder / value

    assert read.name == name
    assert (read.model, read.coordinates_file, read.external_loads_file) == (ours(model), ours(coordinates), ours(loads))
    assert read.force_set_files == [folder / f for f in force_sets]
    assert read.results_directory == folder / results
    assert (read.initial_time, read.final_time, read.lowpass, read.step_interval) == (initial, final, lowpass, step)
    assert (exponent, physiology, replace) == (2.0, True, False)  # what read_setup accepted


def test_given_options_override_the_setup(tmp_path):
    read = read_setup(write_setup(tmp_path / "so.xml", force_sets="a.xml b.xml", states="states.sto"))
    given = {"model": "m.osim", "motion": "w.mot", "external_loads": None, "reserves": "auto", "start": 0.3,
             "end": None, "lowpass": -1.0, "step_interval": None, "out": "here"}
    merged = read.options(given)
    # Given wins; a setup's states_file and several force set files do not matter once overridden.
    assert {k: merged[k] for k in given if given[k] is not None} == {k: v for k, v in given.items() if v is not None}
    assert (merged["end"], merged["step_interval"], merged["external_loads"]) == (0.8, 2, None)
    assert merged["name"] is None  # the motion is not the setup's: files are named after it


def test_setup_files_that_are_used_must_exist(tmp_path):
    read = read_setup(write_setup(tmp_path / "so.xml"))
    with pytest.raises(InputError, match=r"so.xml: <model_file> .*model.osim not found; .* or give --model"):
        read.options({})


REFUSED = {
    "exponent": (dict(exponent="3"), "<activation_exponent> is 3"),
    "physiology": (dict(physiology="false"), "<use_muscle_physiology> is false"),
    "model_force_set": (dict(model_forces="false"), "<use_model_force_set> is false"),
    "replace": (dict(replace="true"), "<replace_force_set> is true"),
    "off": (dict(on="false"), "the StaticOptimization analysis is off"),
    "no_analysis": (dict(analyses='<MuscleAnalysis name="m"/>'), "no StaticOptimization in <AnalysisSet> (it has "
                    "MuscleAnalysis)"),
    "two_analyses": (dict(analyses=ANALYSIS.format(**DEFAULTS) * 2), "2 StaticOptimization analyses"),
    "states": (dict(states="walk_states.sto"), "<states_file> 'walk_states.sto': OpenSim would take the kinematics"),
    "force_sets": (dict(force_sets="a.xml b.xml"), "<force_set_files> lists 2 files"),
    "step": (dict(step="0"), "<step_interval> must be a whole number, 1 or more, got 0"),
    "times": (dict(initial="2", final="1"), "<initial_time> 2 s must be before <final_time> 1 s"),
    "number": (dict(lowpass="six"), "<lowpass_cutoff_frequency_for_coordinates> must be a number, got 'six'"),
    "flag": (dict(physiology="yes"), "<use_muscle_physiology> must be true or false, got 'yes'"),
}


@pytest.mark.parametrize("command", ["static-opt", "train", "compare"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_what_cannot_be_honoured_is_one_line(tmp_path, capfd, command, name):
    changes, fragment = REFUSED[name]
    setup = write_setup(tmp_path / "so.xml", **changes)
    (tmp_path / "data").mkdir()
    for file in ("model.osim", "walk.mot"):
        (tmp_path / "data" / file).write_text("")  # never read: the setup is refused first
    (tmp_path / "reserves.xml").write_text("")
    argv = [command, "--setup", str(setup)] + (["--checkpoint", str(tmp_path / "c.pt")] if command == "compare" else [])
    assert cli.main(argv) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"opensim-pinn: error: {setup}: "), lines
    assert fragment in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, fragment", [("not xml", "not valid XML"),
                                            ('<OpenSimDocument><InverseDynamicsTool name="x"/></OpenSimDocument>',
                                             "holds <InverseDynamicsTool>, not <AnalyzeTool>")])
def test_not_a_static_optimization_setup(tmp_path, capfd, text, fragment):
    (tmp_path / "id.xml").write_text(text)
    assert cli.main(["static-opt", "--setup", str(tmp_path / "id.xml")]) == 2
    assert fragment in capfd.readouterr().err


# ---- the shared setups, end to end ------------------------------------------------------

def _forces(folder: Path) -> StorageTable:
    (path,) = folder.glob("*_StaticOptimization_force.sto")
    return read_storage(path)


def _assert_same_forces(a: StorageTable, b: StorageTable, tolerance: float, relative: bool = False) -> None:
    assert a.labels == b.labels
    np.testing.assert_allclose(a.time, b.time, atol=1e-9)
    np.testing.assert_allclose(a.data, b.data, atol=0 if relative else tolerance, rtol=tolerance if relative else 0)


def _explicit(case, folder: Path) -> list[str]:
    argv = ["--model", str(folder / case.model), "--motion", str(folder / case.motion), "--start", str(case.start),
            "--end", str(case.end), "--lowpass", str(case.lowpass), "--step-interval", str(case.step_interval)]
    if case.external_loads:
        argv += ["--external-loads", str(folder / case.external_loads)]
    return argv + (["--reserves", str(folder / case.reserves)] if case.reserves else [])


@pytest.mark.parametrize("solver", ["fast", "opensim"])
def test_static_opt_setup_arm26_equals_explicit_options(shared_data, tmp_path, solver):
    folder = shared_data / "arm26"
    setup = folder / "arm26_Setup_StaticOptimization.xml"
    assert cli.main(["static-opt", "--setup", str(setup), "--solver", solver, "--out", str(tmp_path / "setup")]) == 0
    assert cli.main(["static-opt", *_explicit(CASES["arm26"], folder), "--solver", solver,
                     "--out", str(tmp_path / "explicit")]) == 0
    assert (tmp_path / "setup" / "arm26_StaticOptimization_force.sto").is_file()  # OpenSim's name: the tool's
    _assert_same_forces(_forces(tmp_path / "setup"), _forces(tmp_path / "explicit"), SAME)


def test_opensim_running_the_setup_gives_the_same_forces(shared_data, tmp_path):
    """The arm26 setup copied elsewhere and run by OpenSim itself from another folder: its results land
    in results_directory next to the setup, with the forces of ``static-opt --setup --solver opensim``."""
    folder = tmp_path / "arm26"
    folder.mkdir()
    for name in ("arm26.osim", "arm26_InverseKinematics.mot", "arm26_Setup_StaticOptimization.xml"):
        shutil.copy(shared_data / "arm26" / name, folder / name)
    script = ("import sys, opensim\nopensim.Logger.setLevelString('error')\n"
              "opensim.AnalyzeTool(sys.argv[1]).run()\n")
    done = subprocess.run([sys.executable, "-c", script, "arm26/arm26_Setup_StaticOptimization.xml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    opensim_results = folder / "PhysiologicalResults"
    assert (opensim_results / "arm26_StaticOptimization_force.sto").is_file()
    # Ours with no --out: into the same results_directory, which now holds OpenSim's files (refused
    # without --force), so compare into a copy of the setup elsewhere.
    ours = tmp_path / "ours"
    ours.mkdir()
    for name in ("arm26.osim", "arm26_InverseKinematics.mot", "arm26_Setup_StaticOptimization.xml"):
        shutil.copy(folder / name, ours / name)
    assert cli.main(["static-opt", "--setup", str(ours / "arm26_Setup_StaticOptimization.xml"),
                     "--solver", "opensim"]) == 0
    _assert_same_forces(_forces(ours / "PhysiologicalResults"), _forces(opensim_results), OPENSIM_OUTPUT, relative=True)


def test_static_opt_setup_gait2392_equals_explicit_options(shared_data, tmp_path, capfd):
    folder = shared_data / "gait2392"
    case = CASES["gait2392"]
    setup = folder / "setup_static_optimization.xml"
    # The setup names subject01_simbody_adjusted.osim, which is not shipped: a clear error, or --model.
    assert cli.main(["static-opt", "--setup", str(setup), "--out", str(tmp_path / "x")]) == 2
    assert "<model_file> " in capfd.readouterr().err
    assert cli.main(["static-opt", "--setup", str(setup), "--model", str(folder / case.model),
                     "--out", str(tmp_path / "setup")]) == 0
    assert cli.main(["static-opt", *_explicit(case, folder), "--out", str(tmp_path / "explicit")]) == 0
    assert (tmp_path / "setup" / "subject01_StaticOptimization_force.sto").is_file()
    forces = _forces(tmp_path / "setup")
    assert len(forces.time) == 151 and forces.time[0] == pytest.approx(0.5, abs=1e-9)  # 0.5-1.999 s, every 10th
    _assert_same_forces(forces, _forces(tmp_path / "explicit"), SAME)


@pytest.fixture(scope="module")
def arm26_setup(tmp_path_factory, shared_data) -> Path:
    """The shared arm26 setup and its files, copied (results_directory is next to the setup)."""
    folder = tmp_path_factory.mktemp("arm26_setup")
    for name in ("arm26.osim", "arm26_InverseKinematics.mot", "arm26_Setup_StaticOptimization.xml"):
        shutil.copy(shared_data / "arm26" / name, folder / name)
    return folder / "arm26_Setup_StaticOptimization.xml"


@pytest.fixture(scope="module")
def trained_auto(arm26_setup, tmp_path_factory) -> Path:
    """``train --setup`` on arm26 with --reserves auto, a few epochs."""
    out = tmp_path_factory.mktemp("train_setup")
    assert cli.main(["train", "--setup", str(arm26_setup), "--reserves", "auto", "--epochs", "3",
                     "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_train_and_compare_with_the_setup(arm26_setup, trained_auto, tmp_path):
    from opensim_pinn.trainer import Trainer

    trainer = Trainer.load(trained_auto)
    assert trainer.lowpass == 6.0 and trainer.trial_settings[0]["start"] == 0.0  # the setup's
    assert len(trainer.actuators) == 2  # reserves auto: one per arm26 coordinate
    assert cli.main(["compare", "--setup", str(arm26_setup), "--checkpoint", str(trained_auto),
                     "--reserves", "auto"]) == 0
    metrics = json.loads((arm26_setup.parent / "PhysiologicalResults" / "metrics.json").read_text())
    assert metrics["n_frames"] == 121 and metrics["lowpass_hz"] == 6.0  # all of 0-1 s at 120 Hz


def test_compare_refuses_other_actuators_than_the_checkpoints(arm26_setup, trained_auto, tmp_path, capfd):
    """The defect: without --reserves, compare ran OpenSim's SO without them and reported nonsense."""
    out = tmp_path / "compare"
    assert cli.main(["compare", "--setup", str(arm26_setup), "--checkpoint", str(trained_auto),
                     "--out", str(out)]) == 2
    line = capfd.readouterr().err.strip()
    assert "was trained with 2 actuators (reserves auto: reserve_r_shoulder_elev, reserve_r_elbow_flex)" in line
    assert "this compare has 0 (no --reserves: none)" in line and line.endswith("give --reserves auto")
    assert not out.exists()


def test_compare_refuses_a_setup_lowpass_other_than_the_checkpoints(arm26_setup, trained_auto, tmp_path, capfd):
    other = arm26_setup.with_name("setup_no_filter.xml")
    other.write_text(arm26_setup.read_text().replace("6.00000000 </lowpass", "-1 </lowpass"))
    assert cli.main(["compare", "--setup", str(other), "--checkpoint", str(trained_auto), "--reserves", "auto",
                     "--out", str(tmp_path / "d")]) == 2
    assert "low-pass cut-off -1 Hz is not the checkpoint's (6 Hz)" in capfd.readouterr().err


# ---- a coordinate that nothing acts on ------------------------------------------------------

@pytest.fixture()
def toes_model(tmp_path) -> tuple[Path, Path]:
    """The built-in demo model with a toes body on a pin joint (mtp_angle_r) that no muscle crosses, and a motion."""
    osim = pytest.importorskip("opensim")
    repository = Path(__file__).resolve().parents[1]
    model = osim.Model(str(repository / "models" / "opensim_pinn_lower_limb.osim"))
    toes = osim.Body("toes_r", 0.2, osim.Vec3(0.03, 0, 0), osim.Inertia(1e-4))
    model.addBody(toes)
    joint = osim.PinJoint("mtp_r", model.getBodySet().get("calcn_r"), osim.Vec3(0.18, 0, 0), osim.Vec3(0),
                          toes, osim.Vec3(0), osim.Vec3(0))
    joint.updCoordinate().setName("mtp_angle_r")
    model.addJoint(joint)
    model.finalizeConnections()
    path = tmp_path / "toes.osim"
    model.printToXML(str(path))
    time = np.linspace(0, 1, 51)
    swing = 0.2 * np.sin(2 * np.pi * time)[:, None]
    motion = tmp_path / "toes_IK.mot"
    write_storage(motion, StorageTable(name="toes", labels=["hip_flexion_r", "knee_angle_r", "ankle_angle_r",
                                                            "mtp_angle_r"], time=time,
                                       data=np.hstack([swing, -0.3 + swing, 0.5 * swing, swing])))
    return path, motion


def test_opensim_solver_refuses_a_coordinate_nothing_acts_on(toes_model, tmp_path, capfd, monkeypatch):
    """The defect: OpenSim's SO ran, left the muscles at activation 1 and exited 0. Now refused from the
    model description, before any OpenSim run but reading the model."""
    import opensim_pinn.child

    real = opensim_pinn.child.run_in_child

    def only_reading(step, function, *args, **kwargs):
        assert step == "reading the model", f"{step} ran before the refusal"
        return real(step, function, *args, **kwargs)

    monkeypatch.setattr(opensim_pinn.child, "run_in_child", only_reading)
    model, motion = toes_model
    out = tmp_path / "so"
    assert cli.main(["static-opt", "--model", str(model), "--motion", str(motion), "--solver", "opensim",
                     "--out", str(out)]) == 2
    assert "no muscle or actuator acts on coordinate(s) mtp_angle_r" in capfd.readouterr().err
    assert not out.exists()


TORQUE_RESERVE = """<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000"><ForceSet name="residual"><objects>
  <TorqueActuator name="hip_torque"><bodyA>pelvis</bodyA><bodyB>femur_r</bodyB><torque_is_global>false</torque_is_global>
    <axis>0 0 1</axis><optimal_force>10</optimal_force></TorqueActuator>
</objects></ForceSet></OpenSimDocument>
"""


def test_opensim_solver_checks_torque_actuators_with_inverse_dynamics(toes_model, tmp_path, capfd):
    """A torque actuator acts on no named coordinate: its generalised forces (inverse dynamics) decide."""
    model, motion = toes_model
    reserves = tmp_path / "torque.xml"
    reserves.write_text(TORQUE_RESERVE)
    assert cli.main(["static-opt", "--model", str(model), "--motion", str(motion), "--reserves", str(reserves),
                     "--solver", "opensim", "--out", str(tmp_path / "so")]) == 2
    assert "no muscle or actuator acts on coordinate(s) mtp_angle_r" in capfd.readouterr().err
