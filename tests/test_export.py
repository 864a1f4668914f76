"""Exported networks (opensim_pinn.export, ``opensim-pinn export``): TorchScript and ONNX Runtime give PyTorch's numbers.

The exported files are run in a fresh interpreter where ``opensim_pinn`` cannot be
imported, as a user without the package would run them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from opensim_pinn.export import WindowModel, export_model, frame_step_runner
from opensim_pinn.streaming import FrameStep

FLOAT32_TOL = 1e-4  # same float32 operations, other kernels and orders (relative to the outputs' size)

RUNNER = r"""
import json, sys
sys.modules["opensim_pinn"] = None  # the exported file must run without the package
import numpy as np
path, fmt, inputs = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
features = inputs["features"]
if fmt == "torchscript":
    import torch
    extra = {"opensim_pinn.json": ""}
    module = torch.jit.load(path, _extra_files=extra)
    activations, forces = (t.numpy() for t in module(torch.from_numpy(features)))
    meta = json.loads(extra["opensim_pinn.json"])
else:
    import onnx, onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    activations, forces = session.run(None, {"features": features})
    meta = json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["opensim_pinn"])
np.savez(sys.argv[4], activations=activations, forces=forces)
print(json.dumps(meta))
"""


@pytest.fixture(scope="module")
def trainer(demo_checkpoint):
    from opensim_pinn.trainer import Trainer

    return Trainer.load(demo_checkpoint["checkpoint"])


@pytest.fixture(scope="module")
def kinematics(trainer, demo_checkpoint):
    from opensim_pinn.trial import load_kinematics

    return load_kinematics(trainer.info, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                           end=demo_checkpoint["end"], lowpass=trainer.lowpass)


def _close(actual, expected):
    return np.abs(actual - expected).max() <= FLOAT32_TOL * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_file_runs_without_the_package_and_matches_pytorch(fmt, trainer, kinematics, demo_checkpoint,
                                                                    tmp_path):
    pytest.importorskip("onnxruntime")
    from opensim_pinn.trainer import trial_features

    out = tmp_path / f"network.{fmt}"
    summary = export_model(demo_checkpoint["checkpoint"], out, fmt)
    assert summary["muscles"] == trainer.muscles and out.is_file()
    window = trainer.config.window_frames()
    model = WindowModel(trainer)
    assert summary["frames"] == "any"  # the default network is fused: any length, in ONNX too
    for n_frames in (window, 2 * window + 3):
        features = trial_features(kinematics)[:n_frames].astype(np.float32)
        np.savez(tmp_path / "inputs.npz", features=features)
        done = subprocess.run([sys.executable, "-c", RUNNER, str(out), fmt, str(tmp_path / "inputs.npz"),
                               str(tmp_path / "outputs.npz")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        meta = json.loads(done.stdout.strip().splitlines()[-1])
        assert meta["muscles"] == trainer.muscles and meta["coordinates"] == trainer.coordinates
        exported = np.load(tmp_path / "outputs.npz")
        with torch.no_grad():
            activations, forces = (t.numpy() for t in model(torch.from_numpy(features)))
        assert exported["activations"].shape == (n_frames, len(trainer.muscles))
        assert _close(exported["activations"], activations) and _close(exported["forces"], forces)
    # Up to one window, the exported network is offline predict.
    piece = type(kinematics)(name="piece", time=kinematics.time[:window], coordinates=kinematics.coordinates,
                             q=kinematics.q[:window], qd=kinematics.qd[:window], qdd=kinematics.qdd[:window],
                             grf_labels=kinematics.grf_labels, grf=kinematics.grf[:window])
    features = trial_features(piece).astype(np.float32)
    with torch.no_grad():
        activations, _ = model(torch.from_numpy(features))
    assert _close(activations.numpy(), trainer.predict(piece))


def test_export_refuses_to_overwrite(demo_checkpoint, tmp_path):
    from opensim_pinn.errors import InputError

    out = tmp_path / "network.pt"
    out.write_text("mine")
    with pytest.raises(InputError, match="--force"):
        export_model(demo_checkpoint["checkpoint"], out, "torchscript")
    assert out.read_text() == "mine"
    with pytest.raises(InputError, match="format"):
        export_model(demo_checkpoint["checkpoint"], tmp_path / "x", "tflite")


@pytest.mark.parametrize("lookahead_frames", [0, 3])
def test_frame_step_backends_agree(trainer, lookahead_frames):
    """The streaming step in TorchScript and ONNX Runtime gives PyTorch's numbers (with and without lookahead:
    without, the backward GRU reads the frame alone)."""
    pytest.importorskip("onnxruntime")
    step = FrameStep(trainer, lookahead_frames=lookahead_frames)
    generator = np.random.default_rng(0)
    features = (trainer.feature_mean + trainer.feature_std * generator.standard_normal(
        (step.n_frames, len(trainer.feature_mean)))).astype(np.float32)
    hidden = generator.standard_normal((step.n_windows, step.hidden_size)).astype(np.float32) * 0.3
    lengths = np.array([4, 2], np.int64)[:step.n_windows]
    weights = np.array([3.0, 5.0], np.float32)[:step.n_windows]
    results = {backend: frame_step_runner(step, backend)(features, hidden, lengths, weights)
               for backend in ("torch", "torchscript", "onnxruntime")}
    for backend in ("torchscript", "onnxruntime"):
        for ours, reference in zip(results[backend], results["torch"]):
            assert ours.shape == reference.shape and (not ours.size or _close(ours, reference)), backend
    # ONNX Runtime's inputs and outputs are bound to buffers of the runner: a second frame gets its own numbers,
    # and the first frame's results are not overwritten by it
    runner = frame_step_runner(step, "onnxruntime")
    first = runner(features, hidden, lengths, weights)
    second = runner(features[::-1].copy(), 0.5 * hidden, lengths[::-1].copy(), weights[::-1].copy())
    expected = frame_step_runner(step, "torch")(features[::-1].copy(), 0.5 * hidden, lengths[::-1].copy(),
                                                weights[::-1].copy())
    for ours, reference in zip(second, expected):
        assert not ours.size or _close(ours, reference)
    for ours, reference in zip(first, results["torch"]):
        assert not ours.size or _close(ours, reference)


@pytest.mark.parametrize("backend", ["torch", "torchscript", "onnxruntime"])
def test_frame_step_runs_on_its_own_input_arrays(trainer, backend):
    """A stream writes a frame's inputs into the runner's arrays and calls run(): the numbers of a call with them."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    step = FrameStep(trainer, lookahead_frames=3)
    runner = frame_step_runner(step, backend)
    generator = np.random.default_rng(2)
    inputs = ((trainer.feature_mean + trainer.feature_std * generator.standard_normal(
        (step.n_frames, len(trainer.feature_mean)))).astype(np.float32),
        generator.standard_normal((step.n_windows, step.hidden_size)).astype(np.float32) * 0.3,
        np.array([3, 1], np.int64)[:step.n_windows], np.array([2.0, 6.0], np.float32)[:step.n_windows])
    expected = frame_step_runner(step, "torch")(*inputs)
    runner(*(np.zeros_like(x) + 1 for x in inputs))  # an earlier frame's inputs, overwritten below
    for array, values in zip((runner.features, runner.hidden, runner.lengths, runner.weights), inputs):
        array[:] = values
    for ours, reference in zip(runner.run(), expected):
        assert ours.shape == reference.shape and (not ours.size or _close(ours, reference))


def test_frame_step_without_lookahead_is_the_general_step(trainer):
    """Without lookahead both GRU directions take their one step in a single call: the numbers of the general
    step whose backward GRU reads the frame alone (float32 rounding: 1e-5 relative)."""
    plain, general = FrameStep(trainer, lookahead_frames=0), FrameStep(trainer, lookahead_frames=1)
    generator = np.random.default_rng(1)
    features = torch.tensor((trainer.feature_mean + trainer.feature_std * generator.standard_normal(
        (2, len(trainer.feature_mean)))).astype(np.float32))
    hidden = torch.tensor(generator.standard_normal((plain.n_windows, plain.hidden_size)).astype(np.float32) * 0.3)
    lengths = torch.ones(plain.n_windows, dtype=torch.long)
    weights = torch.tensor([3.0, 5.0])[:plain.n_windows]
    with torch.inference_mode():
        ours = plain(features[:1], hidden, lengths, weights)
        reference = general(features, hidden, lengths, weights)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unfused_network_exports_with_fixed_frames(trainer, kinematics, tmp_path):
    """A cnn network is not fused: it is exported as it runs, to ONNX with the fixed --frames, with predict's numbers."""
    pytest.importorskip("onnxruntime")
    import copy

    import onnxruntime

    from opensim_pinn.network import NetworkConfig, build_network
    from opensim_pinn.trainer import trial_features

    cnn = copy.copy(trainer)
    cnn.config = copy.deepcopy(trainer.config)
    cnn.config.network = NetworkConfig(architecture="cnn")
    torch.manual_seed(0)
    cnn.network = build_network(cnn.config.network, len(trainer.coordinates), len(trainer.grf_labels),
                                len(trainer.muscles), trainer.network.n_actuators).eval()
    cnn.save(tmp_path / "cnn.pt")
    window = trainer.config.window_frames()
    summary = export_model(tmp_path / "cnn.pt", tmp_path / "cnn.onnx", "onnx", frames=window)
    assert summary["frames"] == window and not WindowModel(cnn).fused
    piece = type(kinematics)(name="piece", time=kinematics.time[:window], coordinates=kinematics.coordinates,
                             q=kinematics.q[:window], qd=kinematics.qd[:window], qdd=kinematics.qdd[:window],
                             grf_labels=kinematics.grf_labels, grf=kinematics.grf[:window])
    session = onnxruntime.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    activations, _ = session.run(None, {"features": trial_features(piece).astype(np.float32)})
    assert _close(activations, cnn.predict(piece))
