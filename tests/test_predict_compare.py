"""Prediction into OpenSim files and comparison with OpenSim SO (opensim_pinn.predict, .compare, .demo).

The integration tests train a short network on a walk (accuracy is tested with default
training in test_train_shared.py), predict it, compare it with OpenSim's own Static
Optimization and check that OpenSim's own tools accept the files: the forces file in
the JointReaction analysis in place of SO's force file, the states file in
``StatesTrajectory.createFromStatesTable``. They run on the built-in project (model,
walk and ground reaction forces built by ``opensim_pinn.demo_model``: everywhere) and
on the gait10dof18musc walk of ../shared/data (when present). The demo test runs the
whole built-in example with short training, twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn.errors import InputError
from opensim_pinn.storage import read_storage
from shared_cases import renamed_two_foot_loads

SHORT_EPOCHS = 150  # enough for the files to be meaningful; accuracy is test_train_shared's job
START, END = 0.5, 1.5  # a 61-frame piece of the walk (gait10dof18musc, 60 Hz) keeps OpenSim's runs short
BUILTIN_END = 1.1  # the built-in walk is at 100 Hz: 0.5-1.1 s is 61 frames too
GAIT10_COORDINATES = {"pelvis_tilt", "pelvis_tx", "pelvis_ty", "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
                      "hip_flexion_l", "knee_angle_l", "ankle_angle_l", "lumbar_extension"}


@pytest.fixture(scope="module", params=["builtin", "gait10dof18musc"])
def files(request):
    """The trial: the built-in project everywhere (reserves 'auto'), gait10dof18musc when ../shared/data exists."""
    if request.param == "builtin":
        project = request.getfixturevalue("builtin_project")
        return {"model": str(project["model"]), "motion": str(project["motion"]),
                "external_loads": str(project["external_loads"]), "reserves": "auto", "trial": "walk",
                "end": BUILTIN_END, "n_muscles": 9, "n_actuators": 3,
                "coordinates": {"hip_flexion_r", "knee_angle_r", "ankle_angle_r"}}
    folder = request.getfixturevalue("shared_data") / "gait10dof18musc"
    return {"model": str(folder / "subject01.osim"), "motion": str(folder / "subject01_walk_IK.mot"),
            "external_loads": str(folder / "subject01_walk_grf.xml"),
            "reserves": str(folder / "gait10dof18musc_Strong_actuators.xml"), "trial": "subject01_walk", "end": END,
            "n_muscles": 18, "n_actuators": 10, "coordinates": GAIT10_COORDINATES}


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
                                reserves=files["reserves"], start=START, end=files["end"], epochs=SHORT_EPOCHS,
                                out=root / "train", progress=False)
        checkpoint = root / "train" / "checkpoint.pt"
        predicted = predict(checkpoint, files["motion"], files["external_loads"], out=root / "predict",
                            start=START, end=files["end"])
        compared = compare(checkpoint, files["model"], files["motion"], files["external_loads"],
                           reserves=files["reserves"], start=START, end=files["end"], out=root / "compare")
    finally:
        os.chdir(cwd)
    return {"root": root, "checkpoint": checkpoint, "trained": trained, "predicted": predicted,
            "compared": compared, "files": files}


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
    trial, end = run["files"]["trial"], run["files"]["end"]
    assert names == [f"{trial}_activations.sto", f"{trial}_forces.sto", f"{trial}_states.sto"]
    trainer = Trainer.load(run["checkpoint"])
    forces = read_storage(root / f"{trial}_forces.sto")
    activations = read_storage(root / f"{trial}_activations.sto")
    # SO's layout: muscles, then the reserve/residual actuators (the network's actuator head)
    assert forces.labels == activations.labels == trainer.muscles + trainer.actuators
    assert len(trainer.actuators) == run["files"]["n_actuators"]
    assert forces.time[0] == pytest.approx(START, abs=1e-5) and forces.time[-1] == pytest.approx(end, abs=1e-5)
    muscles = len(trainer.muscles)
    assert np.all(activations.data[:, :muscles] >= 0.01 - 1e-9) and np.all(activations.data[:, :muscles] <= 1.0)
    assert np.all(forces.data[:, :muscles] >= 0)
    assert np.all(np.isfinite(forces.data[:, muscles:]))
    assert run["predicted"]["timing_s"]["inference"] > 0


def test_states_file_builds_an_opensim_states_trajectory(run, files, in_tmp):
    osim = pytest.importorskip("opensim")
    path = run["root"] / "predict" / f"{files['trial']}_states.sto"
    states = read_storage(path)
    assert not states.in_degrees
    assert "/jointset/knee_r/knee_angle_r/value" in states.labels
    assert "/jointset/knee_r/knee_angle_r/speed" in states.labels
    assert "/forceset/vasti_r/activation" in states.labels
    model = osim.Model(files["model"])
    model.initSystem()
    # The built-in model's muscles have no activation state (activation dynamics ignored): predict still
    # writes their activation columns (for the GUI's colours), which OpenSim then takes as extra columns.
    names = model.getStateVariableNames()
    has_activation = "/forceset/vasti_r/activation" in [names.get(i) for i in range(names.size())]
    trajectory = osim.StatesTrajectory.createFromStatesTable(model, osim.TimeSeriesTable(str(path)),
                                                             False, not has_activation)
    assert trajectory.getSize() == states.n_frames
    knee = model.getCoordinateSet().get("knee_angle_r")
    middle = states.n_frames // 2
    assert knee.getValue(trajectory.get(middle)) == pytest.approx(
        states.data[middle, states.labels.index("/jointset/knee_r/knee_angle_r/value")], abs=1e-8)
    if has_activation:
        assert model.getStateVariableValue(trajectory.get(middle), "/forceset/vasti_r/activation") == \
            pytest.approx(states.data[middle, states.labels.index("/forceset/vasti_r/activation")], abs=1e-8)


def test_forces_file_drops_into_opensim_joint_reaction_analysis(run, files, in_tmp):
    """JointReaction reads our forces file where it would read SO's ``_StaticOptimization_force.sto``."""
    osim = pytest.importorskip("opensim")
    forces = run["root"] / "predict" / f"{files['trial']}_forces.sto"
    tool = osim.AnalyzeTool()
    tool.setName("network")
    tool.setModelFilename(files["model"])
    tool.setCoordinatesFileName(files["motion"])
    tool.setExternalLoadsFileName(files["external_loads"])
    tool.setLowpassCutoffFrequency(6.0)
    tool.setInitialTime(START)
    tool.setFinalTime(files["end"])
    tool.setResultsDir(str(in_tmp / "results"))
    analysis = osim.JointReaction()
    analysis.setName("JointReaction")
    analysis.setForcesFileName(str(forces))
    analysis.setStartTime(START)
    analysis.setEndTime(files["end"])
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
    assert len(muscles) == run["files"]["n_muscles"]
    for values in muscles.values():
        assert {"r2", "nrmse", "rmse"} <= set(values)
    assert {"median_r2", "mean_r2", "mean_nrmse"} <= set(metrics["summary"])
    assert set(metrics["torque_residual"]) == run["files"]["coordinates"]
    # Every coordinate has a reserve or residual here: muscles + actuators balance inverse dynamics.
    assert max(metrics["torque_residual"].values()) < 1e-3
    assert {"opensim_static_optimization", "network_inference"} <= set(metrics["timing_s"])
    assert metrics["speedup"] == pytest.approx(metrics["timing_s"]["opensim_static_optimization"]
                                               / metrics["timing_s"]["network_inference"])
    # The timing protocol: warm median of 21 runs on one thread, with its spread.
    spread = metrics["timing_s"]["network_inference_spread"]
    assert spread["threads"] == 1 and spread["repeats"] == 21
    assert spread["min_s"] <= metrics["timing_s"]["network_inference"] <= spread["max_s"]
    assert metrics["n_frames"] == 61
    assert metrics["summary"]["median_r2"] > 0.5  # short training; the real bar is in test_train_shared
    report = (root / "report.md").read_text()
    assert "median R²" in report and "vasti_r" in report
    assert "21 timed runs on 1 CPU thread(s)" in report
    assert "![training](training.png)" in report and "Levenberg-Marquardt damping" in report
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
                     end=files["end"])
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
                start=START, end=files["end"])
    predict(run["checkpoint"], files["motion"], files["external_loads"], out=run["root"] / "predict",
            start=START, end=files["end"], force=True)


def test_renamed_and_reordered_loads_predict_the_same(run, files, shared_data, tmp_path):
    """The checkpoint was trained with subject01_walk_grf.xml ('right', 'left'); a copy naming them
    'externalforce_left' (first) and 'externalforce_right' acts on the same bodies: the same predictions."""
    from opensim_pinn.predict import predict

    if files["trial"] != "subject01_walk":
        pytest.skip("the gait10dof18musc loads renamed; the built-in project's are in test_loads_by_body.py")
    renamed = renamed_two_foot_loads(shared_data / "gait10dof18musc", tmp_path)
    predict(run["checkpoint"], files["motion"], str(renamed), out=tmp_path / "renamed", start=START, end=END)
    name = "subject01_walk_activations.sto"
    # The same network inputs (matched by body and frame, taken in the checkpoint's order): the same bits.
    np.testing.assert_array_equal(read_storage(tmp_path / "renamed" / name).data,
                                  read_storage(run["root"] / "predict" / name).data)


def test_compare_refuses_another_model(run, files, shared_data, tmp_path):
    from opensim_pinn.compare import compare

    arm = shared_data / "arm26"
    with pytest.raises(InputError, match="not the one the checkpoint .*was trained on"):
        compare(run["checkpoint"], str(arm / "arm26.osim"), str(arm / "arm26_InverseKinematics.mot"),
                out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_inference_runs_on_the_threads_asked_for(run, files):
    """Timed inference uses one torch thread unless told otherwise, and restores torch's setting."""
    import torch

    from opensim_pinn.predict import timed_inference
    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    trainer = Trainer.load(run["checkpoint"])
    kinematics = load_kinematics(trainer.info, files["motion"], files["external_loads"], start=START,
                                 end=files["end"], lowpass=trainer.lowpass)
    before = torch.get_num_threads()
    seen = []
    real_run = trainer.muscle_forces

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_run(*args, **kwargs)

    trainer.muscle_forces = spy
    one, _, timing = timed_inference(trainer, kinematics, repeats=3)
    assert set(seen) == {1} and timing.threads == 1 and timing.repeats == 3
    seen.clear()
    two, _, timing = timed_inference(trainer, kinematics, repeats=3, threads=2)
    assert set(seen) == {2} and timing.threads == 2
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-6)  # float32 sums in another order at most
    with pytest.raises(InputError, match="--threads must be 1 or more"):
        timed_inference(trainer, kinematics, threads=0)


def test_gait_cycle_from_the_vertical_ground_reaction_force(builtin_project):
    """The built-in walk (stride 1.2 s, foot strike at the start of each stride) gives its heel strikes."""
    from opensim_pinn.demo_model import GRF_LABELS
    from opensim_pinn.plots import heel_strikes

    table = read_storage(builtin_project["grf"])
    labels = [f"right_foot_f{axis}" for axis in "xyz"]
    grf = table.data[:, [table.labels.index(name) for name in GRF_LABELS[:3]]]
    gait = heel_strikes(table.time, labels, grf)
    assert gait is not None and gait.force == "right_foot"
    # 1.2 s apart, within one frame (0.01 s): the threshold crossing is one frame after contact begins.
    assert len(gait.heel_strikes) == 2 and np.diff(gait.heel_strikes)[0] == pytest.approx(1.2, abs=0.011)
    ticks, tick_labels = gait.ticks(0.0, 2.4)
    assert tick_labels[:5] == ["0", "25", "50", "75", "0"]
    assert ticks[4] == pytest.approx(gait.heel_strikes[1])
    # Without contact-onsets (one strike, or none) there is no cycle.
    assert heel_strikes(table.time[:100], labels, grf[:100]) is None
    assert heel_strikes(table.time, ["right_foot_fx"], grf[:, :1]) is None


def test_demo_runs_end_to_end_and_again(tmp_path, capfd):
    """The built-in example, start to finish, twice into the same folder (short training; the CLI demo uses
    the defaults); a folder the demo did not make is refused."""
    pytest.importorskip("opensim")
    from opensim_pinn import cli
    from opensim_pinn.demo import MARKER, run_demo

    result = run_demo(tmp_path / "demo", epochs=300, progress=False)
    assert Path(result["report"]).is_file()
    assert all(Path(p).is_file() for p in result["predictions"])
    assert result["summary"]["median_r2"] > 0.9
    assert (tmp_path / "demo" / MARKER).is_file()
    again = run_demo(tmp_path / "demo", epochs=1, progress=False)  # its own earlier output: replaced
    assert again["training"]["epochs"] == 1
    assert len((tmp_path / "demo" / "train" / "history.csv").read_text().splitlines()) == 2
    # A user's folder that holds a file of the same name: refused, on the command line too, untouched.
    user = tmp_path / "mine"
    (user / "project").mkdir(parents=True)
    (user / "project" / "walk_IK.mot").write_text("my motion")
    with pytest.raises(InputError, match="already holds walk_IK.mot"):
        run_demo(user, epochs=1, progress=False)
    capfd.readouterr()
    assert cli.main(["demo", "--out", str(user)]) == 2
    assert "already holds walk_IK.mot" in capfd.readouterr().err
    assert sorted(p.name for p in user.rglob("*")) == ["project", "walk_IK.mot"]
