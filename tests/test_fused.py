"""The fused inference parts (opensim_pinn.fused) give the numbers of the modules they are built from.

Muscle forces for every muscle class (the built-in model's Millard muscles, and the same
muscles relabelled Thelen2003 and DeGrooteFregly2016, with their curves' default
parameters), on the trial's kinematics and on speeds that reach every branch of the
force-velocity curves; the encoder of both per-frame architectures, with and without
ground reaction forces, at random weights and a normalisation far from zero mean and unit std.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from opensim_pinn.fused import FusedEncoder, FusedMuscleForces
from opensim_pinn.muscle import _CLASS_CODES
from opensim_pinn.network import NetworkConfig, build_network

FLOAT32_TOL = 1e-5  # relative to the largest value: the same float32 formulas, constants precomputed in float64


@pytest.fixture(scope="module")
def trainer(demo_checkpoint):
    from opensim_pinn.trainer import Trainer

    return Trainer.load(demo_checkpoint["checkpoint"])


def _relabelled(muscles, classes):
    model = copy.deepcopy(muscles)
    codes = [_CLASS_CODES[classes[i % len(classes)]] for i in range(len(model.muscles))]
    model.muscle_class = torch.tensor(codes)
    model.classes_present = frozenset(codes)
    return model


@pytest.mark.parametrize("classes", [("Millard2012EquilibriumMuscle",), ("Thelen2003Muscle",),
                                     ("DeGrooteFregly2016Muscle",),
                                     ("Thelen2003Muscle", "Millard2012EquilibriumMuscle", "DeGrooteFregly2016Muscle")])
def test_fused_muscle_forces_match_the_muscle_module(trainer, demo_checkpoint, classes):
    from opensim_pinn.trial import load_kinematics

    model = _relabelled(trainer.muscle_model, classes).to(torch.float32)
    kinematics = load_kinematics(trainer.info, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                                 end=demo_checkpoint["end"], lowpass=trainer.lowpass)
    generator = np.random.default_rng(1)
    q = np.concatenate([kinematics.q, kinematics.q[::-1]])
    # Speeds from still to ten times the walk's: shortening past the maximum speed and lengthening past the knee.
    qd = np.concatenate([kinematics.qd, kinematics.qd * generator.uniform(-10, 10, (len(q) - len(kinematics.qd), 1))])
    q, qd = torch.tensor(q, dtype=torch.float32), torch.tensor(qd, dtype=torch.float32)
    activations = torch.tensor(generator.uniform(0.01, 1, (len(q), len(model.muscles))), dtype=torch.float32)
    fused = FusedMuscleForces(model)
    with torch.no_grad():
        reference = model.muscle_forces(q, qd, activations)
        batched = fused(q, qd, activations)
        one_frame = fused(q[5], qd[5], activations[5])
    scale = reference.abs().max().item()
    assert scale > 0 and (reference == 0).float().mean() < 0.5  # mostly non-zero forces: a real comparison
    assert (batched - reference).abs().max().item() <= FLOAT32_TOL * scale
    assert (one_frame - reference[5]).abs().max().item() <= FLOAT32_TOL * scale


@pytest.mark.parametrize("architecture", ["mjca", "bigru"])
@pytest.mark.parametrize("n_grf", [6, 0])
def test_fused_encoder_matches_the_network(architecture, n_grf):
    torch.manual_seed(0)
    n_coordinates = 5
    network = build_network(NetworkConfig(architecture=architecture), n_coordinates, n_grf, n_muscles=7).eval()
    n_features = 3 * n_coordinates + n_grf
    mean, std = torch.linspace(-2, 300, n_features), torch.linspace(0.1, 50, n_features)
    features = mean + std * torch.randn(9, n_features)
    with torch.no_grad():
        reference = network.frame_features(((features - mean) / std)[None])[0]
        fused = FusedEncoder(network, mean, std)(features)
    assert fused.shape == reference.shape
    assert (fused - reference).abs().max().item() <= FLOAT32_TOL * max(1.0, reference.abs().max().item())


@pytest.mark.parametrize("padding", [0, 10 ** 9])
def test_fused_lengths_and_speeds_in_blocks_of_coordinate_groups(trainer, monkeypatch, padding):
    """The length coefficients in one block per coordinate group (padding 0), or all groups padded into one
    block: the lengths and speeds of the muscle module; the blocks hold every non-zero coefficient."""
    from opensim_pinn import fused

    monkeypatch.setattr(fused, "BLOCK_PADDING", padding)
    model = trainer.muscle_model.to(torch.float32)
    module = FusedMuscleForces(model)
    groups = fused._length_groups(model.length_matrix, model.monomial_slots, model.monomial_exponents)
    assert len(groups) > 1 and len(module.length_blocks) == (len(groups) if padding == 0 else 1)
    stored = sum(getattr(module, name).count_nonzero().item() for name, _, _ in module.length_blocks)
    assert stored == model.length_matrix.count_nonzero().item()
    generator = torch.Generator().manual_seed(3)
    q = 0.5 * torch.randn(40, len(model.coordinates), generator=generator)
    qd = 3.0 * torch.randn(40, len(model.coordinates), generator=generator)
    with torch.no_grad():
        for ours, reference in zip(module.lengths_and_speeds(q, qd), model.lengths_and_speeds(q, qd)):
            assert (ours - reference).abs().max().item() <= FLOAT32_TOL * reference.abs().max().item()


def test_first_step_is_the_first_step_of_both_gru_directions(trainer):
    """:meth:`FusedNetwork.first_step` (the GRU cell written out) against the checkpoint's ``nn.GRU`` on one
    frame: the forward direction from given states, the backward one from zero."""
    from opensim_pinn.fused import FusedNetwork

    gru = trainer.network.gru
    torch.manual_seed(4)
    x, hidden = torch.randn(3, gru.input_size), torch.randn(3, gru.hidden_size)
    with torch.no_grad():
        reference = gru(x[:, None], torch.stack([hidden, torch.zeros_like(hidden)]))[0][:, 0]  # (3, 2H)
        ours = FusedNetwork(trainer).first_step(x, hidden)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max().item() <= FLOAT32_TOL
