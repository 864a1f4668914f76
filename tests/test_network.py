"""The MJCA-BiGRU network and its ablations: shapes, bounds, gradients, reproducibility (opensim_pinn.network)."""

from __future__ import annotations

import pytest
import torch

from opensim_pinn.network import ARCHITECTURES, MJCABiGRU, NetworkConfig, build_network, feature_layout

N_COORDINATES, N_GRF, N_MUSCLES = 4, 6, 7
BATCH, FRAMES = 3, 25


def features(n_grf: int = N_GRF, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, FRAMES, 3 * N_COORDINATES + n_grf, generator=generator)


def network(architecture: str = "mjca", n_grf: int = N_GRF, seed: int = 0, **options) -> MJCABiGRU:
    torch.manual_seed(seed)
    return build_network(NetworkConfig(architecture=architecture, **options), N_COORDINATES, n_grf, N_MUSCLES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("n_grf", [N_GRF, 0])
def test_shapes_and_bounds(architecture, n_grf):
    out = network(architecture, n_grf)(features(n_grf))
    assert out.shape == (BATCH, FRAMES, N_MUSCLES)
    assert torch.all((out >= 0) & (out <= 1))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_activations_stay_in_bounds_for_extreme_inputs(architecture):
    out = network(architecture)(1e4 * features())
    assert torch.all((out >= 0) & (out <= 1)) and torch.isfinite(out).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gradients_reach_every_parameter(architecture):
    model = network(architecture)
    model(features()).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_gradients_with_respect_to_inputs_and_time_context():
    """The BiGRU spreads information over time: an output frame depends on past and future input frames."""
    x = features().requires_grad_(True)
    out = network()(x)
    out[:, FRAMES // 2].sum().backward()
    influence = x.grad.abs().sum(dim=(0, 2))
    assert influence[0] > 0 and influence[-1] > 0


def test_mjca_joint_tokens_attend_to_the_grf_token():
    """Changing only the GRF features changes the output (through the GRF token)."""
    model = network()
    x = features()
    y = x.clone()
    y[..., feature_layout(N_COORDINATES, N_GRF)["grf"]] += 1.0
    assert not torch.allclose(model(x), model(y))


def test_gradcheck_float64():
    model = network(d_model=8, heads=2, gru_hidden=4).double()
    x = torch.randn(1, 5, 3 * N_COORDINATES + N_GRF, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model(t), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_seed_reproducibility(architecture):
    a, b, c = network(architecture, seed=3), network(architecture, seed=3), network(architecture, seed=4)
    x = features()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


def test_ablations_differ_in_structure():
    mjca, bigru, cnn, mlp = (network(a) for a in ARCHITECTURES)
    assert any(isinstance(m, torch.nn.MultiheadAttention) for m in mjca.modules())
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in bigru.modules())
    assert any(isinstance(m, torch.nn.Conv1d) for m in cnn.modules())
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in cnn.modules())
    assert not any(isinstance(m, (torch.nn.GRU, torch.nn.MultiheadAttention, torch.nn.Conv1d))
                   for m in mlp.modules())


def test_mlp_is_per_frame():
    """The "mlp" baseline's output at a frame depends on that frame's features only."""
    model = network("mlp")
    x = features()
    changed = x.clone()
    changed[:, 3] += 1.0
    a, b = model(x), model(changed)
    others = [t for t in range(x.shape[1]) if t != 3]
    assert torch.equal(a[:, others], b[:, others]) and not torch.equal(a[:, 3], b[:, 3])


def test_small_enough_for_cpu():
    """A few tens of thousands of parameters for an 18-muscle, 10-coordinate model."""
    model = build_network(NetworkConfig(), 10, 6, 18)
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="architecture"):
        NetworkConfig(architecture="transformer")
    with pytest.raises(ValueError, match="multiple of heads"):
        NetworkConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match="features per frame"):
        network()(torch.zeros(1, 5, 3))


def test_config_round_trip():
    config = NetworkConfig(architecture="cnn", d_model=16, heads=2)
    assert NetworkConfig(**config.to_dict()) == config


N_ACTUATORS = 5


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_actuator_head_leaves_the_activations_untouched(architecture):
    """The actuator head is built last and reads the trunk detached: the same seed gives the same
    activations with or without it, and its outputs send no gradient into the trunk."""
    config = NetworkConfig(architecture=architecture)
    torch.manual_seed(0)
    plain = build_network(config, N_COORDINATES, N_GRF, N_MUSCLES)
    torch.manual_seed(0)
    headed = build_network(config, N_COORDINATES, N_GRF, N_MUSCLES, N_ACTUATORS)
    x = features()
    assert torch.equal(plain(x), headed(x))
    logits, controls = headed.sequence_outputs(headed.frame_features(x))
    assert torch.equal(logits, headed.logits(x)) and controls.shape == (BATCH, FRAMES, N_ACTUATORS)
    controls.square().sum().backward()
    trunk = [p for name, p in headed.named_parameters() if not name.startswith("actuator_head.")]
    assert all(p.grad is None for p in trunk)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in headed.actuator_head.parameters())
    assert plain.sequence_outputs(plain.frame_features(x))[1] is None
