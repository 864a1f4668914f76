"""Real-time predictions: frames pushed one by one as they arrive, results after a fixed lookahead.

:class:`StreamingPredictor` takes streamed inverse kinematics (and ground reaction
forces) frame by frame and returns each frame's muscle activations and forces as
soon as ``lookahead`` seconds of later frames have arrived. Latency = lookahead +
the compute time of one :meth:`~StreamingPredictor.push` (measured, see
:attr:`StreamingPredictor.latency`).

What differs from the offline :func:`opensim_pinn.predict.predict`:

- **Kinematics.** Offline, the coordinates are low-pass filtered forwards *and
  backwards* (zero phase) and differentiated with splines through the whole
  trial, as OpenSim does: that needs the whole future. Streaming estimates q, qd
  and qdd of a frame from a local least-squares polynomial (Savitzky-Golay) through
  the raw coordinates of the last :data:`PAST_SPAN_S` seconds and of the lookahead
  frames, up to :data:`PAST_SPAN_S` of them (cubic; quadratic without lookahead). Nothing else of the offline filter
  is used, so the streamed kinematics, and the predictions, differ from the offline
  ones most at small lookaheads (measured in the README). A frame's kinematics are
  final when it is emitted; the lookahead frames enter the network with the
  estimates their own (shorter) future allows at that moment.
  With ``filtered_input=True`` the caller gives filtered q, qd and qdd itself
  (for example the offline filter's, to replay a file exactly).
- **Network.** Offline, the BiGRU reads windows of ``W`` training frames
  (:attr:`~opensim_pinn.trainer.TrainConfig.window`) that overlap by half, and
  overlapping windows are blended with triangular weights. Streaming keeps the
  same windows and weights: the forward GRU state of each window that covers the
  newest emitted frame is carried from frame to frame (one GRU step per frame and
  window, from zero at the window's first frame, as in training); the backward GRU
  runs over the lookahead only (from the last available frame of the window back to
  the emitted frame). With a lookahead of ``W`` frames or more every backward pass
  reaches its window's end and the stream reproduces the offline windows exactly;
  :meth:`StreamingPredictor.finish` computes the last frames with the offline
  windows of the whole stream. So streaming the offline-filtered kinematics with a
  lookahead of ``W`` frames gives offline ``predict`` (tested within 1e-4).

Only per-frame encoders with one GRU layer stream (architectures ``mjca`` and
``bigru``, ``gru_layers=1``, the defaults). The stream's frames are the network's
ticks: a checkpoint with an internal rate (:attr:`~opensim_pinn.trainer.TrainConfig.rate`)
streams frames at that rate (within 1 %) and refuses others at the second frame
(:func:`check_stream_rate`); offline ``predict`` resamples any rate.

Examples
--------
>>> stream = StreamingPredictor("run1/checkpoint.pt", lookahead=0.05)       # doctest: +SKIP
>>> for time, q, grf in frames:                                              # doctest: +SKIP
...     for frame in stream.push(time, q, grf):
...         send(frame.time, frame.forces)
>>> last = stream.finish()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

log = logging.getLogger(__name__)

PAST_SPAN_S = 0.1
"""Seconds of past frames in the local polynomial that estimates a streamed frame's kinematics."""

_RIDGE = 1e-9  # keeps the local fits solvable on the first frames of a stream (fewer samples than terms)


@dataclass
class StreamedFrame:
    """Predictions of one streamed frame.

    Attributes
    ----------
    time : float
        The frame's time (s), as pushed.
    activations : ndarray, shape (n_muscles,)
    forces : ndarray, shape (n_muscles,)
        Muscle forces (N).
    actuator_forces : ndarray or None
        Reserve/residual actuator forces. ``None``: this checkpoint's network outputs
        muscle activations only (the offline pipeline gets the actuators from inverse
        dynamics, which needs OpenSim); filled when the checkpoint carries an
        actuator head.
    compute_s : float
        Wall time of the :meth:`StreamingPredictor.push` call that finished the frame.
    """

    time: float
    activations: np.ndarray
    forces: np.ndarray
    actuator_forces: np.ndarray | None = None
    compute_s: float = 0.0


def _gru_step(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step as torch's ``nn.GRU`` computes it; ``gi`` = W_ih x + b_ih (..., 3H), ``h`` (..., H)."""
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


class FrameStep(nn.Module):
    """The tensor work of finishing one streamed frame: network, activation bounds, muscle forces (float32).

    Inputs of :meth:`forward`:

    - ``features`` (K, n_features): raw q (rad, m), qd, qdd, GRF (N) of the emitted
      frame and the next K - 1 frames (layout :func:`~opensim_pinn.network.feature_layout`;
      rows past the newest frame are ignored through ``mask``);
    - ``hidden`` (n_windows, gru_hidden): forward GRU state of each window covering
      the frame, after the previous frame (zeros for a window that starts here);
    - ``mask`` (n_windows, K): 1 where the lookahead frame is available and inside the window;
    - ``weights`` (n_windows,): the offline blending weight of each window (0: no window).

    Outputs: activations (n_muscles,), muscle forces (n_muscles,) N, and the new
    forward states (n_windows, gru_hidden).
    """

    def __init__(self, trainer, lookahead_frames: int):
        super().__init__()
        network = trainer.network
        config = network.config
        if not network.per_frame_encoder or config.gru_layers != 1:
            raise InputError(f"this checkpoint's network ({config.architecture}, {config.gru_layers} GRU layers) "
                             "cannot stream: streaming needs a per-frame encoder (mjca or bigru) and one GRU layer")
        self.window = streaming_window(trainer)
        self.stride = max(1, self.window // 2)
        self.n_windows = math.ceil(self.window / self.stride)
        self.n_frames = min(int(lookahead_frames), self.window - 1) + 1
        self.n_coordinates = len(trainer.coordinates)
        take_inference_parts(self, trainer)
        gru = self.network.gru
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            self.register_buffer(f"{name}_forward", getattr(gru, f"{name}_l0").detach().clone())
            self.register_buffer(f"{name}_backward", getattr(gru, f"{name}_l0_reverse").detach().clone())

    def forward(self, features: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor):
        frame = self.network.frame_features(((features - self.mean) / self.std).unsqueeze(0))[0]  # (K, D)
        gi = F.linear(frame[:1], self.weight_ih_forward, self.bias_ih_forward)
        forward_state = _gru_step(gi.expand(hidden.shape[0], -1), hidden, self.weight_hh_forward, self.bias_hh_forward)
        gi_backward = F.linear(frame, self.weight_ih_backward, self.bias_ih_backward)  # (K, 3H)
        backward_state = torch.zeros_like(hidden)
        for k in range(self.n_frames - 1, -1, -1):
            stepped = _gru_step(gi_backward[k].expand(hidden.shape[0], -1), backward_state,
                                self.weight_hh_backward, self.bias_hh_backward)
            backward_state = backward_state + mask[:, k:k + 1] * (stepped - backward_state)
        logits = self.network.head(torch.cat([forward_state, backward_state,
                                              frame[:1].expand(hidden.shape[0], -1)], dim=-1))
        share = weights / weights.sum()
        blended = (share.unsqueeze(-1) * torch.sigmoid(logits)).sum(0)
        activations = self.lower + (self.upper - self.lower) * blended
        c = self.n_coordinates
        forces = self.muscles.muscle_forces(features[0, :c], features[0, c:2 * c], activations)
        return activations, forces, forward_state


def take_inference_parts(module: nn.Module, trainer) -> None:
    """Give ``module`` frozen float32 CPU copies of what inference needs from a fitted ``trainer``: ``network``,
    the input normalisation ``mean`` and ``std`` (n_features,), the activation bounds ``lower`` and ``upper``
    (n_muscles,) and the muscle module ``muscles``."""
    module.network = copy.deepcopy(trainer.network).cpu().float().eval()
    module.register_buffer("mean", torch.tensor(trainer.feature_mean, dtype=torch.float32))
    module.register_buffer("std", torch.tensor(trainer.feature_std, dtype=torch.float32))
    lower, upper = trainer._bounds("cpu")
    module.register_buffer("lower", lower)
    module.register_buffer("upper", upper)
    module.muscles = copy.deepcopy(trainer.inference_muscle_model()).cpu()
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def streaming_window(trainer) -> int:
    """The checkpoint's BiGRU window (frames, ticks of its internal rate); :class:`InputError` if it was
    trained on whole trials."""
    window = trainer.config.window_frames()
    if window is None:
        raise InputError("this checkpoint was trained on whole trials (window None); streaming needs a "
                         "windowed network: train with the default window")
    return int(window)


RATE_TOLERANCE = 0.01
"""Relative difference between a stream's rate and a checkpoint's internal rate that is accepted."""


def check_stream_rate(trainer, step_s: float) -> None:
    """:class:`InputError` unless frames ``step_s`` apart are at the checkpoint's internal rate (if it has one).

    The stream's frames are the network's ticks: frames at another rate would step
    its GRU at the wrong time scale (offline ``predict`` resamples; a stream does not).
    """
    rate = trainer.config.rate
    if rate is not None and abs(step_s * rate - 1.0) > RATE_TOLERANCE:
        raise InputError(f"the stream's frames are {step_s * 1e3:.4g} ms apart ({1 / step_s:.4g} Hz) but this "
                         f"checkpoint's network works at {rate:g} Hz: stream frames at {rate:g} Hz (resample "
                         "or decimate them before pushing), or use predict on recorded files, which resamples")


def local_polynomial(time: np.ndarray, q: np.ndarray, frames: np.ndarray, past: int, ahead: int, degree: int,
                     scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, qd, qdd of ``frames`` from least-squares polynomials through the samples around each.

    Parameters
    ----------
    time : ndarray, shape (n_samples,)
    q : ndarray, shape (n_samples, n_coordinates)
    frames : ndarray of int, shape (n,)
        Frames to estimate; frame k uses samples k - past to min(k + ahead, n_samples - 1).
    past, ahead : int
        Samples before and after the frame.
    degree : int
        Polynomial degree (fewer samples than terms: the smallest-norm fit).
    scale : float
        Time unit of the fit (s), for conditioning.

    Returns
    -------
    q, qd, qdd : ndarray, shape (n, n_coordinates)
    """
    first = max(0, int(frames.min()) - past)
    samples = np.arange(first, len(time))
    inside = (samples[None, :] >= frames[:, None] - past) & (samples[None, :] <= frames[:, None] + ahead)
    u = (time[samples][None, :] - time[frames][:, None]) / scale  # (n, S)
    powers = u[..., None] ** np.arange(degree + 1)  # (n, S, D+1)
    weighted = np.swapaxes(powers * inside[..., None], 1, 2)  # (n, D+1, S)
    normal = weighted @ powers + _RIDGE * np.eye(degree + 1)
    coefficients = np.linalg.solve(normal, weighted @ q[samples])  # (n, D+1, C)
    zero = np.zeros_like(coefficients[:, 0])
    qd = coefficients[:, 1] / scale if degree >= 1 else zero
    qdd = 2 * coefficients[:, 2] / scale ** 2 if degree >= 2 else zero
    return coefficients[:, 0], qd, qdd


class StreamingPredictor:
    """Muscle activations and forces of frames pushed one at a time (see the module docstring).

    Parameters
    ----------
    checkpoint : path or Trainer
        ``checkpoint.pt`` from ``opensim-pinn train`` (or a loaded Trainer).
    lookahead : float
        Seconds of later frames to wait for before a frame is finished; converted to
        frames with the stream's first time step (rounded). 0: each frame is finished
        when it arrives.
    filtered_input : bool
        ``False`` (default): push raw IK coordinates; speeds and accelerations are
        estimated in the stream. ``True``: push filtered q with their qd and qdd.
    backend : "torch", "torchscript" or "onnxruntime"
        What runs :class:`FrameStep` (the latter two from an export, see
        :mod:`opensim_pinn.export`).
    """

    def __init__(self, checkpoint, *, lookahead: float = 0.0, filtered_input: bool = False,
                 backend: str = "torch"):
        from .trainer import Trainer

        if not (isinstance(lookahead, (int, float)) and math.isfinite(lookahead) and lookahead >= 0):
            raise InputError(f"--lookahead must be a number of seconds, 0 or more, got {lookahead!r}")
        self.trainer = checkpoint if isinstance(checkpoint, Trainer) else Trainer.load(Path(checkpoint))
        self.lookahead = float(lookahead)
        self.filtered_input = filtered_input
        self.backend = backend
        self.window = streaming_window(self.trainer)
        FrameStep(self.trainer, 0)  # refuses networks that cannot stream, before any frame
        self.coordinates, self.muscles = list(self.trainer.coordinates), list(self.trainer.muscles)
        self.grf_labels = list(self.trainer.grf_labels)
        self.n_features = 3 * len(self.coordinates) + len(self.grf_labels)
        self.lookahead_frames: int | None = 0 if self.lookahead == 0 else None
        self._step = None
        self._step_s = 1.0  # the stream's first time step (s), once two frames have arrived
        self._time: list[float] = []
        self._raw: list[np.ndarray] = []  # raw q per frame
        self._features: list[np.ndarray] = []  # q, qd, qdd, grf per frame (final once emitted)
        self._base = 0  # global index of the first buffered frame
        self._next = 0  # next frame to emit
        self._hidden: dict[int, np.ndarray] = {}  # window start -> forward GRU state
        self._compute: list[float] = []
        self._finished = False

    # ---- the stream ------------------------------------------------------------------
    def push(self, time: float, q, grf=None, *, qd=None, qdd=None) -> list[StreamedFrame]:
        """Add one frame; return the frames it finishes (none, one, or several at the stream's start).

        Parameters
        ----------
        time : float
            Seconds, increasing.
        q : array, shape (n_coordinates,)
            Coordinates in :attr:`coordinates` order, radians (metres for translations).
        grf : array, shape (n_grf,), optional
            Ground reaction force components in :attr:`grf_labels` order (N); needed when
            the network was trained with them.
        qd, qdd : array, shape (n_coordinates,)
            Only with ``filtered_input=True`` (then required): speeds and accelerations.
        """
        if self._step is None and self.lookahead_frames is not None:  # built once, outside the timed work
            from .export import frame_step_runner

            self._step = frame_step_runner(FrameStep(self.trainer, self.lookahead_frames), self.backend)
        began = clock.perf_counter()
        if self._finished:
            raise RuntimeError("the stream is finished; make a new StreamingPredictor")
        q, grf, qd, qdd = self._check_frame(time, q, grf, qd, qdd)
        if len(self._time) == 1:  # the second frame: the stream's time step
            self._step_s = time - self._time[0]
            check_stream_rate(self.trainer, self._step_s)
            if self.lookahead_frames is None:
                self.lookahead_frames = int(round(self.lookahead / self._step_s))
        self._time.append(float(time))
        self._raw.append(q)
        if self.filtered_input:
            self._features.append(np.concatenate([q, qd, qdd, grf]))
        else:
            self._features.append(np.concatenate([q, np.zeros_like(q), np.zeros_like(q), grf]))
        out = []
        newest = self._base + len(self._time) - 1
        if self.lookahead_frames is not None and newest - self._next >= self.lookahead_frames:
            if not self.filtered_input:
                self._estimate(np.arange(self._next, newest + 1))
            while newest - self._next >= self.lookahead_frames:
                out.append(self._emit(self._next, newest))
                self._next += 1
            self._trim()
        elapsed = clock.perf_counter() - began
        if out:
            self._compute.append(elapsed)
        for frame in out:
            frame.compute_s = elapsed
        return out

    def finish(self) -> list[StreamedFrame]:
        """The frames still waiting for their lookahead, with the offline windows of the whole stream."""
        began = clock.perf_counter()
        self._finished = True
        n_frames = self._base + len(self._time)
        if self._next >= n_frames:
            return []
        remaining = np.arange(self._next, n_frames)
        if not self.filtered_input:
            self._estimate(remaining)
        from .trainer import windows

        network = self.trainer.network
        spans = [(a, b) for a, b in windows(n_frames, self.window) if b > self._next]
        if spans[0][0] < self._base:
            raise RuntimeError("stream buffer too short for the final windows")  # pragma: no cover
        features = np.asarray(self._features, dtype=np.float32)
        mean = self.trainer.feature_mean.astype(np.float32)
        std = self.trainer.feature_std.astype(np.float32)
        index = torch.tensor([list(range(a - self._base, b - self._base)) for a, b in spans])
        x = torch.as_tensor((features - mean) / std)
        with torch.inference_mode():
            pieces = torch.sigmoid(network.sequence_logits(network.frame_features(x.cpu()[None])[0][index]))
            length = index.shape[1]
            ramp = torch.minimum(torch.arange(1, length + 1), torch.arange(length, 0, -1)).to(pieces)
            if len(spans) == 1 and spans[0] == (0, n_frames):
                ramp = torch.ones_like(ramp)
            total = pieces.new_zeros(len(features), pieces.shape[-1]).index_add_(
                0, index.reshape(-1), (pieces * ramp[:, None]).reshape(-1, pieces.shape[-1]))
            weight = pieces.new_zeros(len(features)).index_add_(0, index.reshape(-1), ramp.repeat(len(spans)))
        rows = remaining - self._base
        lower, upper = (b.numpy() for b in self.trainer._bounds("cpu"))
        activations = lower + (upper - lower) * (total[rows] / weight[rows, None]).numpy()
        c = len(self.coordinates)
        kinematics = features[rows]
        with torch.inference_mode():
            forces = self.trainer.inference_muscle_model().muscle_forces(
                torch.as_tensor(kinematics[:, :c]), torch.as_tensor(kinematics[:, c:2 * c]),
                torch.as_tensor(activations, dtype=torch.float32)).numpy()
        elapsed = clock.perf_counter() - began
        self._next = n_frames
        return [StreamedFrame(time=self._time[r], activations=activations[i].astype(float),
                              forces=forces[i].astype(float), compute_s=elapsed) for i, r in enumerate(rows)]

    @property
    def latency(self) -> dict:
        """Lookahead (s and frames) and compute time of the pushes that finished frames (median, p99, max, s)."""
        times = self._compute
        stats = {"lookahead_s": self.lookahead, "lookahead_frames": self.lookahead_frames,
                 "lookahead_time_s": None if self.lookahead_frames is None else float(self.lookahead_frames * self._step_s),
                 "pushes_timed": len(times)}
        if times:
            stats.update(compute_median_s=statistics.median(times), compute_p99_s=float(np.percentile(times, 99)),
                         compute_max_s=max(times))
        return stats

    # ---- internals ---------------------------------------------------------------------
    def _check_frame(self, time, q, grf, qd, qdd):
        c, g = len(self.coordinates), len(self.grf_labels)
        if not (isinstance(time, (int, float, np.floating, np.integer)) and math.isfinite(time)):
            raise InputError(f"frame time must be a finite number of seconds, got {time!r}")
        if self._time and not time > self._time[-1]:
            raise InputError(f"frame time {time:.10g} s is not after the previous frame's {self._time[-1]:.10g} s")

        def vector(values, n, what):
            array = np.asarray(values if values is not None else np.zeros(0), dtype=float).reshape(-1)
            if array.shape != (n,):
                raise InputError(f"frame at {time:g} s: {what} has {array.size} values, the checkpoint expects {n}")
            if not np.all(np.isfinite(array)):
                raise InputError(f"frame at {time:g} s: {what} has a NaN or infinite value")
            return array

        if grf is None and g:
            raise InputError("the network was trained with ground reaction forces; give each frame's GRF")
        if self.filtered_input and (qd is None or qdd is None):
            raise InputError("filtered_input=True: give each frame's qd and qdd with its q")
        if not self.filtered_input and (qd is not None or qdd is not None):
            raise InputError("qd and qdd are estimated in the stream; give them only with filtered_input=True")
        derivatives = (vector(qd, c, "qd"), vector(qdd, c, "qdd")) if self.filtered_input else (None, None)
        return (vector(q, c, "q"), vector(grf, g, "grf"), *derivatives)

    def _estimate(self, frames: np.ndarray) -> None:
        """Kinematics of ``frames`` (global indices) from the raw coordinates buffered so far."""
        past = self._past_frames()
        ahead = min(self.lookahead_frames or 0, past)  # a longer span than 2 x PAST_SPAN_S is too long for a cubic
        first = max(0, int(frames.min()) - self._base - past)  # only the samples the fits use
        q, qd, qdd = local_polynomial(np.asarray(self._time[first:]), np.asarray(self._raw[first:]),
                                      frames - self._base - first, past, ahead, 3 if ahead else 2,
                                      self._step_s * past)
        c = len(self.coordinates)
        for i, frame in enumerate(frames - self._base):
            row = self._features[frame]
            row[:c], row[c:2 * c], row[2 * c:3 * c] = q[i], qd[i], qdd[i]

    def _past_frames(self) -> int:
        return max(2, int(round(PAST_SPAN_S / self._step_s)))

    def _emit(self, t: int, newest: int) -> StreamedFrame:
        """Finish frame ``t`` (global index) with the frames up to ``newest``."""
        if self._step is None:  # the lookahead became known with this frame
            from .export import frame_step_runner

            self._step = frame_step_runner(FrameStep(self.trainer, self.lookahead_frames), self.backend)
        step = self._step
        window, stride, n_windows, n_frames = step.window, step.stride, step.n_windows, step.n_frames
        hidden = np.zeros((n_windows, step.hidden_size), np.float32)
        mask = np.zeros((n_windows, n_frames), np.float32)
        weights = np.zeros(n_windows, np.float32)
        first = (t // stride) * stride
        starts = [first - i * stride for i in range(n_windows)]
        for i, start in enumerate(starts):
            if start < 0 or t >= start + window:
                continue
            if start in self._hidden:
                hidden[i] = self._hidden[start]
            weights[i] = min(t - start + 1, start + window - t)
            mask[i, :min(newest, start + window - 1) - t + 1] = 1.0
        rows = [min(t + k, newest) - self._base for k in range(n_frames)]
        features = np.asarray([self._features[r] for r in rows], dtype=np.float32)
        activations, forces, states = step(features, hidden, mask, weights)
        self._hidden = {start: states[i] for i, start in enumerate(starts)
                        if weights[i] > 0 and t + 1 < start + window}
        return StreamedFrame(time=self._time[t - self._base], activations=activations.astype(float),
                             forces=forces.astype(float))

    def _trim(self) -> None:
        """Forget frames no longer needed (kept: the final windows' span and the kinematics fits' past)."""
        keep = 2 * self.window + (self.lookahead_frames or 0) + self._past_frames() + 8
        drop = len(self._time) - keep
        if drop > 4 * keep:  # trim in chunks: fewer list copies
            del self._time[:drop], self._raw[:drop], self._features[:drop]
            self._base += drop


__all__ = ["StreamingPredictor", "StreamedFrame", "FrameStep", "local_polynomial", "check_stream_rate",
           "PAST_SPAN_S"]
