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
``bigru``, ``gru_layers=1``, the defaults; not ``cnn`` or ``mlp``). The stream's frames are the
network's ticks: a checkpoint with an internal rate (:attr:`~opensim_pinn.trainer.TrainConfig.rate`)
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

import logging
import math
import statistics
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .multipliers import require_activation_outputs

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
    actuator_controls, actuator_forces : ndarray or None, shape (n_actuators,)
        Reserve/residual actuator controls from the network's actuator head, and the
        forces (N or N m) = control x optimal force, in the checkpoint's actuator order,
        as ``predict`` writes them without ``--model``. ``None``: the checkpoint has
        no actuator head (no actuators, or written before it had one).
    compute_s : float
        Wall time of the :meth:`StreamingPredictor.push` call that finished the frame.
    """

    time: float
    activations: np.ndarray
    forces: np.ndarray
    actuator_controls: np.ndarray | None = None
    actuator_forces: np.ndarray | None = None
    compute_s: float = 0.0


class FrameStep(nn.Module):
    """The tensor work of finishing one streamed frame: network, activation bounds, muscle and actuator forces.

    Built once from the checkpoint, with what depends only on it precomputed
    (:class:`~opensim_pinn.fused.FusedNetwork`): the encoder with the input normalisation
    folded in, the emitted frame's GRU step of both directions as the GRU cell written out
    (with lookahead, the backward GRU over the lookahead frames as one ``torch.gru`` call), the
    muscle and actuator heads as one pair of matrix products, the muscle forces as one monomial
    evaluation and batched curves. Float32. Inputs of :meth:`forward`:

    - ``features`` (K, n_features): raw q (rad, m), qd, qdd, GRF (N) of the emitted
      frame and the next K - 1 frames (layout :func:`~opensim_pinn.network.feature_layout`;
      rows past the newest frame are ignored through ``lengths``);
    - ``hidden`` (n_windows, gru_hidden): forward GRU state of each window covering
      the frame, after the previous frame (zeros for a window that starts here);
    - ``lengths`` (n_windows,) int64: the frames the backward GRU of each window reads
      (available and inside the window, the frame included; 1 or more);
    - ``weights`` (n_windows,): the offline blending weight of each window (0: no window).

    Outputs: activations (n_muscles,), muscle forces (n_muscles,) N, actuator controls and
    forces (n_actuators,; N or N m: control x optimal force; empty without an actuator head),
    and the new forward states (n_windows, gru_hidden).
    """

    def __init__(self, trainer, lookahead_frames: int):
        super().__init__()
        from .fused import FusedNetwork

        check_streamable(trainer)
        self.window = streaming_window(trainer)
        self.stride = max(1, self.window // 2)
        self.n_windows = math.ceil(self.window / self.stride)
        self.n_frames = min(int(lookahead_frames), self.window - 1) + 1
        self.parts = FusedNetwork(trainer)
        self.n_features, self.hidden_size = self.parts.n_features, self.parts.hidden_size
        self.register_buffer("reversed_frames", torch.arange(self.n_frames).unsqueeze(1))  # (K, 1)
        self.register_buffer("window_columns", torch.arange(self.n_windows) - self.n_windows)

    def forward(self, features: torch.Tensor, hidden: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor):
        parts = self.parts
        frame = parts.encoder(features)  # (K, D)
        n_windows = hidden.shape[0]
        first = frame[:1].expand(n_windows, -1)
        recurrent = parts.first_step(first, hidden)  # (n_windows, 2H): forward, backward from the frame alone
        forward_state = recurrent[:, :self.hidden_size]
        if self.n_frames > 1:  # window i's backward GRU: frames lengths[i] - 1 down to 0 (time-major), then its output
            order = (lengths - 1 - self.reversed_frames).clamp(min=0)  # (K, n_windows)
            backward = parts.gru(frame.index_select(0, order.flatten()).reshape(self.n_frames, n_windows, -1),
                                 torch.zeros_like(hidden).unsqueeze(0), "backward")
            backward_state = backward.reshape(-1, self.hidden_size).index_select(0, lengths * n_windows
                                                                                + self.window_columns)
            recurrent = torch.cat([forward_state, backward_state], dim=-1)
        outputs = parts.heads(torch.cat([recurrent, first], dim=-1))  # (n_windows, M + A)
        share = weights / weights.sum()
        m = parts.n_muscles
        activations = torch.addcmul(parts.lower, parts.span, share @ torch.sigmoid(outputs[:, :m]))
        blended = share @ outputs[:, m:]
        c = parts.n_coordinates
        forces = parts.muscle_forces(features[0, :c], features[0, c:2 * c], activations)
        return activations, forces, blended * parts.control_scale, blended * parts.actuator_scale, forward_state


def check_streamable(trainer) -> None:
    """:class:`InputError` unless the checkpoint's network streams (a per-frame encoder, one GRU layer)."""
    from .fused import fusable

    config = trainer.network.config
    require_activation_outputs(trainer, "stream")
    if not fusable(trainer.network):
        raise InputError(f"this checkpoint's network ({config.architecture}, {config.gru_layers} GRU layers) "
                         "cannot stream: streaming needs a per-frame encoder (mjca or bigru) and one GRU layer")
    streaming_window(trainer)


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
        check_streamable(self.trainer)  # refuses networks that cannot stream, before any frame
        self.coordinates, self.muscles = list(self.trainer.coordinates), list(self.trainer.muscles)
        self.grf_labels = list(self.trainer.grf_labels)
        self.actuators = list(self.trainer.actuators) if self.trainer.network.actuator_head is not None else []
        """Actuators of :attr:`StreamedFrame.actuator_forces` (none without an actuator head)."""
        self.n_features = 3 * len(self.coordinates) + len(self.grf_labels)
        self.lookahead_frames: int | None = 0 if self.lookahead == 0 else None
        self._step = None
        self._step_s = 1.0  # the stream's first time step (s), once two frames have arrived
        self._past = self._past_frames()  # past samples in the kinematics fits, once the time step is known
        self._headed = self.trainer.network.actuator_head is not None
        # Buffered frames (rows 0 to _count - 1; grown by doubling, trimmed by _trim): time (s), raw q, and
        # the network input q, qd, qdd, grf (float32, final once emitted).
        self._count = 0
        self._time = np.empty(64)
        self._raw = np.empty((64, len(self.coordinates)))
        self._features = np.zeros((64, self.n_features), np.float32)
        self._filters: dict[tuple, np.ndarray] = {}  # cached local-polynomial filters of uniform time steps
        self._irregular = 0  # global index of the last frame whose time step is not the first one (within 1e-6)
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
        if self._count == 1 and self._base == 0:  # the second frame: the stream's time step
            self._step_s = time - self._time[0]
            self._past = self._past_frames()
            check_stream_rate(self.trainer, self._step_s)
            if self.lookahead_frames is None:
                self.lookahead_frames = int(round(self.lookahead / self._step_s))
        self._append(time, q, qd, qdd, grf)
        out = []
        newest = self._base + self._count - 1
        if self.lookahead_frames is not None and newest - self._next >= self.lookahead_frames:
            if not self.filtered_input:
                self._estimate(self._next, newest + 1)
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
        n_frames = self._base + self._count
        if self._next >= n_frames:
            return []
        remaining = np.arange(self._next, n_frames)
        if not self.filtered_input:
            self._estimate(self._next, n_frames)
        from .windows import windows

        network = self.trainer.network
        spans = [(a, b) for a, b in windows(n_frames, self.window) if b > self._next]
        if spans[0][0] < self._base:
            raise RuntimeError("stream buffer too short for the final windows")  # pragma: no cover
        features = self._features[:self._count]
        mean = self.trainer.feature_mean.astype(np.float32)
        std = self.trainer.feature_std.astype(np.float32)
        index = torch.tensor([list(range(a - self._base, b - self._base)) for a, b in spans])
        x = torch.as_tensor((features - mean) / std)
        with torch.inference_mode():
            logits, heads = network.sequence_outputs(network.frame_features(x.cpu()[None])[0][index])
            pieces = torch.sigmoid(logits) if heads is None else torch.cat([torch.sigmoid(logits), heads], -1)
            length = index.shape[1]
            ramp = torch.minimum(torch.arange(1, length + 1), torch.arange(length, 0, -1)).to(pieces)
            if len(spans) == 1 and spans[0] == (0, n_frames):
                ramp = torch.ones_like(ramp)
            total = pieces.new_zeros(len(features), pieces.shape[-1]).index_add_(
                0, index.reshape(-1), (pieces * ramp[:, None]).reshape(-1, pieces.shape[-1]))
            weight = pieces.new_zeros(len(features)).index_add_(0, index.reshape(-1), ramp.repeat(len(spans)))
        rows = remaining - self._base
        blended = (total[rows] / weight[rows, None]).numpy()
        n_muscles = len(self.muscles)
        lower, upper = (b.numpy() for b in self.trainer._bounds("cpu"))
        activations = lower + (upper - lower) * blended[:, :n_muscles]
        c = len(self.coordinates)
        kinematics = features[rows]
        with torch.inference_mode():
            forces = self.trainer.inference_muscle_model().muscle_forces(
                torch.as_tensor(kinematics[:, :c]), torch.as_tensor(kinematics[:, c:2 * c]),
                torch.as_tensor(activations, dtype=torch.float32)).numpy()
        controls = actuator_forces = [None] * len(rows)
        if heads is not None:
            optimal = {a.name: a.optimal_force for a in self.trainer.info.actuators}
            controls = blended[:, n_muscles:] * np.asarray(self.trainer.control_scale, float)
            actuator_forces = controls * np.array([optimal[a] for a in self.trainer.actuators])
        elapsed = clock.perf_counter() - began
        self._next = n_frames
        return [StreamedFrame(time=float(self._time[r]), activations=activations[i].astype(float),
                              forces=forces[i].astype(float), actuator_controls=controls[i],
                              actuator_forces=actuator_forces[i], compute_s=elapsed) for i, r in enumerate(rows)]

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
        if not (isinstance(time, (int, float, np.floating, np.integer)) and math.isfinite(time)):
            raise InputError(f"frame time must be a finite number of seconds, got {time!r}")
        if self._count and not time > self._time[self._count - 1]:
            raise InputError(f"frame time {time:.10g} s is not after the previous frame's "
                             f"{self._time[self._count - 1]:.10g} s")
        if grf is None and self.grf_labels:
            raise InputError("the network was trained with ground reaction forces; give each frame's GRF")
        if self.filtered_input and (qd is None or qdd is None):
            raise InputError("filtered_input=True: give each frame's qd and qdd with its q")
        if not self.filtered_input and (qd is not None or qdd is not None):
            raise InputError("qd and qdd are estimated in the stream; give them only with filtered_input=True")
        c, g = len(self.coordinates), len(self.grf_labels)
        derivatives = ((self._vector(time, qd, c, "qd"), self._vector(time, qdd, c, "qdd")) if self.filtered_input
                       else (None, None))
        return (self._vector(time, q, c, "q"), self._vector(time, grf, g, "grf"), *derivatives)

    @staticmethod
    def _vector(time: float, values, n: int, what: str) -> np.ndarray:
        """``values`` as a float array of ``n`` finite numbers, or a one-line error naming ``what``."""
        array = np.asarray(values if values is not None else (), dtype=float).reshape(-1)
        if array.shape != (n,):
            raise InputError(f"frame at {time:g} s: {what} has {array.size} values, the checkpoint expects {n}")
        if not math.isfinite(array.sum()) and not np.isfinite(array).all():  # the sum first: cheaper, mostly enough
            raise InputError(f"frame at {time:g} s: {what} has a NaN or infinite value")
        return array

    def _estimate(self, begin: int, end: int) -> None:
        """Kinematics of frames ``begin`` to ``end - 1`` (global indices) from the raw coordinates buffered so far.

        With uniform time steps (within 1e-6 of a step) the local polynomials are a fixed linear
        filter of the samples, computed once per frame pattern and then applied as one product.
        """
        past = self._past
        ahead = min(self.lookahead_frames or 0, past)  # a longer span than 2 x PAST_SPAN_S is too long for a cubic
        first = max(0, begin - self._base - past)  # only the samples the fits use
        n_samples, start, n = self._count - first, begin - self._base - first, end - begin
        degree = 3 if ahead else 2
        rows = slice(first + start, first + start + n)
        c = len(self.coordinates)
        if self._irregular <= self._base + first:  # no irregular step among the samples
            weights = self._filters.get((n_samples, start, n))
            if weights is None:  # (3 n, samples): q, qd, qdd rows of each frame's least-squares fit
                identity = local_polynomial(self._step_s * np.arange(n_samples), np.eye(n_samples),
                                            np.arange(start, start + n), past, ahead, degree, self._step_s * past)
                weights = self._filters[(n_samples, start, n)] = np.stack(identity, 1).reshape(-1, n_samples)
            self._features[rows, :3 * c] = (weights @ self._raw[first:self._count]).reshape(n, 3 * c)
        else:
            self._features[rows, :3 * c] = np.concatenate(local_polynomial(
                self._time[first:self._count], self._raw[first:self._count], np.arange(start, start + n), past,
                ahead, degree, self._step_s * past), 1)

    def _past_frames(self) -> int:
        return max(2, int(round(PAST_SPAN_S / self._step_s)))

    def _emit(self, t: int, newest: int) -> StreamedFrame:
        """Finish frame ``t`` (global index) with the frames up to ``newest``."""
        if self._step is None:  # the lookahead became known with this frame
            from .export import frame_step_runner

            self._step = frame_step_runner(FrameStep(self.trainer, self.lookahead_frames), self.backend)
        step = self._step
        window, stride, n_frames = step.window, step.stride, step.n_frames
        hidden, lengths, weights = step.hidden, step.lengths, step.weights  # the step's inputs, written in place
        hidden.fill(0.0)
        lengths.fill(1)
        weights.fill(0.0)
        starts = range((t // stride) * stride, (t // stride) * stride - step.n_windows * stride, -stride)
        for i, start in enumerate(starts):
            if start < 0 or t >= start + window:
                continue
            state = self._hidden.get(start)
            if state is not None:
                hidden[i] = state
            weights[i] = min(t - start + 1, start + window - t)
            lengths[i] = min(newest, start + window - 1, t + n_frames - 1) - t + 1
        row, last = t - self._base, newest - self._base
        if row + n_frames <= last + 1:
            step.features[:] = self._features[row:row + n_frames]
        else:  # the stream's first frames: fewer than K available (ignored rows)
            step.features[:] = self._features[np.minimum(np.arange(row, row + n_frames), last)]
        activations, forces, controls, actuator_forces, states = step.run()
        states = states.copy()  # the next run overwrites its outputs
        self._hidden = {start: states[i] for i, start in enumerate(starts)
                        if weights[i] > 0 and t + 1 < start + window}
        headed = self._headed
        return StreamedFrame(time=float(self._time[row]), activations=activations.astype(float),
                             forces=forces.astype(float),
                             actuator_controls=controls.astype(float) if headed else None,
                             actuator_forces=actuator_forces.astype(float) if headed else None)

    def _append(self, time: float, q, qd, qdd, grf) -> None:
        if self._count == len(self._time):  # full: double the buffers
            self._time, self._raw, self._features = (np.concatenate([b, np.zeros_like(b)])
                                                     for b in (self._time, self._raw, self._features))
        i, c = self._count, len(q)
        if i and abs(time - self._time[i - 1] - self._step_s) > 1e-6 * self._step_s:
            self._irregular = self._base + i
        self._time[i], self._raw[i] = time, q
        self._features[i, :c] = q
        if self.filtered_input:
            self._features[i, c:2 * c], self._features[i, 2 * c:3 * c] = qd, qdd
        self._features[i, 3 * c:] = grf
        self._count += 1

    def _trim(self) -> None:
        """Forget frames no longer needed (kept: the final windows' span and the kinematics fits' past)."""
        keep = 2 * self.window + (self.lookahead_frames or 0) + self._past + 8
        drop = self._count - keep
        if drop > 4 * keep:  # trim in chunks: fewer copies
            for buffer in (self._time, self._raw, self._features):
                buffer[:keep] = buffer[drop:self._count]
            self._count = keep
            self._base += drop


__all__ = ["StreamingPredictor", "StreamedFrame", "FrameStep", "local_polynomial", "check_stream_rate",
           "PAST_SPAN_S"]
