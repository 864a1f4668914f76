"""Augmented trials (opensim_pinn.augment): mirroring checked by inverse-dynamics symmetry, time scaling
by the chain rule, each against OpenSim's own inverse dynamics of the written files."""

from __future__ import annotations

import numpy as np
import pytest

from opensim_pinn.augment import TIME_SCALES, augmented_settings, mirror_map, partner_name
from opensim_pinn.errors import InputError
from opensim_pinn.trial import TrialSettings, load_model_info, prepare_trial


def test_partner_names():
    assert partner_name("hip_flexion_r") == "hip_flexion_l" and partner_name("calcn_l") == "calcn_r"
    assert partner_name("pelvis_tilt") == "pelvis_tilt" and partner_name("GLUT_R") == "GLUT_L"


@pytest.fixture(scope="module")
def gait10(shared_data):
    """The generic (unscaled, hence exactly symmetric) gait10dof18musc model with subject01's walk, 0.6-0.9 s."""
    folder = shared_data / "gait10dof18musc"
    settings = TrialSettings(model=str(folder / "gait10dof18musc.osim"), motion=str(folder / "subject01_walk_IK.mot"),
                             external_loads=str(folder / "subject01_walk_grf.xml"), start=0.6, end=0.9)
    info = load_model_info(settings.model)
    return settings, info, prepare_trial(settings, info=info)[0]


def test_mirror_signs_come_from_the_joint_axes(gait10, shared_data):
    _, info, _ = gait10
    mirror = mirror_map(info)
    assert mirror.partner["hip_flexion_r"] == "hip_flexion_l" and mirror.partner["calcn_r"] == "calcn_l"
    assert mirror.partner["pelvis_tilt"] == "pelvis_tilt"
    assert all(s == 1.0 for s in mirror.sign.values())  # a planar model: every axis is z, every translation in-plane
    gait2392 = load_model_info(shared_data / "gait2392" / "subject01_simbody_adjusted_StaticOp.osim")
    signs = mirror_map(gait2392).sign
    flipped = {name for name, sign in signs.items() if sign < 0}
    # Out-of-plane motions of the unpaired coordinates flip; the left side's joints are defined mirrored.
    assert flipped == {"pelvis_list", "pelvis_rotation", "pelvis_tz", "lumbar_bending", "lumbar_rotation"}


def test_mirrored_inverse_dynamics_is_the_mirrored_inverse_dynamics(gait10):
    """ID of the mirrored trial (OpenSim, mirrored motion and loads files) = the trial's ID with legs swapped."""
    settings, info, trial = gait10
    mirror = mirror_map(info)
    (mirrored_settings,) = augmented_settings(settings, ["mirror"], info)
    mirrored, _ = prepare_trial(mirrored_settings, info=info)
    index = {c: i for i, c in enumerate(trial.coordinates)}
    expected = np.column_stack([mirror.sign[mirror.partner[c]] * trial.tau[:, index[mirror.partner[c]]]
                                for c in trial.coordinates])
    scale = np.abs(trial.tau).max(axis=0)
    tol = 1e-6  # relative to each coordinate's peak; the file round trip keeps 17 digits
    assert np.abs(mirrored.tau - expected).max(axis=0) / scale == pytest.approx(0, abs=tol)
    assert mirrored.grf_labels == trial.grf_labels
    r, l = (trial.grf_labels.index(f"calcn_{side}/ground/fy") for side in "rl")
    np.testing.assert_allclose(mirrored.grf[:, r], trial.grf[:, l], rtol=1e-9, atol=1e-9)


def test_time_scaled_versions(gait10):
    """Slower and faster versions: speeds / s at stretched times, and their own inverse dynamics."""
    settings, info, trial = gait10
    scaled = augmented_settings(settings, ["timescale"], info)
    assert len(scaled) == len(TIME_SCALES)
    for factor, version_settings in zip(TIME_SCALES, scaled):
        version, _ = prepare_trial(version_settings, info=info)
        assert version.time[0] == pytest.approx(trial.time[0] * factor, abs=1e-9)
        # The 6 Hz filter acts on the stretched signal: away from the ends, speeds follow the chain rule.
        middle = slice(len(trial.time) // 4, 3 * len(trial.time) // 4)
        peak = np.abs(trial.qd[middle]).max()
        both = np.interp(trial.time[middle], version.time / factor, version.qd[:, 3] * factor)
        assert np.abs(both - trial.qd[middle, 3]).max() < 0.1 * peak  # 10 %: a 6 Hz filter at another rate
        assert np.all(np.isfinite(version.tau)) and version.tau.shape == (len(version.time), len(trial.coordinates))


def test_unknown_augmentation_is_refused(gait10):
    settings, info, _ = gait10
    with pytest.raises(InputError, match="choose from mirror"):
        augmented_settings(settings, ["flip"], info)


def test_train_with_time_scaled_versions_and_mirror_refused(builtin_project, tmp_path):
    """train --augment timescale adds the slower and faster trials; the one-legged built-in model cannot mirror."""
    from opensim_pinn.train import train_network

    project = {k: str(v) for k, v in builtin_project.items()}
    summary = train_network(project["model"], [project["motion"]], [project["external_loads"]], end=0.6,
                            epochs=5, out=tmp_path / "run", progress=False, augment=["timescale"])
    assert len(summary["trials"]) == 1 + len(TIME_SCALES)
    with pytest.raises(InputError, match="not bilateral"):
        train_network(project["model"], [project["motion"]], [project["external_loads"]], end=0.6, epochs=5,
                      out=tmp_path / "mirrored", progress=False, augment=["mirror"])
    with pytest.raises(InputError, match="choose from"):
        train_network(project["model"], [project["motion"]], out=tmp_path / "bad", augment=["flip"])


def test_input_noise_is_seeded_and_changes_training(demo_checkpoint):
    """TrainConfig.input_noise: the same seed gives the same network; the noise changes what is learnt."""
    import torch

    from opensim_pinn.trainer import TrainConfig, Trainer

    trained = Trainer.load(demo_checkpoint["checkpoint"])
    trial, _ = prepare_trial(TrialSettings(**trained.trial_settings[0]), info=trained.info)

    def fit(noise: float):
        trainer = Trainer(TrainConfig(epochs=4, input_noise=noise), progress=False)
        trainer.fit([trial], trained.info, trained.muscle_model, polynomials=trained.polynomials)
        return torch.cat([p.detach().flatten() for p in trainer.network.parameters()])

    noisy = fit(0.3)
    assert torch.equal(noisy, fit(0.3)) and not torch.equal(noisy, fit(0.0))
