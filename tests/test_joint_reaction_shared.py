"""The predicted forces file replaces Static Optimization's in OpenSim's JointReaction analysis (issue 8, item 1).

As OpenSim's tutorial runs it: AnalyzeTool with the model plus the same reserve/residual
ForceSet that SO used, and JointReaction's ``forces_file`` = the file. Fed OpenSim SO's own
``_StaticOptimization_force.sto`` it gives the reference peak knee reaction; fed the file
``predict`` writes (with the network's actuator controls, and with ``--model``'s exact
least-cost controls) it must give the same peak within :data:`PEAK_RTOL`. Before the
actuator columns, the file held muscles only and JointReaction fell back on the states
(``The forces file does not contain enough actuators``): 55,225 N instead of 2,046 N on the
gait10dof18musc walk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opensim_pinn.storage import read_storage
from shared_cases import CASES

pytestmark = pytest.mark.slow

PEAK_RTOL = 0.05  # the acceptance: peak knee reaction within 5 % of the one from SO's own force file
KNEES = ["knee_r", "knee_l"]  # the knee joints of both models
EXTERNAL_RECORDS = ("_Fx", "_Fy", "_Fz", "_px", "_py", "_pz", "_Tx", "_Ty", "_Tz")
"""SO's force file also records each ExternalForce (force, point, torque): inputs, not estimates."""
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module", params=["gait10dof18musc", "gait2392"])
def reactions(request, shared_data, tmp_path_factory):
    """Train (default settings), predict with and without the model, run SO and JointReaction thrice."""
    from joint_reaction import joint_reaction, opensim_so_forces
    from opensim_pinn.child import run_in_child
    from opensim_pinn.predict import predict
    from opensim_pinn.train import train_network

    case = CASES[request.param]
    folder = shared_data / case.folder
    files = {k: str(folder / getattr(case, k)) for k in ("model", "motion", "external_loads", "reserves")}
    root = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the child processes import joint_reaction from tests/
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        train_network(files["model"], [files["motion"]], [files["external_loads"]], reserves=files["reserves"],
                      start=case.start, end=case.end, lowpass=case.lowpass, step_interval=case.step_interval,
                      out=root / "train", progress=False)
        checkpoint = root / "train" / "checkpoint.pt"
        predicted = {
            "network": predict(checkpoint, files["motion"], files["external_loads"], out=root / "network",
                               start=case.start, end=case.end),
            "exact": predict(checkpoint, files["motion"], files["external_loads"], out=root / "exact",
                             start=case.start, end=case.end, model=files["model"], reserves=files["reserves"])}
        so_file = root / "trial_StaticOptimization_force.sto"
        so_file.write_text(run_in_child("OpenSim static optimization", opensim_so_forces, files["model"],
                                        files["motion"], files["external_loads"], files["reserves"], case.start,
                                        case.end, case.lowpass, case.step_interval))
        forces_files = {"so": so_file, **{k: Path(v["files"][0]) for k, v in predicted.items()}}
        results = {name: run_in_child("JointReaction", joint_reaction, files["model"], files["motion"],
                                      files["external_loads"], files["reserves"], str(path), KNEES, case.start,
                                      case.end, case.lowpass)
                   for name, path in forces_files.items()}
    return {"case": request.param, "files": forces_files, "results": results, "predicted": predicted}


def test_predicted_forces_have_every_estimated_column_of_so_in_sos_order(reactions):
    so = read_storage(reactions["files"]["so"]).labels
    estimated = [label for label in so if not label.endswith(EXTERNAL_RECORDS)]
    for variant in ("network", "exact"):
        assert read_storage(reactions["files"][variant]).labels == estimated, variant
    assert reactions["predicted"]["network"]["actuators"] > 0


def test_joint_reaction_uses_the_predicted_forces(reactions):
    for name, result in reactions["results"].items():
        assert "does not contain enough actuators" not in result["log"], (name, result["log"])
        assert "will be constructed from" in result["log"], (name, result["log"])


@pytest.mark.parametrize("variant", ["exact", "network"])
def test_peak_knee_reaction_matches_static_optimizations(reactions, variant):
    from joint_reaction import peak_reaction

    frames = read_storage(reactions["files"]["so"]).time  # SO's frames (every step_interval-th)
    reference = peak_reaction(reactions["results"]["so"], KNEES, frames)
    predicted = peak_reaction(reactions["results"][variant], KNEES, frames)
    print(f"{reactions['case']}: peak knee reaction, SO's forces {reference:.0f} N, predicted ({variant}) "
          f"{predicted:.0f} N ({100 * (predicted / reference - 1):+.2f} %)")
    assert reference > 1000  # several body weights: the muscle forces were applied
    assert predicted == pytest.approx(reference, rel=PEAK_RTOL), (reactions["case"], variant, reference, predicted)
