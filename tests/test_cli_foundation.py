"""`opensim-pinn inspect` and `static-opt` on the real models, through the command line."""

from __future__ import annotations

import json

import numpy as np
import opensim
import pytest

from opensim_pinn.cli import main
from opensim_pinn.metrics import r2

MODELS = {
    "gait10dof18musc": ("subject01.osim", 18, 10, "Millard2012EquilibriumMuscle"),
    "gait2392": ("subject01_simbody_adjusted_StaticOp.osim", 92, 23, "Thelen2003Muscle"),
    "arm26": ("arm26.osim", 6, 2, "Thelen2003Muscle"),
}


@pytest.mark.parametrize("case", list(MODELS))
def test_inspect_reports_every_muscle(case, shared_data, capsys):
    model, n_muscles, n_coordinates, muscle_class = MODELS[case]
    assert main(["inspect", str(shared_data / case / model), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["n_muscles"] == n_muscles
    assert report["model"]["n_free_coordinates"] == n_coordinates
    muscle = report["muscles"][0]
    assert muscle["class"] == muscle_class
    assert muscle["max_isometric_force"] > 0 and muscle["optimal_fiber_length"] > 0
    assert all(m["coordinates"] for m in report["muscles"]), "every muscle spans a coordinate"


def test_inspect_reports_path_fit_in_mm(shared_data, capsys):
    folder = shared_data / "arm26"
    assert main(["inspect", str(folder / "arm26.osim"), "--motion",
                 str(folder / "arm26_InverseKinematics.mot")]) == 0
    text = capsys.readouterr().out
    assert "worst RMS length error" in text and "mm" in text


def test_static_opt_both_solvers_on_arm26(shared_data, tmp_path):
    """arm26 (no external loads, no reserves) through the same command, both solvers agree."""
    folder = shared_data / "arm26"
    common = ["static-opt", "--model", str(folder / "arm26.osim"), "--motion",
              str(folder / "arm26_InverseKinematics.mot")]
    assert main([*common, "--solver", "opensim", "--out", str(tmp_path / "opensim")]) == 0
    assert main([*common, "--solver", "fast", "--out", str(tmp_path / "fast")]) == 0
    tables = {}
    for solver in ("opensim", "fast"):
        timing = json.loads((tmp_path / solver / "timing.json").read_text())
        assert timing["solver"] == solver and timing["wall_s"] > 0 and timing["includes"]
        # OpenSim's own reader accepts the files.
        tables[solver] = opensim.TimeSeriesTable(str(tmp_path / solver / "arm26_InverseKinematics_StaticOptimization_force.sto"))
        assert (tmp_path / solver / "arm26_InverseKinematics_StaticOptimization_activation.sto").is_file()
    labels = list(tables["opensim"].getColumnLabels())
    assert labels == list(tables["fast"].getColumnLabels())
    reference, fast = (tables[s].getMatrix().to_numpy() for s in ("opensim", "fast"))
    strong = reference.max(axis=0) > 50  # N: muscles that carry load in this trial
    assert np.all(r2(reference[:, strong], fast[:, strong]) > 0.99)  # issue 2 agreement level


def test_reserves_auto_adds_weak_and_strong_actuators(shared_data, capsys):
    model = shared_data / "gait10dof18musc" / "subject01.osim"
    assert main(["inspect", str(model), "--reserves", "auto", "--json"]) == 0
    actuators = {a["name"]: a for a in json.loads(capsys.readouterr().out)["actuators"]}
    assert actuators["reserve_hip_flexion_r"]["optimal_force"] == 1.0  # muscles act here
    assert actuators["reserve_pelvis_tx"]["optimal_force"] == 1000.0  # no muscle: a residual
    assert actuators["reserve_pelvis_tx"]["max_control"] == 1000.0
