"""The network's internal rate (opensim_pinn.timebase, TrainConfig.rate): time, not frames.

The done-when test trains on the built-in walk recorded at 60 Hz and predicts the same
motion recorded at 1000 Hz: the median R^2 of the muscle forces against the fast Static
Optimization solver on each trial's own frames must agree within 0.01. The others check
the resampling on a known signal and that checkpoints written before ``rate`` existed
still predict frame by frame, exactly as they did.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from opensim_pinn.timebase import at_rate, resample_trial, ticks, to_frames
from opensim_pinn.trainer import TrainConfig, Trainer
from opensim_pinn.windows import blend, window_index
from opensim_pinn.trial import Kinematics

CROSS_RATE_TOL = 0.01  # the done-when: median R^2 at 1000 Hz within 0.01 of its 60 Hz value


def _sinusoid_kinematics(rate: float, duration: float = 1.0, hz: float = 6.0) -> Kinematics:
    time = np.arange(int(round(duration * rate)) + 1) / rate
    w = 2 * np.pi * hz
    q = np.column_stack([np.sin(w * time), np.cos(w * time)])
    qd = w * np.column_stack([np.cos(w * time), -np.sin(w * time)])
    return Kinematics(name="sine", time=time, coordinates=["a", "b"], q=q, qd=qd, qdd=-w ** 2 * q,
                      grf_labels=["f"], grf=np.abs(q[:, :1]))


def test_resampling_a_6hz_signal_at_60hz_is_accurate():
    fine = _sinusoid_kinematics(1000.0)
    coarse = resample_trial(fine, 60.0)
    assert len(coarse.time) == 61 and coarse.time[0] == fine.time[0] and coarse.time[-1] == fine.time[-1]
    expected = _sinusoid_kinematics(60.0)
    np.testing.assert_allclose(coarse.q, expected.q, atol=1e-6)  # 1000 Hz samples: the spline is near exact
    # Back up from 60 Hz ticks to 1000 Hz frames: the cubic's error on a 6 Hz sinusoid at 60 Hz is
    # (5/384) (w h)^4 = 2e-4 of the amplitude in theory (measured 4.5e-4) between the first and last
    # two ticks, and 3.5e-3 next to the ends (not-a-knot end conditions).
    error = np.abs(to_frames(expected.q, expected.time, fine.time) - fine.q).max(axis=1)
    inner = (fine.time > 2 / 60) & (fine.time < 1 - 2 / 60)
    assert error[inner].max() < 6e-4 and error.max() < 5e-3
    assert at_rate(expected.time, 60.0) and not at_rate(fine.time, 60.0) and at_rate(fine.time, None)
    assert resample_trial(expected, 60.0) is expected  # already at the rate: used as it is
    assert len(ticks(np.array([0.0, 0.004]), 60.0)) == 2
    clipped = to_frames(np.array([[0.0], [1.0], [0.0], [1.0]]), np.arange(4.0), np.array([0.5, 1.5]), 0.0, 1.0)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0


def test_checkpoint_without_rate_predicts_frame_by_frame_as_before(demo_checkpoint, tmp_path):
    from opensim_pinn.trial import load_kinematics

    state = torch.load(demo_checkpoint["checkpoint"], weights_only=True)
    assert state["train_config"]["rate"] == 100.0  # written by this version
    for key in ("rate", "window_s"):  # what a checkpoint of an earlier version holds
        del state["train_config"][key]
    torch.save(state, tmp_path / "old.pt")
    old, new = Trainer.load(tmp_path / "old.pt"), Trainer.load(demo_checkpoint["checkpoint"])
    assert old.config.rate is None and old.config.window_frames() == 16
    kinematics = load_kinematics(new.info, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                                 end=demo_checkpoint["end"], lowpass=new.lowpass)
    # The trial at the checkpoint's own rate (100 Hz): the same numbers either way.
    np.testing.assert_array_equal(old.predict(kinematics), new.predict(kinematics))
    # Every other frame (50 Hz): the old checkpoint takes the frames as they are (windows of 16 frames),
    # the new one resamples them to its 100 Hz ticks.
    half = replace(kinematics, time=kinematics.time[::2], q=kinematics.q[::2], qd=kinematics.qd[::2],
                   qdd=kinematics.qdd[::2], grf=kinematics.grf[::2])
    features = old.features(half)
    index = window_index(len(half.time), 16)
    lower, upper = old._bounds("cpu")
    with torch.inference_mode():
        frame_based = lower + (upper - lower) * blend(torch.sigmoid(old._window_outputs(features, index)[0]),
                                                       index, len(half.time))
    np.testing.assert_array_equal(old.predict(half), frame_based.numpy().astype(float))
    assert not np.allclose(new.predict(half), old.predict(half), atol=1e-3)


@pytest.fixture(scope="module")
def walk_at_two_rates(builtin_project, demo_checkpoint, tmp_path_factory):
    """The built-in walk's first stride recorded at 60 Hz and at 1000 Hz: prepared trials, model, paths."""
    from opensim_pinn.demo_model import synthesize_walking_trial
    from opensim_pinn.trial import TrialSettings, prepare_trial

    paths = Trainer.load(demo_checkpoint["checkpoint"])  # its path polynomials fit the built-in walk
    trials, info = {}, None
    for rate in (60, 1000):
        files = synthesize_walking_trial(builtin_project["model"], tmp_path_factory.mktemp(f"walk{rate}"),
                                         duration=1.2, rate=rate)
        trials[rate], info = prepare_trial(TrialSettings(model=str(files["model"]), motion=str(files["motion"]),
                                                         external_loads=str(files["external_loads"])))
    return trials, info, paths.muscle_model, paths.polynomials


@pytest.mark.parametrize("outputs", ["activations", "forces"])
def test_trained_at_60hz_predicts_1000hz_as_well(walk_at_two_rates, outputs):
    from opensim_pinn.metrics import r2
    from opensim_pinn.static_opt import fast_static_optimization

    trials, info, muscle_model, polynomials = walk_at_two_rates
    assert len(trials[60].time) == 73 and len(trials[1000].time) == 1201
    trainer = Trainer(TrainConfig(epochs=300, outputs=outputs), progress=False).fit(
        [trials[60]], info, muscle_model, polynomials=polynomials)
    n_muscles = len(trainer.muscles)

    def median_r2(trial, network):
        reference = fast_static_optimization(trial, info, muscle_model).forces[:, :n_muscles]
        return float(np.median(r2(reference, network.muscle_forces(trial, network.predict(trial)))))

    at_60, at_1000 = median_r2(trials[60], trainer), median_r2(trials[1000], trainer)
    # trained (measured 0.991 at 60 Hz and 0.991 at 1000 Hz; forces outputs 0.9999 and 0.9997): two good fits
    assert at_60 > 0.98
    assert abs(at_1000 - at_60) <= CROSS_RATE_TOL, (at_60, at_1000)


def test_stream_at_another_rate_is_refused(demo_checkpoint):
    from opensim_pinn.errors import InputError
    from opensim_pinn.streaming import StreamingPredictor

    trainer = Trainer.load(demo_checkpoint["checkpoint"])
    n_coordinates, n_grf = len(trainer.coordinates), len(trainer.grf_labels)
    stream = StreamingPredictor(trainer, lookahead=0.05)
    stream.push(0.0, np.zeros(n_coordinates), np.zeros(n_grf))
    with pytest.raises(InputError, match=r"50 Hz.*works at 100 Hz"):
        stream.push(0.02, np.zeros(n_coordinates), np.zeros(n_grf))
    at_rate_stream = StreamingPredictor(trainer, lookahead=0.05)
    for i in range(3):  # 100 Hz, the checkpoint's rate: accepted
        at_rate_stream.push(i * 0.01, np.zeros(n_coordinates), np.zeros(n_grf))


def test_stream_command_replays_another_rate_at_the_checkpoints_ticks(builtin_project, demo_checkpoint, tmp_path):
    """`opensim-pinn stream --motion` of a 60 Hz recording with a 100 Hz checkpoint: the recording is resampled and
    replayed at the checkpoint's ticks (a stream pushed frame by frame at another rate is refused, test above)."""
    from opensim_pinn.demo_model import synthesize_walking_trial
    from opensim_pinn.live import stream
    from opensim_pinn.timebase import resample_trial
    from opensim_pinn.trial import load_kinematics

    trainer = Trainer.load(demo_checkpoint["checkpoint"])
    files = synthesize_walking_trial(builtin_project["model"], tmp_path / "walk60", duration=1.2, rate=60)
    output = io.StringIO()
    window_s = trainer.config.window_frames() / trainer.config.rate
    summary = stream(demo_checkpoint["checkpoint"], files["motion"], files["external_loads"], lookahead=window_s,
                     realtime=False, output=output)
    streamed = np.array([line.split("\t") for line in output.getvalue().splitlines()[1:]], float)
    ticks = resample_trial(load_kinematics(trainer.info, files["motion"], files["external_loads"], lowpass=None),
                           trainer.config.rate)
    assert summary["frames"] == len(ticks.time) == len(streamed)
    assert np.allclose(streamed[:, 0], ticks.time)
    assert np.all(np.abs(np.diff(streamed[:, 0]) - 1 / trainer.config.rate) < 1e-9)
