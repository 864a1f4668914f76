"""Prediction into OpenSim files and comparison with OpenSim SO (opensim_pinn.predict, .compare, .demo).

The real-data tests train a short network on the gait10dof18musc walk (accuracy is
tested with default training in test_train_shared.py) and check that OpenSim's own
tools accept the files: the forces file in the JointReaction analysis in place of
SO's force file, the states file in ``StatesTrajectory.createFromStatesTable``.
The demo test runs the whole built-in example with short training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn.errors import InputError
from opensim_pinn.storage import read_storage

SHORT_EPOCHS = 150  # enough for the files to be meaningful; accuracy is test_train_shared's job
CASE = "gait10dof18musc"
START, END = 0.5, 1.5  # a 61-frame piece of the walk keeps OpenSim's runs short


@pytest.fixture(scope="module")
def files(shared_data):
    folder = shared_data / CASE
    return {"model": str(folder / "subject01.osim"), "motion": str(folder / "subject01_walk_IK.mot"),
            "external_loads": str(folder / "subject01_walk_grf.xml"),
            "reserves": str(folder / "gait10dof18musc_Strong_actuators.xml")}


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    """Train briefly, predict and compare, once for the module (in a temporary folder)."""
    from opensim_pinn.compare import compare
    from opensim_pinn.predict import predict
    from opensim_pinn.train import train_network

    root = tmp_path_factory.mktemp("predict_compare")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        trained = train_network(files["model"], [files["motion"]], [files["external_loads"]],
                                reserves=files["reserves"], start=START, end=END, epochs=SHORT_EPOCHS,
                                out=root / "train", progress=False)
        checkpoint = root / "train" / "checkpoint.pt"
        predicted = predict(checkpoint, files["motion"], files["external_loads"], out=root / "predict",
                            start=START, end=END)
        compared = compare(checkpoint, files["model"], files["motion"], files["external_loads"],
                           reserves=files["reserves"], start=START, end=END, out=root / "compare")
    finally:
        os.chdir(cwd)
    return {"root": root, "checkpoint": checkpoint, "trained": trained, "predicted": predicted,
            "compared": compared}


def test_train_writes_checkpoint_and_history(run):
    root = run["root"]
    assert (root / "train" / "checkpoint.pt").is_file()
    history = (root / "train" / "history.csv").read_text().splitlines()
    assert history[0].split(",") == ["epoch", "wall_s", "learning_rate", "damping", "dynamics", "performance",
                                     "boundary", "total", "control_fit"]
    assert len(history) == SHORT_EPOCHS + 1
    assert run["trained"]["epochs"] == SHORT_EPOCHS


def test_predict_writes_the_three_opensim_files(run):
    from opensim_pinn.trainer import Trainer

    root = run["root"] / "predict"
    names = sorted(p.name for p in root.iterdir())
    assert names == ["subject01_walk_activations.sto", "subject01_walk_forces.sto", "subject01_walk_states.sto"]
    trainer = Trainer.load(run["checkpoint"])
    forces = read_storage(root / "subject01_walk_forces.sto")
    activations = read_storage(root / "subject01_walk_activations.sto")
    # SO's layout: muscles, then the reserve/residual actuators (the network's actuator head)
    assert forces.labels == activations.labels == trainer.muscles + trainer.actuators
    assert len(trainer.actuators) == 10
    assert forces.time[0] == pytest.approx(START, abs=1e-5) and forces.time[-1] == pytest.approx(END, abs=1e-5)
    muscles = len(trainer.muscles)
    assert np.all(activations.data[:, :muscles] >= 0.01 - 1e-9) and np.all(activations.data[:, :muscles] <= 1.0)
    assert np.all(forces.data[:, :muscles] >= 0)
    assert np.all(np.isfinite(forces.data[:, muscles:]))
    assert run["predicted"]["timing_s"]["inference"] > 0


def test_states_file_builds_an_opensim_states_trajectory(run, files, in_tmp):
    osim = pytest.importorskip("opensim")
    path = run["root"] / "predict" / "subject01_walk_states.sto"
    states = read_storage(path)
    assert not states.in_degrees
    assert "/jointset/knee_r/knee_angle_r/value" in states.labels
    assert "/jointset/knee_r/knee_angle_r/speed" in states.labels
    assert "/forceset/vasti_r/activation" in states.labels
    model = osim.Model(files["model"])
    model.initSystem()
    trajectory = osim.StatesTrajectory.createFromStatesTable(model, osim.TimeSeriesTable(str(path)))
    assert trajectory.getSize() == states.n_frames
    knee = model.getCoordinateSet().get("knee_angle_r")
    middle = states.n_frames // 2
    assert knee.getValue(trajectory.get(middle)) == pytest.approx(
        states.data[middle, states.labels.index("/jointset/knee_r/knee_angle_r/value")], abs=1e-8)
    assert model.getStateVariableValue(trajectory.get(middle), "/forceset/vasti_r/activation") == pytest.approx(
        states.data[middle, states.labels.index("/forceset/vasti_r/activation")], abs=1e-8)


def test_forces_file_drops_into_opensim_joint_reaction_analysis(run, files, in_tmp):
    """JointReaction reads our forces file where it would read SO's ``_StaticOptimization_force.sto``."""
    osim = pytest.importorskip("opensim")
    forces = run["root"] / "predict" / "subject01_walk_forces.sto"
    tool = osim.AnalyzeTool()
    tool.setName("network")
    tool.setModelFilename(files["model"])
    tool.setCoordinatesFileName(files["motion"])
    tool.setExternalLoadsFileName(files["external_loads"])
    tool.setLowpassCutoffFrequency(6.0)
    tool.setInitialTime(START)
    tool.setFinalTime(END)
    tool.setResultsDir(str(in_tmp / "results"))
    analysis = osim.JointReaction()
    analysis.setName("JointReaction")
    analysis.setForcesFileName(str(forces))
    analysis.setStartTime(START)
    analysis.setEndTime(END)
    for setter, value in ((analysis.setJointNames, "knee_r"), (analysis.setOnBody, "child"),
                          (analysis.setInFrame, "child")):
        values = osim.ArrayStr()
        values.append(value)
        setter(values)
    tool.getAnalysisSet().cloneAndAppend(analysis)
    tool.printToXML(str(in_tmp / "setup.xml"))
    assert osim.AnalyzeTool(str(in_tmp / "setup.xml")).run()
    written = sorted((in_tmp / "results").glob("*JointReaction*.sto"))
    assert written, "JointReaction wrote no results"
    loads = read_storage(written[0])
    assert loads.n_frames > 10 and np.all(np.isfinite(loads.data))
    # The knee compressive load in stance is several body weights, not the few hundred N of
    # gravity and inertia alone: the muscle forces were applied.
    assert np.abs(loads.data).max() > 1000


def test_compare_writes_metrics_report_and_figures(run):
    root = run["root"] / "compare"
    metrics = json.loads((root / "metrics.json").read_text())
    muscles = metrics["muscles"]
    assert len(muscles) == 18
    for values in muscles.values():
        assert {"r2", "nrmse", "rmse"} <= set(values)
    assert {"median_r2", "mean_r2", "mean_nrmse"} <= set(metrics["summary"])
    assert set(metrics["torque_residual"]) == {
        "pelvis_tilt", "pelvis_tx", "pelvis_ty", "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
        "hip_flexion_l", "knee_angle_l", "ankle_angle_l", "lumbar_extension"}
    # Every coordinate has a reserve or residual here: muscles + actuators balance inverse dynamics.
    assert max(metrics["torque_residual"].values()) < 1e-3
    assert {"opensim_static_optimization", "network_inference"} <= set(metrics["timing_s"])
    assert metrics["speedup"] == pytest.approx(metrics["timing_s"]["opensim_static_optimization"]
                                               / metrics["timing_s"]["network_inference"])
    assert metrics["n_frames"] == 61
    assert metrics["summary"]["median_r2"] > 0.5  # short training; the real bar is in test_train_shared
    report = (root / "report.md").read_text()
    assert "median R²" in report and "vasti_r" in report
    for figure in ("muscle_forces.png", "joint_torques.png", "training.png"):
        assert (root / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_needs_no_opensim(run, files, tmp_path, monkeypatch):
    """Prediction reads files only: no opensim import, no child process."""
    import sys

    import opensim_pinn.child
    from opensim_pinn.predict import predict

    def refuse(*args, **kwargs):
        raise AssertionError("predict ran an OpenSim child process")

    monkeypatch.setitem(sys.modules, "opensim", None)  # `import opensim` now fails
    monkeypatch.setattr(opensim_pinn.child, "run_in_child", refuse)
    result = predict(run["checkpoint"], files["motion"], files["external_loads"], out=tmp_path, start=START,
                     end=END)
    assert len(result["files"]) == 3


def test_predict_input_errors(run, files, tmp_path):
    from opensim_pinn.predict import predict

    with pytest.raises(InputError, match="checkpoint not found"):
        predict(tmp_path / "missing.pt", files["motion"], files["external_loads"], out=tmp_path / "a")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(InputError, match="not an opensim-pinn checkpoint"):
        predict(garbage, files["motion"], files["external_loads"], out=tmp_path / "b")
    with pytest.raises(InputError, match="external-loads"):
        predict(run["checkpoint"], files["motion"], out=tmp_path / "c")
    with pytest.raises(InputError, match="already holds"):  # outputs are never replaced without force
        predict(run["checkpoint"], files["motion"], files["external_loads"], out=run["root"] / "predict",
                start=START, end=END)
    predict(run["checkpoint"], files["motion"], files["external_loads"], out=run["root"] / "predict",
            start=START, end=END, force=True)


def test_compare_refuses_another_model(run, files, shared_data, tmp_path):
    from opensim_pinn.compare import compare

    arm = shared_data / "arm26"
    with pytest.raises(InputError, match="not the one the checkpoint .*was trained on"):
        compare(run["checkpoint"], str(arm / "arm26.osim"), str(arm / "arm26_InverseKinematics.mot"),
                out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_demo_runs_end_to_end(tmp_path):
    """The built-in example, start to finish (short training; the CLI demo uses the defaults)."""
    pytest.importorskip("opensim")
    from opensim_pinn.demo import run_demo

    result = run_demo(tmp_path / "demo", epochs=300, progress=False)
    assert Path(result["report"]).is_file()
    assert all(Path(p).is_file() for p in result["predictions"])
    assert result["summary"]["median_r2"] > 0.9
    with pytest.raises(InputError, match="already holds"):
        run_demo(tmp_path / "demo", epochs=1, progress=False)
