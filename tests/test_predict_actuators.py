"""Predicted files hold Static Optimization's actuator columns (opensim_pinn.predict, the network's actuator head).

On the built-in model (no shared data) with ``--reserves auto``: the forces and
activations files have exactly the columns of the fast solver's SO files, in the same
order; with the model, the actuator columns are the exact least-cost controls (muscles +
actuators reproduce inverse dynamics) and the physics check is written; mismatched
actuators are refused; checkpoints without the actuator head still predict.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opensim_pinn.errors import InputError
from opensim_pinn.storage import read_storage

osim = pytest.importorskip("opensim")

EPOCHS = 60  # the files' layout and the exact controls do not depend on accuracy; a few seconds of training
RESIDUAL_TOL = 1e-6  # N m: with a reserve on every coordinate the least-cost controls close the balance exactly
GAP_TOL = 1e-6  # the network's objective can only be above SO's optimum (the solver's tolerance below it)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from opensim_pinn.demo_model import write_demo_project
    from opensim_pinn.static_opt import static_optimization
    from opensim_pinn.train import train_network

    root = tmp_path_factory.mktemp("predict_actuators")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        files = {k: str(v) for k, v in write_demo_project(root / "project").items()}
        trained = train_network(files["model"], [files["motion"]], [files["external_loads"]], reserves="auto",
                                epochs=EPOCHS, out=root / "train", progress=False)
        static_optimization(files["model"], files["motion"], out=str(root / "so"),
                            external_loads=files["external_loads"], reserves="auto", solver="fast")
    return {"root": root, "files": files, "checkpoint": root / "train" / "checkpoint.pt", "trained": trained}


def _predict(project, out, **options):
    from opensim_pinn.predict import predict

    files = project["files"]
    return predict(project["checkpoint"], files["motion"], files["external_loads"], out=project["root"] / out,
                   **options)


@pytest.fixture(scope="module")
def predicted(project):
    files = project["files"]
    return {"network": _predict(project, "network"),
            "exact": _predict(project, "exact", model=files["model"], reserves="auto")}


def test_forces_and_activations_have_the_columns_of_the_fast_solvers_so_files(project, predicted):
    so_forces = read_storage(project["root"] / "so" / "walk_StaticOptimization_force.sto")
    so_activations = read_storage(project["root"] / "so" / "walk_StaticOptimization_activation.sto")
    assert len(so_forces.labels) == 9 + 3 and so_forces.labels[-1] == "reserve_ankle_angle_r"  # muscles, reserves
    for variant in ("network", "exact"):
        forces = read_storage(project["root"] / variant / "walk_forces.sto")
        activations = read_storage(project["root"] / variant / "walk_activations.sto")
        assert forces.labels == so_forces.labels, variant
        assert activations.labels == so_activations.labels, variant
        np.testing.assert_allclose(forces.time, so_forces.time, atol=1e-6)
        assert predicted[variant]["actuators"] == 3


def test_exact_controls_close_the_balance_and_the_physics_check_is_written(project, predicted):
    from opensim_pinn.trainer import Trainer

    trainer = Trainer.load(project["checkpoint"])
    root = project["root"] / "exact"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["walk_forces.sto", "walk_activations.sto", "walk_states.sto", "walk_physics_check.sto"])
    check = read_storage(root / "walk_physics_check.sto")
    assert check.labels == [f"{c}_residual" for c in trainer.coordinates] + [
        "objective", "optimum", "gap", "control_head_error"]
    column = {label: check.data[:, i] for i, label in enumerate(check.labels)}
    residuals = check.data[:, :len(trainer.coordinates)]
    assert np.abs(residuals).max() < RESIDUAL_TOL
    assert np.all(column["gap"] > -GAP_TOL) and np.all(np.isfinite(column["optimum"]))
    np.testing.assert_allclose(column["gap"], column["objective"] - column["optimum"], atol=1e-12)
    # The objective in the file is the one of the files: sum of squared activations and controls.
    activations = read_storage(root / "walk_activations.sto")
    np.testing.assert_allclose(column["objective"], (activations.data ** 2).sum(1), rtol=1e-6)
    # Actuator forces = controls x optimal force (auto reserves: 1 N m on spanned coordinates).
    forces = read_storage(root / "walk_forces.sto")
    optimal = np.array([a.optimal_force for a in trainer.info.actuators])
    np.testing.assert_allclose(forces.data[:, 9:], activations.data[:, 9:] * optimal, rtol=1e-6, atol=1e-9)
    # The network's own controls (no model) differ from the exact ones by what the check reports.
    network = read_storage(project["root"] / "network" / "walk_activations.sto")
    np.testing.assert_allclose(network.data[:, :9], activations.data[:, :9], atol=1e-6)  # same activations
    error = np.sqrt(np.mean((network.data[:, 9:] - activations.data[:, 9:]) ** 2, axis=1))
    np.testing.assert_allclose(column["control_head_error"], error, rtol=1e-4, atol=1e-6)
    assert predicted["exact"]["physics_check"]["max_residual"] < RESIDUAL_TOL


def test_actuator_head_learns_the_least_cost_controls(project):
    """The auxiliary term falls during training (it is label-free: the least-cost controls of the
    network's own activations)."""
    from opensim_pinn.trainer import HISTORY_COLUMNS, Trainer

    history = Trainer.load(project["checkpoint"]).history
    assert "control_fit" in HISTORY_COLUMNS
    first, last = history[0]["control_fit"], history[-1]["control_fit"]
    assert last < 0.1 * first, (first, last)  # an order of magnitude in 60 epochs


def test_mismatched_actuators_are_refused_in_one_line(project, tmp_path):
    files = project["files"]
    with pytest.raises(InputError) as refused:
        _predict(project, tmp_path / "none", model=files["model"])
    message = str(refused.value)
    assert "\n" not in message and "this predict has 0 (no --reserves: none)" in message
    assert "reserve_knee_angle_r" in message and message.endswith("give --reserves auto")
    with pytest.raises(InputError, match="--reserves needs --model"):
        _predict(project, tmp_path / "reserves", reserves="auto")
    assert not (tmp_path / "none").exists() and not (tmp_path / "reserves").exists()


def test_checkpoint_without_the_actuator_head_still_predicts_muscles(project, tmp_path, caplog):
    """A checkpoint written before the actuator head: muscles only, with a warning saying what to do."""
    from opensim_pinn.predict import predict
    from opensim_pinn.trainer import Trainer

    state = torch.load(project["checkpoint"], weights_only=True)
    state["network_state"] = {k: v for k, v in state["network_state"].items() if not k.startswith("actuator_head.")}
    del state["control_scale"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    assert Trainer.load(old).network.actuator_head is None
    files = project["files"]
    with caplog.at_level("WARNING"):
        predict(old, files["motion"], files["external_loads"], out=tmp_path / "out")
    assert "no actuator outputs" in caplog.text and "--model" in caplog.text
    assert read_storage(tmp_path / "out" / "walk_forces.sto").labels == Trainer.load(old).muscles
    with_model = predict(old, files["motion"], files["external_loads"], out=tmp_path / "exact",
                         model=files["model"], reserves="auto")
    assert with_model["actuators"] == 3  # the model gives the exact controls


def test_cli_predict_with_a_missing_model_is_refused_before_any_work(project, tmp_path, capfd):
    from opensim_pinn import cli

    files = project["files"]
    argv = ["predict", "--checkpoint", str(project["checkpoint"]), "--motion", files["motion"],
            "--external-loads", files["external_loads"], "--out", str(tmp_path / "out")]
    assert cli.main(argv + ["--model", str(tmp_path / "missing.osim")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "missing.osim" in err and "Traceback" not in err
    assert cli.main(argv + ["--reserves", "auto"]) == 2
    assert "--reserves needs --model" in capfd.readouterr().err
    assert not (tmp_path / "out").exists()
