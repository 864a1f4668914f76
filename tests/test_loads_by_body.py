"""Ground reaction forces are matched by body and frame, not by name (opensim_pinn.external_loads).

A checkpoint trained on the built-in demo project (one ExternalForce ``right_foot``
on ``calcn_r``) predicts, with the same numbers, a trial whose loads file calls that
force something else, or splits it over two force plates listed in another order;
a trial whose loads act on other bodies, or in another frame, is refused naming
them; a checkpoint written before (features named ``right_foot_fx``) is read through
its training loads file. The real two-foot case of ``../shared/data`` is checked at
the level of the features (renamed and reordered ExternalForces give the same
inputs); ``test_predict_compare.py`` predicts it with a checkpoint.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from opensim_pinn.errors import InputError
from opensim_pinn.external_loads import read_external_loads
from opensim_pinn.storage import StorageTable, read_storage, write_storage
from shared_cases import renamed_two_foot_loads

pytest.importorskip("opensim")

EPOCHS = 5  # the predictions only need to be deterministic, not accurate
RIGHT_FOOT = ["calcn_r/ground/fx", "calcn_r/ground/fy", "calcn_r/ground/fz"]
DEMO_BODIES = ["pelvis", "femur_r", "tibia_r", "calcn_r"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo project and a checkpoint trained briefly on it with its loads file."""
    from opensim_pinn.demo_model import write_demo_project
    from opensim_pinn.train import train_network

    root = tmp_path_factory.mktemp("loads_by_body")
    cwd = os.getcwd()
    os.chdir(root)  # OpenSim writes into the current folder
    try:
        files = write_demo_project(root / "project")
        train_network(str(files["model"]), [str(files["motion"])], [str(files["external_loads"])], reserves="auto",
                      epochs=EPOCHS, out=root / "train", progress=False)
    finally:
        os.chdir(cwd)
    return {**files, "root": root, "checkpoint": root / "train" / "checkpoint.pt"}


@pytest.fixture(scope="module")
def original(demo):
    """The demo checkpoint's prediction with the demo's own loads file."""
    return _predicted(demo, demo["external_loads"], demo["root"] / "original")


def _predicted(demo, loads, out):
    """Activations (n_frames, n_muscles) predicted by the demo checkpoint for its motion with ``loads``."""
    from opensim_pinn.predict import predict

    result = predict(demo["checkpoint"], demo["motion"], loads, out=out)
    return read_storage(next(f for f in result["files"] if f.endswith("_activations.sto"))).data


def _loads_copy(demo, name, edit):
    """A copy of the demo's loads file next to it, edited by ``edit`` (text -> text)."""
    path = demo["external_loads"].with_name(name)
    path.write_text(edit(demo["external_loads"].read_text()))
    return path


def test_features_and_checkpoint_are_labelled_by_body_and_frame(demo):
    from opensim_pinn.trainer import Trainer

    assert read_external_loads(demo["external_loads"], DEMO_BODIES).labels == RIGHT_FOOT
    assert Trainer.load(demo["checkpoint"]).grf_labels == RIGHT_FOOT  # stored by body, not 'right_foot_fx'


def test_renamed_force_predicts_the_same(demo, original, tmp_path):
    renamed = _loads_copy(demo, "renamed_grf.xml", lambda text: text.replace('name="right_foot"',
                                                                             'name="externalforce_right"'))
    np.testing.assert_array_equal(_predicted(demo, renamed, tmp_path / "renamed"), original)  # same inputs, bits


def test_trial_forces_in_another_order_are_taken_in_the_checkpoint_order(demo):
    from dataclasses import replace

    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    trainer = Trainer.load(demo["checkpoint"])
    kinematics = load_kinematics(trainer.info, demo["motion"], demo["external_loads"], lowpass=trainer.lowpass)
    shuffled = replace(kinematics, grf_labels=kinematics.grf_labels[::-1], grf=kinematics.grf[:, ::-1])
    np.testing.assert_array_equal(trainer.predict(shuffled), trainer.predict(kinematics))


def test_force_split_over_two_plates_in_another_order_predicts_the_same(demo, original, tmp_path):
    """Two ExternalForces on calcn_r (plate_2 listed first), each with half the force: they add up."""
    grf = read_storage(demo["grf"])
    force = [grf.column_index(f"ground_force_v{axis}") for axis in "xyz"]
    halves = np.column_stack([grf.data[:, force] / 2, grf.data[:, force] / 2, grf.data])
    labels = [f"plate_{n}_force_v{axis}" for n in (1, 2) for axis in "xyz"] + grf.labels
    write_storage(demo["grf"].with_name("plates.mot"),
                  StorageTable(name="plates", labels=labels, time=grf.time, data=halves))
    text = demo["external_loads"].read_text()
    start, end = text.index("<ExternalForce "), text.index("</ExternalForce>") + len("</ExternalForce>")
    one = text[start:end]
    plates = [one.replace('name="right_foot"', f'name="plate_{n}"')
              .replace("<force_identifier>ground_force_v", f"<force_identifier>plate_{n}_force_v") for n in (2, 1)]
    loads = _loads_copy(demo, "plates.xml", lambda text: (text[:start] + "\n".join(plates) + text[end:])
                        .replace("walk_grf.mot", "plates.mot"))
    split = read_external_loads(loads, DEMO_BODIES)
    assert split.labels == RIGHT_FOOT and [len(columns) for columns in split.columns] == [2, 2, 2]
    # Halving and adding are exact in binary floating point: the network's inputs are the same bits.
    np.testing.assert_array_equal(_predicted(demo, loads, tmp_path / "plates"), original)


@pytest.mark.parametrize("tag, old, new, named", [
    ("applied_to_body", "calcn_r", "tibia_r",
     ["act on tibia_r (forces expressed in ground)", "leave out calcn_r (forces expressed in ground)"]),
    ("force_expressed_in_body", "ground", "calcn_r",
     ["act on calcn_r (forces expressed in calcn_r)", "leave out calcn_r (forces expressed in ground)"]),
])
def test_loads_on_other_bodies_are_refused_naming_them(demo, tmp_path, tag, old, new, named):
    loads = _loads_copy(demo, f"other_{tag}.xml",
                        lambda text: text.replace(f"<{tag}>{old}</{tag}>", f"<{tag}>{new}</{tag}>"))
    with pytest.raises(InputError) as raised:
        _predicted(demo, loads, tmp_path / "out")
    message = str(raised.value)
    assert "\n" not in message
    for fragment in named:
        assert fragment in message
    assert not (tmp_path / "out").exists(), "refused before anything is written"


def _legacy_checkpoint(demo, path, training_loads):
    """The demo checkpoint as opensim-pinn wrote it before: GRF features named after the ExternalForce."""
    state = torch.load(demo["checkpoint"], weights_only=True)
    state["grf_labels"] = ["right_foot_fx", "right_foot_fy", "right_foot_fz"]
    state["trials"] = [{**trial, "external_loads": str(training_loads)} for trial in state["trials"]]
    torch.save(state, path)
    return path


def test_older_checkpoint_is_read_through_its_training_loads(demo, original, tmp_path):
    from opensim_pinn.trainer import Trainer

    old = _legacy_checkpoint(demo, tmp_path / "old.pt", demo["external_loads"])
    assert Trainer.load(old).grf_labels == RIGHT_FOOT
    from opensim_pinn.predict import predict

    predict(old, demo["motion"], demo["external_loads"], out=tmp_path / "old")
    np.testing.assert_array_equal(read_storage(tmp_path / "old" / "walk_activations.sto").data, original)


def test_older_checkpoint_without_its_training_loads_is_refused(demo, tmp_path):
    from opensim_pinn.trainer import Trainer

    old = _legacy_checkpoint(demo, tmp_path / "old.pt", tmp_path / "gone.xml")
    with pytest.raises(InputError, match="an older opensim-pinn wrote this checkpoint") as raised:
        Trainer.load(old)
    assert str(old) in str(raised.value) and "gone.xml" in str(raised.value) and "train it again" in str(raised.value)


# ---- the real two-foot case -----------------------------------------------------------

def test_renamed_and_reordered_two_foot_loads_give_the_same_features(shared_data, tmp_path):
    """subject01_walk_grf.xml ('right', 'left') against a copy with 'externalforce_left' listed before
    'externalforce_right': the same labels, the same numbers."""
    folder = shared_data / "gait10dof18musc"
    bodies = ["pelvis", "femur_r", "tibia_r", "talus_r", "calcn_r", "toes_r",
              "femur_l", "tibia_l", "talus_l", "calcn_l", "toes_l", "torso"]
    renamed = renamed_two_foot_loads(folder, tmp_path)
    given = read_external_loads(folder / "subject01_walk_grf.xml", bodies)
    copy = read_external_loads(renamed, bodies)
    assert given.labels == copy.labels == [f"calcn_{side}/ground/f{axis}" for side in "lr" for axis in "xyz"]
    time = given.table.time[100:200]
    np.testing.assert_array_equal(copy.forces_at(time), given.forces_at(time))
