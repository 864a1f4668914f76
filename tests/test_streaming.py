"""Streaming predictions (opensim_pinn.streaming, opensim_pinn.live, ``opensim-pinn stream``).

The exactness test streams the offline-filtered kinematics of a trial with a lookahead
of one training window and requires offline ``predict``'s numbers; the others check the
kinematics estimator on a polynomial, the lookahead bookkeeping, the command and its errors.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from opensim_pinn.errors import InputError
from opensim_pinn.storage import read_storage
from opensim_pinn.streaming import StreamingPredictor, local_polynomial

FLOAT32_TOL = 1e-4  # the same float32 network and muscle module computed in another order (GRU steps by hand)


@pytest.fixture(scope="module")
def trained(demo_checkpoint):
    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    trainer = Trainer.load(demo_checkpoint["checkpoint"])
    kinematics = load_kinematics(trainer.info, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                                 end=demo_checkpoint["end"], lowpass=trainer.lowpass)
    raw = load_kinematics(trainer.info, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                          end=demo_checkpoint["end"], lowpass=None)
    return trainer, kinematics, raw


def _stream(stream, kinematics, filtered):
    frames = []
    for i, time in enumerate(kinematics.time):
        extra = {"qd": kinematics.qd[i], "qdd": kinematics.qdd[i]} if filtered else {}
        frames += stream.push(time, kinematics.q[i], kinematics.grf[i], **extra)
    return frames + stream.finish()


def test_full_lookahead_reproduces_offline_predict(trained):
    trainer, kinematics, _ = trained
    offline = trainer.predict(kinematics)
    offline_forces = trainer.muscle_forces(kinematics, offline)
    window = trainer.config.window_frames()
    step = kinematics.time[1] - kinematics.time[0]
    stream = StreamingPredictor(trainer, lookahead=window * step, filtered_input=True)
    frames = _stream(stream, kinematics, filtered=True)
    assert stream.lookahead_frames == window
    assert [f.time for f in frames] == list(kinematics.time)
    activations = np.array([f.activations for f in frames])
    forces = np.array([f.forces for f in frames])
    assert np.abs(activations - offline).max() < FLOAT32_TOL
    assert np.abs(forces - offline_forces).max() < FLOAT32_TOL * max(1.0, np.abs(offline_forces).max())
    assert all(f.actuator_forces is None and f.actuator_controls is None for f in frames)  # no actuator head


def test_shorter_lookahead_differs_but_stays_close(trained):
    """Backward GRU over 3 frames only: not the offline numbers, but the same muscles' pattern."""
    trainer, kinematics, _ = trained
    offline = trainer.predict(kinematics)
    step = kinematics.time[1] - kinematics.time[0]
    frames = _stream(StreamingPredictor(trainer, lookahead=3 * step, filtered_input=True), kinematics, True)
    activations = np.array([f.activations for f in frames])
    difference = np.abs(activations - offline).max()
    assert FLOAT32_TOL < difference < 0.5  # truncation changes the answer; an activation error of 0.5 would be a bug


def test_raw_stream_frames_come_after_the_lookahead(trained):
    trainer, _, raw = trained
    step = raw.time[1] - raw.time[0]
    stream = StreamingPredictor(trainer, lookahead=0.05)
    first = []
    for i in range(10):
        first.append(len(stream.push(raw.time[i], raw.q[i], raw.grf[i])))
    expected = round(0.05 / step)
    assert stream.lookahead_frames == expected
    assert first == [0] * expected + [1] * (10 - expected)  # frame i is finished with frame i + lookahead
    lower, upper = (b.numpy() for b in trainer._bounds("cpu"))
    rest = []
    for i in range(10, len(raw.time)):
        rest += stream.push(raw.time[i], raw.q[i], raw.grf[i])
    rest += stream.finish()
    assert len(rest) + sum(first) == len(raw.time)
    activations = np.array([f.activations for f in rest])
    assert np.all(activations >= lower - 1e-6) and np.all(activations <= upper + 1e-6)
    latency = stream.latency
    assert latency["lookahead_time_s"] == pytest.approx(expected * step)
    assert latency["compute_median_s"] > 0 and latency["pushes_timed"] == len(raw.time) - expected


def test_local_polynomial_recovers_a_cubic():
    time = np.linspace(0.0, 0.2, 21) ** 1.2  # irregular steps
    q = np.stack([1 + 2 * time - 3 * time ** 2 + 4 * time ** 3, np.sin(0 * time)], axis=1)
    frames = np.array([8, 12])
    value, speed, acceleration = local_polynomial(time, q, frames, 6, 3, 3, 0.05)
    t = time[frames]
    tol = 1e-6  # exact for a cubic up to the tiny ridge and rounding
    assert np.allclose(value[:, 0], 1 + 2 * t - 3 * t ** 2 + 4 * t ** 3, atol=tol)
    assert np.allclose(speed[:, 0], 2 - 6 * t + 12 * t ** 2, atol=1e-4)
    assert np.allclose(acceleration[:, 0], -6 + 24 * t, atol=1e-2)
    assert np.allclose(speed[:, 1], 0) and np.allclose(acceleration[:, 1], 0)


@pytest.mark.parametrize("jitter", [0.0, 1e-3])
def test_streamed_kinematics_are_the_local_polynomials(trained, jitter):
    """Uniform steps: the cached linear filter; irregular steps (jitter, in steps): the fits themselves."""
    trainer, _, raw = trained
    step = raw.time[1] - raw.time[0]
    n = 40
    time = raw.time[:n] + jitter * step * np.random.default_rng(0).uniform(-1, 1, n) * (np.arange(n) > 1)
    stream = StreamingPredictor(trainer, lookahead=0.05)
    for i in range(n):
        stream.push(time[i], raw.q[i], raw.grf[i])
    assert bool(stream._filters) == (jitter == 0)  # the filter path is taken only with uniform steps
    past = stream._past_frames()
    frames = np.arange(stream._next)  # final: estimated when emitted, with lookahead frames after each
    expected = local_polynomial(time, raw.q[:n], frames, past, min(stream.lookahead_frames, past), 3,
                                stream._step_s * past)
    c = len(trainer.coordinates)
    for k, values in enumerate(expected):
        streamed = stream._features[:len(frames), k * c:(k + 1) * c]
        assert np.abs(streamed - values).max() <= 1e-5 * max(1.0, np.abs(values).max())  # stored as float32


def test_bad_frames_are_one_line_input_errors(trained):
    trainer, _, raw = trained
    with pytest.raises(InputError, match="lookahead"):
        StreamingPredictor(trainer, lookahead=-0.1)
    stream = StreamingPredictor(trainer)
    with pytest.raises(InputError, match="values"):
        stream.push(0.0, raw.q[0][:-1], raw.grf[0])
    stream.push(0.0, raw.q[0], raw.grf[0])
    with pytest.raises(InputError, match="not after"):
        stream.push(0.0, raw.q[0], raw.grf[0])
    with pytest.raises(InputError, match="NaN"):
        stream.push(0.1, np.full_like(raw.q[0], np.nan), raw.grf[0])
    with pytest.raises(InputError, match="filtered_input"):
        stream.push(0.2, raw.q[0], raw.grf[0], qd=raw.q[0], qdd=raw.q[0])


def test_stream_command_on_stdin_writes_lines_and_sto_files(trained, demo_checkpoint, tmp_path):
    from opensim_pinn.live import stream

    trainer, _, raw = trained
    labels = ["time", *trainer.coordinates, *trainer.grf_labels, "ignored"]
    lines = ["\t".join(labels)] + ["\t".join(f"{v:.10g}" for v in (t, *raw.q[i], *raw.grf[i], 7.0))
                                   for i, t in enumerate(raw.time)]
    output = io.StringIO()
    summary = stream(demo_checkpoint["checkpoint"], "-", lookahead=0.03, out=tmp_path / "out",
                     input=io.StringIO("\n".join(lines) + "\n"), output=output)
    printed = output.getvalue().splitlines()
    assert len(printed) == len(raw.time) + 1 and printed[0].startswith("time\t")
    assert summary["frames"] == len(raw.time)
    assert summary["latency"]["garbage_collection_between_frames"]["collections"] == len(raw.time)  # one per push
    forces = read_storage(tmp_path / "out" / "stdin_stream_forces.sto")
    assert forces.labels == trainer.muscles and forces.n_frames == len(raw.time)
    assert np.allclose(forces.time, raw.time)
    # The same frames replayed from the motion file (not paced) give the same numbers.
    replay = io.StringIO()
    stream(demo_checkpoint["checkpoint"], demo_checkpoint["motion"], demo_checkpoint["external_loads"],
           lookahead=0.03, realtime=False, end=demo_checkpoint["end"], output=replay)
    ours = np.array([line.split("\t") for line in printed[1:]], float)
    theirs = np.array([line.split("\t") for line in replay.getvalue().splitlines()[1:]], float)
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-4)  # stdin lines carry 10 significant digits
    # ONNX Runtime (stream --backend onnxruntime) gives PyTorch's numbers (float32 rounding)
    pytest.importorskip("onnxruntime")
    onnx_replay = io.StringIO()
    stream(demo_checkpoint["checkpoint"], demo_checkpoint["motion"], demo_checkpoint["external_loads"],
           lookahead=0.03, realtime=False, end=demo_checkpoint["end"], backend="onnxruntime", output=onnx_replay)
    by_onnx = np.array([line.split("\t") for line in onnx_replay.getvalue().splitlines()[1:]], float)
    assert np.allclose(by_onnx, theirs, rtol=1e-4, atol=1e-3)


def test_garbage_is_collected_between_frames_not_inside_them():
    """No automatic collection inside the block (a cycle survives until collect()); the setting comes back."""
    import gc
    import weakref

    from opensim_pinn.live import CollectBetweenFrames

    class Node:
        pass

    assert gc.isenabled()
    with CollectBetweenFrames() as collector:
        assert not gc.isenabled()
        node = Node()
        node.itself = node
        ref = weakref.ref(node)
        del node
        for _ in range(10_000):  # far past the allocations that would trigger an automatic collection
            Node()
        assert ref() is not None
        collector.collect()
        assert ref() is None
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert collector.stats()["collections"] == 1 and collector.stats()["max_s"] > 0


def test_stream_command_refuses_to_overwrite(demo_checkpoint, tmp_path):
    (tmp_path / "stdin_stream_forces.sto").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "opensim_pinn.cli", "stream", "--checkpoint",
                           str(demo_checkpoint["checkpoint"]), "--motion", "-", "--out", str(tmp_path)],
                          input="", capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--force" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "stdin_stream_forces.sto").read_text() == "mine"


@pytest.fixture(scope="module")
def headed(builtin_project, tmp_path_factory):
    """A checkpoint with an actuator head (reserves on every coordinate), briefly trained: 5 epochs."""
    from opensim_pinn.train import train_network

    root = tmp_path_factory.mktemp("streaming_actuators")
    project = {k: str(v) for k, v in builtin_project.items()}
    train_network(project["model"], [project["motion"]], [project["external_loads"]], reserves="auto", end=0.8,
                  epochs=5, out=root / "train", progress=False)
    return {**project, "checkpoint": root / "train" / "checkpoint.pt", "root": root, "end": 0.8}


def test_streamed_actuator_forces_are_predicts(headed):
    """The actuator head's forces in the stream are those predict writes (full lookahead, offline kinematics)."""
    from opensim_pinn.predict import predict
    from opensim_pinn.trainer import Trainer
    from opensim_pinn.trial import load_kinematics

    trainer = Trainer.load(headed["checkpoint"])
    assert trainer.network.actuator_head is not None and trainer.actuators
    kinematics = load_kinematics(trainer.info, headed["motion"], headed["external_loads"], end=headed["end"],
                                 lowpass=trainer.lowpass)
    step = kinematics.time[1] - kinematics.time[0]
    stream = StreamingPredictor(trainer, lookahead=trainer.config.window_frames() * step, filtered_input=True)
    frames = _stream(stream, kinematics, filtered=True)
    assert stream.actuators == trainer.actuators
    forces = np.array([f.actuator_forces for f in frames])
    written = predict(headed["checkpoint"], headed["motion"], headed["external_loads"], end=headed["end"],
                      out=headed["root"] / "predicted")
    table = read_storage(written["files"][0])
    assert table.n_frames == len(frames)
    expected = np.column_stack([table.column(a) for a in trainer.actuators])
    assert np.abs(forces - expected).max() <= FLOAT32_TOL * max(1.0, np.abs(expected).max())
    assert np.abs(expected).max() > 0  # the head's outputs are not all zero: a real comparison
