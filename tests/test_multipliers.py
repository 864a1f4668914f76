"""Multiplier outputs (TrainConfig.outputs = "multipliers", opensim_pinn.multipliers) on the built-in model.

The network outputs Static Optimization's multipliers, one per coordinate; the activations are
clip(M^T lam) from the muscle module at each frame. Trained label-free on the first 1.2 s of the
built-in walk, it must land on the SO answer on those frames, and a saved checkpoint must predict
the same after loading; streaming and export refuse it with one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opensim_pinn.errors import InputError
from opensim_pinn.metrics import nrmse, r2

EPOCHS = 400
"""Measured: median R^2 0.9986 (lowest muscle 0.991), mean NRMSE 1.3 % at 400 epochs (3 s); 0.994 at 200."""
MEDIAN_R2 = 0.99
LOWEST_R2 = 0.98
MEAN_NRMSE = 0.03


@pytest.fixture(scope="module")
def fitted(builtin_project):
    """A multipliers network trained on the built-in walk's first 1.2 s, with the fast SO solution there."""
    from opensim_pinn.muscle import MusculoskeletalModel
    from opensim_pinn.paths import load_or_fit_paths
    from opensim_pinn.static_opt import fast_static_optimization
    from opensim_pinn.trainer import TrainConfig, Trainer
    from opensim_pinn.trial import TrialSettings, load_model_info, prepare_trial

    settings = TrialSettings(model=str(builtin_project["model"]), motion=str(builtin_project["motion"]),
                             external_loads=str(builtin_project["external_loads"]), end=1.2)
    info = load_model_info(settings.model, settings.reserves)
    trial, _ = prepare_trial(settings, info=info)
    polynomials = load_or_fit_paths(info.path, trial.coordinates, trial.time, trial.q, [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)
    trainer = Trainer(TrainConfig(epochs=EPOCHS, outputs="multipliers"), progress=False)
    trainer.fit([trial], info, muscle_model, polynomials=polynomials)
    reference = fast_static_optimization(trial, info, muscle_model).forces[:, :len(info.muscles)]
    return trainer, trial, reference


def test_multipliers_training_reaches_static_optimization_on_its_frames(fitted):
    trainer, trial, reference = fitted
    assert trainer.network.head[-1].out_features == len(trainer.coordinates)  # one output per coordinate
    assert trainer.multiplier_scale.shape == (len(trainer.coordinates),)
    forces = trainer.muscle_forces(trial)
    agreement = r2(reference, forces)
    assert np.median(agreement) >= MEDIAN_R2 and agreement.min() >= LOWEST_R2, agreement
    assert np.nanmean(nrmse(reference, forces)) <= MEAN_NRMSE
    activations = trainer.predict(trial)  # within the muscles' bounds by construction (the clip)
    lower, upper = (bound.numpy() for bound in trainer._bounds("cpu"))
    assert np.all(activations >= lower - 1e-7) and np.all(activations <= upper + 1e-7)


def test_checkpoint_restores_the_multiplier_outputs(fitted, tmp_path):
    from opensim_pinn.trainer import Trainer

    trainer, trial, _ = fitted
    trainer.save(tmp_path / "checkpoint.pt")
    loaded = Trainer.load(tmp_path / "checkpoint.pt")
    assert loaded.config.outputs == "multipliers"
    assert np.array_equal(loaded.multiplier_scale, trainer.multiplier_scale)
    # the same float32 network and muscle module: equal up to rounding
    assert np.allclose(loaded.predict(trial), trainer.predict(trial), rtol=0, atol=1e-6)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["multiplier_scale"]
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(InputError, match="damaged or incompatible"):
        Trainer.load(tmp_path / "damaged.pt")


def test_streaming_and_export_refuse_multiplier_outputs(fitted, tmp_path):
    from opensim_pinn.export import export_model
    from opensim_pinn.streaming import StreamingPredictor

    trainer, _, _ = fitted
    with pytest.raises(InputError, match="outputs multipliers"):
        StreamingPredictor(trainer)
    trainer.save(tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match="cannot be exported"):
        export_model(tmp_path / "checkpoint.pt", tmp_path / "model.pt", "torchscript")


def test_train_and_predict_commands_with_multiplier_outputs(builtin_project, tmp_path, capsys):
    """``train --outputs multipliers`` writes a multipliers checkpoint; ``predict`` writes its forces."""
    import json

    from opensim_pinn import cli
    from opensim_pinn.storage import read_storage
    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    files = {k: str(v) for k, v in builtin_project.items()}
    trial = ["--motion", files["motion"], "--external-loads", files["external_loads"], "--end", "1.2"]
    assert cli.main(["train", "--model", files["model"], *trial, "--epochs", "20", "--outputs", "multipliers",
                     "--out", str(tmp_path / "train")]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == "multipliers"
    checkpoint = tmp_path / "train" / "checkpoint.pt"
    assert cli.main(["predict", "--checkpoint", str(checkpoint), *trial, "--out", str(tmp_path / "predict")]) == 0
    trainer = Trainer.load(checkpoint)
    assert trainer.config.outputs == "multipliers"
    written = next((tmp_path / "predict").glob("*_forces.sto"))
    kinematics = load_kinematics(trainer.info, files["motion"], files["external_loads"], end=1.2,
                                 lowpass=trainer.lowpass)
    forces = read_storage(written).data[:, :len(trainer.muscles)]
    # the storage file holds about 8 significant digits; forces of up to a few kN
    assert np.allclose(forces, trainer.muscle_forces(kinematics), rtol=1e-5, atol=1e-3)
