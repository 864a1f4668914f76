"""Label-free training of the MJCA-BiGRU network on OpenSim trials.

The network maps a trial's kinematics (and ground reaction forces) to muscle
activations; the loss is :class:`opensim_pinn.loss.PhysicsLoss`, which with its
default weights *is* OpenSim Static Optimization's objective. For given
activations the loss covers the remaining generalised forces with the least-cost
reserve/residual controls in closed form (:meth:`~opensim_pinn.loss.PhysicsLoss.controls`),
as SO would. So the network that minimises the loss reproduces SO, frame by
frame, without ever seeing an SO result.

The network's second head (:attr:`~opensim_pinn.network.MJCABiGRU.actuator_head`)
learns those least-cost controls, so that predictions need no inverse dynamics:
a label-free auxiliary term, ``control_fit`` in :attr:`Trainer.history`, the
per-frame sum over actuators of ``((u_head - u*) / s)^2`` with ``u*`` the
least-cost controls for the network's own activations (detached) and ``s`` each
actuator's scale (:attr:`Trainer.control_scale`). The head reads the trunk's
features detached and has its own weights (Adam's steps are per weight), so the
term leaves the activations' training exactly as it was; it is not in ``total``.

How the optimisation is made to converge (the loss is unchanged):

- Activations are ``min_control + (max_control - min_control) * sigmoid(logits)``:
  inside the muscles' bounds by construction.
- Per frame, the loss is a quadratic in the activations whose curvature ``H``
  (the per-frame Hessian, constant: it depends on the trial, not on the network)
  is badly conditioned where actuators are weak or absent: the dynamics term then
  acts as a stiff equality constraint, along which the effort term is barely
  minimised by plain gradients. Training therefore back-propagates a
  Levenberg-Marquardt direction in logit space, ``(S H S + lambda diag H)^-1 S g``
  (``g`` the gradient of the per-frame loss with respect to the activations, ``S``
  the sigmoid's slope) instead of ``S g``. Both vanish at the same points, the
  minimisers of the loss; the preconditioned one gets there in hundreds of epochs
  instead of hundreds of thousands. ``lambda`` goes from 1 (a diagonally scaled
  gradient, safe from a random start) to :attr:`TrainConfig.damping` over the
  first half of training. Logits beyond +-:attr:`TrainConfig.logit_limit` are
  pulled back, so that a muscle resting at its bound (a saturated sigmoid) can
  still be switched on where other frames need it.
- With :attr:`TrainConfig.outputs` ``"multipliers"`` the muscle head outputs SO's
  multipliers, one per coordinate, and the activations are ``clip(M^T lam)`` from
  the muscle matrix at each frame; training then back-propagates a damped step of
  SO's dual in those outputs (:mod:`opensim_pinn.multipliers`) instead.
- With ``"forces"`` the network reads the external loads' generalised forces too and
  outputs the generalised forces of motion, one per coordinate, fitted to the training
  trials' inverse dynamics; the activations and controls come from Static
  Optimization's problem solved per frame (:mod:`opensim_pinn.motion_forces`); the history's
  ``dynamics`` and ``total`` are then that fit's mean squared error, in units of each coordinate's RMS.
- Trials are resampled to the internal rate :attr:`TrainConfig.rate` (Hz;
  :mod:`opensim_pinn.timebase`) and cut into windows of :attr:`TrainConfig.window_s`
  seconds that overlap by half (the BiGRU's time window); the per-frame encoder runs
  once per tick, the BiGRU per window; predictions blend overlapping windows and are
  interpolated back to the trial's own frames.
- Adam, linear warm-up then cosine decay of the learning rate. Full batch (every
  window of every trial at each step) unless :attr:`TrainConfig.batch_windows`
  is smaller than the corpus: each epoch then shuffles the windows of all
  trials (a :class:`torch.utils.data.DistributedSampler`, seeded per epoch, so a
  resumed run draws the same batches) and takes one step per batch, with the
  curvatures computed per batch (memory bounded by the batch, not the corpus).
  Under ``torchrun`` the batches are shared among the processes
  (:mod:`opensim_pinn.distributed`).

The loss terms in :attr:`Trainer.history` are means over the frames of the training
windows (a frame in two overlapping windows counts twice).

Measured (2 CPU cores, default settings, median R^2 of muscle forces against
OpenSim SO on the training trial): gait10dof18musc walk (151 frames, 18 muscles)
0.998 in about 15 s of training; gait2392 (151 frames, 92 muscles) 0.99 in about
1 min; arm26 0.997.

Examples
--------
>>> trainer = Trainer(TrainConfig(epochs=500)).fit([trial], info, muscle_model,
...                                                polynomials=polynomials)   # doctest: +SKIP
>>> activations = trainer.predict(trial)          # (n_frames, n_muscles)     # doctest: +SKIP
>>> trainer.save("run/checkpoint.pt")                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__, motion_forces
from .errors import InputError, first_line
from .external_loads import check_same_loads, labels_by_body, loads_description, loads_mismatch
from .loss import PhysicsLoss, PhysicsTargets, physics_targets
from .multipliers import OUTPUTS, dual_curvature, dual_direction, multiplier_activations, multiplier_scale
from .network import NetworkConfig, build_network
from .newton import curvature, newton_direction
from .snapshots import DEFAULT_SNAPSHOT_EVERY
from .storage import write_atomically
from .timebase import at_rate, interpolate, resample_trial, ticks, to_frames
from .windows import blend, window_batches, window_index

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 1000
"""Training epochs (full-batch steps) when none are given: enough for every shared case."""

DEFAULT_VALIDATE_EVERY = 10
"""Epochs between held-out validations when training with validation trials."""

DEFAULT_INPUT_NOISE = 0.2
"""Default :attr:`TrainConfig.input_noise`. Measured on frames the network never saw (gait10dof18musc walk,
trained on 0-1.25 s, tested on 1.25-2.5 s against the fast SO solver, seeds 0-2,
benchmarks/generalisation_search.py): median R^2 0.87 (0.83-0.92) instead of 0.79 (0.70-0.85) without
noise; training frames 0.998 (gait2392: 0.991). 0.3 and more cost training-frame agreement (gait2392 0.989
at 0.3) for no further held-out gain up to 0.4."""

DEFAULT_RATE_HZ = 100.0
"""The network's internal rate when none is given (:attr:`TrainConfig.rate`; measured in the README)."""

CHECKPOINT_FORMAT = "opensim-pinn-checkpoint"
CHECKPOINT_VERSION = 2
"""2: the network works at an internal rate (``train_config`` ``rate``, ``window_s``); 1 was frame-based."""

HISTORY_COLUMNS = ("epoch", "wall_s", "learning_rate", "damping", "dynamics", "performance", "boundary",
                   "total", "control_fit")
VALIDATION_COLUMNS = ("validation_dynamics", "validation_performance", "validation_boundary", "validation_total")
"""History columns of the held-out physics loss (epochs with a validation, when trained with one)."""


@dataclass
class TrainConfig:
    """Settings of :class:`Trainer`.

    Attributes
    ----------
    epochs : int
        Optimiser steps; each uses every window of every trial.
    time_limit_s : float or None
        Stop after this many seconds of training; the learning-rate and damping
        schedules then follow elapsed time when it runs ahead of the epochs.
    learning_rate : float
        Peak Adam learning rate.
    warmup : float
        Fraction of the epochs with a linear learning-rate warm-up.
    rate : float or None
        The network's internal rate (Hz): trials are resampled to it for training
        and prediction, and outputs interpolated back to each trial's own frames
        (:mod:`opensim_pinn.timebase`), so that the network works in seconds, not
        frames. ``None``: frame-based, the trials' frames as they are (checkpoints
        written before opensim-pinn had ``rate`` load so).
    window_s : float or None
        Seconds per training window, with ``rate``: ``round(window_s * rate)`` ticks.
        Longer trials are cut into windows that overlap by half, shorter ones are
        used whole; ``None``: whole trials.
    window : int or None
        Frames per window when ``rate`` is None (frame-based checkpoints).
    seed : int
        Seeds the network's initial weights (the training is deterministic on CPU).
    device : str
        ``"cpu"`` or ``"cuda"``.
    loss_weights : dict or None
        Weights of the loss terms (see :data:`opensim_pinn.loss.DEFAULT_LOSS_WEIGHTS`).
    precondition : bool
        Use the curvature-preconditioned direction (see the module docstring);
        ``False``: plain gradients of the loss.
    initial_damping, damping : float
        Levenberg-Marquardt damping at the start and from half-way through training.
    threads : int or None
        CPU threads torch uses while training (restored after). The training step's
        operations are small: one thread is as fast as two on an idle machine, and
        tens of times faster when other programs keep the cores busy (threads then
        wait for each other at every operation). ``None``: torch's setting.
        ``predict`` and ``compare`` time inference on one thread too
        (:data:`opensim_pinn.predict.INFERENCE_THREADS`, their ``--threads``).
    input_noise : float
        Standard deviation of Gaussian noise added to the normalised inputs at
        every training step (in units of each feature's standard deviation over
        the training frames): a regulariser for frames unlike the training ones.
        Seeded by ``seed`` and the epoch: a resumed run draws the noise the uninterrupted one would.
    logit_limit : float
        Logits beyond +-this are pulled back (with ``precondition``): a muscle at
        its bound sits within ``sigmoid(-logit_limit)`` of it instead of drifting
        to a logit where no gradient can bring it back.
    outputs : str
        What the muscle head outputs (:data:`opensim_pinn.multipliers.OUTPUTS`): ``"activations"``, one
        logit per muscle; ``"multipliers"``, SO's multipliers, one per coordinate, with the activations
        ``clip(M^T lam)`` from the muscle matrix at each frame (:mod:`opensim_pinn.multipliers`; trained by
        a majorise-minimise step of SO's dual; not for streaming or export); ``"forces"``, the generalised
        forces of motion, one per coordinate, with the activations from Static Optimization solved per frame
        (:mod:`opensim_pinn.motion_forces`; not for streaming or export).
    batch_windows : int or None
        Windows per optimiser step, drawn across all trials (in all processes
        together under ``torchrun``); ``None``, or at least the corpus's windows:
        full batch, one step per epoch.
    network : NetworkConfig
    """

    epochs: int = DEFAULT_EPOCHS
    time_limit_s: float | None = None
    learning_rate: float = 3e-3
    warmup: float = 0.05
    rate: float | None = DEFAULT_RATE_HZ
    window_s: float | None = 0.16
    window: int | None = 16
    seed: int = 0
    device: str = "cpu"
    loss_weights: dict | None = None
    precondition: bool = True
    initial_damping: float = 1.0
    damping: float = 1e-6
    logit_limit: float = 10.0
    input_noise: float = DEFAULT_INPUT_NOISE
    threads: int | None = 1
    batch_windows: int | None = None
    outputs: str = "activations"
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        if self.outputs not in OUTPUTS:
            raise ValueError(f"outputs {self.outputs!r}: choose one of {', '.join(OUTPUTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def window_frames(self) -> int | None:
        """Frames (ticks of :attr:`rate`, or trial frames without one) per BiGRU window; None: whole trials."""
        if self.rate is None:
            return self.window
        return None if self.window_s is None else max(2, int(round(self.window_s * self.rate)))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        from dataclasses import fields

        known = {f.name for f in fields(cls)}
        data = {"rate": None, "window_s": None,  # written before the internal rate: frame-based
                **{k: v for k, v in data.items() if k in known}}
        network = {k: v for k, v in data.get("network", {}).items() if k in {f.name for f in fields(NetworkConfig)}}
        data["network"] = NetworkConfig(**network)
        return cls(**data)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous setting."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_device(device: str) -> torch.device:
    """The torch device for ``device``; :class:`InputError` when CUDA is asked for but absent."""
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is available; use --device cpu")
    elif str(device) != "cpu":
        raise InputError(f"--device {device}: choose cpu or cuda")
    return torch.device(device)


def trial_features(kinematics) -> np.ndarray:
    """Network input of a trial, shape (n_frames, 3 * n_coordinates + n_grf): q, qd, qdd, GRF."""
    return np.concatenate([kinematics.q, kinematics.qd, kinematics.qdd, kinematics.grf], axis=1)


def control_scale(targets: list[PhysicsTargets]) -> np.ndarray:
    """Scale of each actuator's control, shape (n_actuators,): the actuator head outputs controls in these units.

    The RMS over the frames of every trial of the least-cost controls with the
    muscles off (the whole inverse-dynamics force on the actuators), 1 where
    that is 0: right for residuals (muscles do not act on them), an upper
    bound for reserves.
    """
    controls = torch.cat([(t.reserve_solve @ t.tau.unsqueeze(-1)).squeeze(-1) for t in targets])
    rms = controls.pow(2).mean(0).sqrt().cpu().numpy().astype(float)
    return np.where(rms > 1e-9, rms, 1.0)


class Trainer:
    """Fit, use and store the network (scikit-learn style: the constructor only stores settings).

    Parameters
    ----------
    config : TrainConfig, optional
    progress : bool
        Show a progress bar with the loss terms while fitting.

    Attributes (after :meth:`fit` or :meth:`load`)
    ----------------------------------------------
    network : MJCABiGRU
    info : ModelInfo
    muscle_model : MusculoskeletalModel
    polynomials : list of PathPolynomial
    feature_mean, feature_std : ndarray, shape (n_features,)
        Input normalisation.
    coordinates, muscles, actuators, grf_labels : list of str
    control_scale : ndarray, shape (n_actuators,)
        Units of the actuator head's outputs (:func:`control_scale`).
    load_kinematics, motion_scale, actuator_map
        With ``"forces"`` outputs (else None): the loads' generalised forces
        (:class:`~opensim_pinn.body_kinematics.LoadKinematics`; None without loads), the units of the
        network's outputs (n_coordinates,) and the actuators' generalised forces per unit control
        (n_actuators, n_coordinates; :func:`~opensim_pinn.motion_forces.constant_actuator_map`).
    lowpass : float or None
        Low-pass cut-off (Hz) of the training trials' coordinates (predictions use the same).
    history : list of dict
        One row per epoch: :data:`HISTORY_COLUMNS` (and :data:`VALIDATION_COLUMNS` on validated epochs).
    best_epoch : int or None
        With validation trials: the epoch whose weights the network holds (lowest held-out loss).
    state_variables : list of str or None
        The model's OpenSim state variable names (from the model description),
        so that predicted states files hold exactly the model's muscle states.
    optimizer : torch.optim.Adam
        After :meth:`fit` only; its state goes into training snapshots (see :meth:`training_state`).
    """

    def __init__(self, config: TrainConfig | None = None, *, progress: bool = True):
        self.config = config if config is not None else TrainConfig()
        self.progress = progress

    # ---- fitting ------------------------------------------------------------------
    def fit(self, trials, info, muscle_model, *, polynomials=None, resume: dict | None = None,
            snapshot=None, snapshot_every: int = DEFAULT_SNAPSHOT_EVERY, validation=None,
            validate_every: int = DEFAULT_VALIDATE_EVERY, distributed=None) -> "Trainer":
        """Train on ``trials`` (list of :class:`~opensim_pinn.trial.Trial` of the model ``info``).

        Parameters
        ----------
        trials : list of Trial
            Same coordinates, actuators and GRF components in every trial; any
            sampling rates (resampled to :attr:`TrainConfig.rate` first: the loss
            and :attr:`history` are over the internal rate's ticks).
        info : ModelInfo
        muscle_model : MusculoskeletalModel
        polynomials : list of PathPolynomial, optional
            The path polynomials of ``muscle_model``; needed by :meth:`save`.
        resume : dict, optional
            :meth:`training_state` of an interrupted fit with the same trials and
            settings: training goes on after its last epoch, as if never stopped
            (exactly so on the CPU: the batches of an epoch are drawn from a
            generator seeded by ``config.seed`` and the epoch, and the network
            draws no random numbers once initialised, unless
            ``config.network.dropout`` > 0).
        snapshot : callable, optional
            Called with :meth:`training_state` before the first epoch and then
            every ``snapshot_every`` epochs.
        validation : list of Trial, optional
            Held-out trials of the model: every ``validate_every`` epochs and at
            the last, the physics loss of the network's predictions on them (label-free,
            means over their frames) goes into :attr:`history` (:data:`VALIDATION_COLUMNS`),
            and the network ends with the weights of the validated epoch with the
            lowest validation ``total`` (:attr:`best_epoch`).
        distributed : opensim_pinn.distributed.Distributed, optional
            This process's place under ``torchrun``: each takes its share of every
            batch, DistributedDataParallel averages the gradients.
        """
        config = self.config
        device = check_device(config.device)
        if distributed is not None:
            device = distributed.device_for(device)
        trials = [resample_trial(t, config.rate) for t in trials]  # the internal rate (timebase)
        if not trials:
            raise ValueError("no trials to train on")
        self._set_model(info, muscle_model, polynomials, trials)
        forces_out = config.outputs == "forces"
        self.load_kinematics = self.motion_scale = self.actuator_map = None
        if forces_out:
            from .static_opt import check_actuated

            for trial in trials:  # SO's equations must have a solution at every frame
                check_actuated(trial, info)
                if self.grf_labels:
                    motion_forces.check_loads(trial, f"trial {trial.name}")
            if self.grf_labels:  # without loads, the network learns the whole generalised forces
                self.load_kinematics = motion_forces.build_load_kinematics(info.path, trials, self.coordinates)
        features = [self._raw_features(t) for t in trials]
        stacked = np.concatenate(features)
        self.feature_mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        self.feature_std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(self.feature_mean)), std, 1.0)

        loss = self._loss(device)
        corpus = []  # per trial: inputs (n_frames, n_features), window frame indices (n_windows, window), targets
        physics = [self.targets(trial) for trial in trials]
        self.control_scale = control_scale(physics)
        if forces_out:  # the targets: the generalised forces of motion, tau + Q_loads (motion_forces)
            motion = [t.tau + f[:, -len(self.coordinates):] for t, f in zip(trials, features)]
            self.motion_scale = motion_forces.rms_scale(motion)
            spanned = {c for m in info.muscles for c in m.coordinates}
            self.actuator_map = motion_forces.constant_actuator_map(
                trials, np.array([c in spanned for c in self.coordinates]))
            physics = [replace(p, tau=torch.as_tensor(m)) for p, m in zip(physics, motion)]
        for trial, feature, exact in zip(trials, features, physics):
            corpus.append((torch.as_tensor(self._normalize(feature), dtype=torch.float32, device=device),
                           window_index(len(trial.time), config.window_frames(), device=device),
                           exact.to(device=device, dtype=torch.float32)))
        self.multiplier_scale = multiplier_scale(loss, physics) if config.outputs == "multipliers" else None
        del physics, exact  # the float64 copies are not needed while training

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.network = build_network(config.network, len(self.coordinates), self._n_load_inputs(),
                                         self._n_outputs(), 0 if forces_out else len(self.actuators)).to(device)
        held_out = self._validation_data(validation) if validation else None
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate)
        self.history, self.best_epoch, self._best = [], None, None
        if resume is not None:
            self.network.load_state_dict(resume["network_state"])
            self.optimizer.load_state_dict(resume["optimizer_state"])
            self.history = list(resume["history"])
            self._best = resume.get("best")
        with torch_threads(config.threads):
            self._train(corpus, loss, snapshot, snapshot_every, held_out, validate_every, distributed)
        if self._best is not None:  # the validated epoch with the lowest held-out loss
            self.network.load_state_dict(self._best["network_state"])
            self.best_epoch = self._best["epoch"]
        self.network.eval()
        return self

    def training_state(self) -> dict:
        """Where training stands after the last epoch of :attr:`history`: what ``fit(resume=...)`` continues from.

        The optimizer's tensors are the live ones (the next epoch changes them): save the state at once.
        """
        return {"epochs_done": len(self.history),
                "network_state": {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()},
                "optimizer_state": self.optimizer.state_dict(), "history": list(self.history), "best": self._best}

    def _train(self, corpus, loss: PhysicsLoss, snapshot, snapshot_every: int, held_out, validate_every: int,
               distributed) -> None:
        from tqdm.auto import tqdm

        config = self.config
        lower, upper = loss.min_control, loss.max_control
        scale = torch.as_tensor(self.control_scale, dtype=torch.float32, device=lower.device)
        multipliers, forces_out = config.outputs == "multipliers", config.outputs == "forces"
        if multipliers:
            lam_scale = torch.as_tensor(self.multiplier_scale, dtype=torch.float32, device=lower.device)
        if forces_out:
            motion_scale = torch.as_tensor(self.motion_scale, dtype=torch.float32, device=lower.device)
        counts = [index.shape[0] for _, index, _ in corpus]
        world = 1 if distributed is None else distributed.world_size
        full_batch = distributed is None and (config.batch_windows is None or config.batch_windows >= sum(counts))
        if full_batch:  # one step per epoch; the curvatures of the whole corpus are computed once
            groups = [(x, index, target[index], self._curvature(loss, target)[index])
                      for x, index, target in corpus]
            n_steps = 1
        else:
            module = _WindowNetwork(self.network)
            module = module if distributed is None else distributed.wrap(module)
            n_steps = len(window_batches(counts, config.batch_windows, config.seed, 0,
                                         rank=0 if distributed is None else distributed.rank, world=world))
        total_steps = config.epochs * n_steps
        warmup_steps = max(1, int(config.warmup * total_steps))
        first = len(self.history)
        began = time.perf_counter() - (self.history[-1]["wall_s"] if self.history else 0.0)
        bar = tqdm(total=config.epochs, initial=first, desc="training", unit="epoch", disable=not self.progress,
                   leave=False, mininterval=0.5)
        self.network.train()
        names = ("dynamics", "performance", "boundary", "total", "control_fit")
        noise = torch.Generator(device=lower.device)

        def noisy(number: int, x: torch.Tensor) -> torch.Tensor:
            """Trial ``number``'s inputs (n_frames, n_features) with this epoch's input noise: seeded by the seed,
            the epoch and the trial, so that resumed runs, minibatches and processes all draw the same noise."""
            if not config.input_noise:
                return x
            noise.manual_seed(config.seed * 1_000_003 + epoch + 7_919 * number)
            return x + config.input_noise * torch.randn(x.shape, generator=noise, dtype=x.dtype, device=x.device)

        try:
            for epoch in range(first, config.epochs):
                if snapshot is not None and epoch % snapshot_every == 0:
                    snapshot(self.training_state())
                elapsed = time.perf_counter() - began
                stop = config.time_limit_s is not None and elapsed >= config.time_limit_s
                if distributed is not None:  # every process stops at the same epoch
                    stop = bool(distributed.sum(torch.tensor([float(stop)]))[0] > 0)
                if stop:
                    log.info("training: time limit reached after %d epochs (%.0f s)", epoch, elapsed)
                    break
                if full_batch:
                    steps = [None]
                else:
                    steps = window_batches(counts, config.batch_windows, config.seed, epoch,
                                           rank=0 if distributed is None else distributed.rank, world=world)
                sums = torch.zeros(len(names) + 1, dtype=torch.float64)  # frame-weighted loss terms, frames
                for number, step in enumerate(steps):
                    done = epoch * n_steps + number
                    progress = done / total_steps
                    if config.time_limit_s is not None:
                        progress = max(progress, elapsed / config.time_limit_s)
                    rate = config.learning_rate * min(1.0, (done + 1) / warmup_steps) \
                        * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
                    damping = config.initial_damping * (config.damping / config.initial_damping) ** min(
                        1.0, progress / 0.5)
                    if number == 0:
                        epoch_rate, epoch_damping = rate, damping
                    for group in self.optimizer.param_groups:
                        group["lr"] = rate
                    self.optimizer.zero_grad(set_to_none=True)
                    if full_batch:
                        n_frames = sum(index.numel() for _, index, _, _ in groups)
                        pieces = ((self._window_outputs(noisy(trial, x), index), target, hessian)
                                  for trial, (x, index, target, hessian) in enumerate(groups))  # one trial's graph at a time
                    else:
                        inputs, targets, hessians = self._batch(corpus, step, loss, noisy)
                        n_frames = sum(t.tau.shape[0] * t.tau.shape[1] for t in targets)
                        if distributed is not None:  # the frames of the whole batch, all processes together
                            n_frames = int(distributed.sum(torch.tensor([float(n_frames)]))[0])
                        pieces = zip(module(inputs), targets, hessians)
                    totals = dict.fromkeys(names, 0.0)
                    objective, mine = 0.0, 0
                    for (logits, head), target, hessian in pieces:
                        frames = logits.shape[0] * logits.shape[1]
                        mine += frames
                        share = frames / n_frames
                        if forces_out:  # least squares on the generalised forces of motion, in their RMS units
                            fit = ((logits - target.tau / motion_scale) ** 2).sum(-1).mean()
                            totals["dynamics"] += share * float(fit.detach())
                            totals["total"] += share * float(fit.detach())
                            part = fit * share
                        else:
                            if multipliers:  # logits: the multipliers in units of lam_scale; hessian: dual_curvature
                                activations = multiplier_activations(lam_scale * logits, target.muscle_matrix,
                                                                     lower, upper)
                            else:
                                slope = torch.sigmoid(logits)
                                activations = lower + (upper - lower) * slope
                            terms = loss(activations, target)
                            for name in terms:
                                totals[name] += share * float(terms[name].detach())
                            control_fit = logits.new_zeros(())
                            if head is not None:  # the actuator head's auxiliary term (see the module docstring)
                                with torch.no_grad():
                                    least_cost, _ = loss.controls(activations, target)
                                control_fit = ((head - least_cost / scale) ** 2).sum(-1).mean()
                                totals["control_fit"] += share * float(control_fit.detach())
                            if multipliers:  # SO's dual, majorise-minimise step (opensim_pinn.multipliers)
                                with torch.no_grad():
                                    direction = dual_direction(logits, lam_scale, activations, target, hessian,
                                                               damping)
                                part = (logits * direction).sum().div(n_frames) + share * control_fit
                            elif config.precondition:
                                # Gradient of each frame's own loss, then the damped Newton direction in logit space.
                                gradient, = torch.autograd.grad(terms["total"] * frames, activations, retain_graph=True)
                                with torch.no_grad():
                                    direction = newton_direction(gradient, (upper - lower) * slope * (1 - slope),
                                                                  hessian, damping)
                                    direction += torch.sign(logits) * torch.relu(logits.abs() - config.logit_limit)
                                part = (logits * direction).sum().div(n_frames) + share * control_fit
                            else:
                                part = (terms["total"] + control_fit) * share
                        if full_batch:
                            part.backward()
                        else:  # one backward per step (DistributedDataParallel's all-reduce); it averages
                            objective = objective + part * world  # over processes: scaled to the batch's sum
                    if not full_batch:
                        objective.backward()
                    self.optimizer.step()
                    sums += torch.tensor([*(totals[name] * n_frames for name in names), mine],
                                         dtype=torch.float64)  # this process's frame-weighted sums, frames
                if distributed is not None:
                    sums = distributed.sum(sums)
                totals = {name: float(sums[i] / sums[-1]) for i, name in enumerate(names)} \
                    if n_steps > 1 or distributed is not None else totals
                row = {"epoch": epoch + 1, "wall_s": round(time.perf_counter() - began, 3),
                       "learning_rate": epoch_rate, "damping": epoch_damping, **totals}
                if held_out is not None and ((epoch + 1) % validate_every == 0 or epoch == config.epochs - 1):
                    row.update(self._validation_loss(held_out, loss))
                    if self._best is None or row["validation_total"] < self._best["total"]:
                        self._best = {"epoch": epoch + 1, "total": row["validation_total"],
                                      "network_state": {k: v.detach().cpu().clone()
                                                        for k, v in self.network.state_dict().items()}}
                self.history.append(row)
                bar.update(1)
                if epoch % 10 == 0 or epoch == config.epochs - 1:
                    bar.set_postfix({k[:4]: f"{v:.4g}" for k, v in totals.items()}, refresh=False)
        finally:
            bar.close()
        last = self.history[-1] if self.history else {}
        log.info("training: %d epochs in %.1f s, loss %s", len(self.history), time.perf_counter() - began,
                 ", ".join(f"{k} {last.get(k, float('nan')):.4g}" for k in ("dynamics", "performance", "total")))

    def _batch(self, corpus, step, loss: PhysicsLoss, noisy):
        """Network inputs (n_windows, window, n_features), targets and curvatures (n_windows, window, M, M)
        of the (trial, window) pairs ``step``, one of each per window length; ``noisy(trial, x)`` gives a
        trial's inputs with the epoch's input noise (each frame's noise the same in every window).

        The curvatures (:meth:`_curvature`) are computed here, for the batch's frames only: memory follows
        the batch, not the corpus.
        """
        by_trial: dict[int, list[int]] = {}
        for trial, window in step:
            by_trial.setdefault(trial, []).append(window)
        by_length: dict[int, tuple[list, list, list]] = {}
        for trial, chosen in by_trial.items():
            x, index, target = corpus[trial]
            x = noisy(trial, x)
            frames = index[torch.tensor(chosen, device=index.device)]
            hessian = self._curvature(loss, target[frames.reshape(-1)])
            hessian = hessian.reshape(*frames.shape, *hessian.shape[-2:])
            inputs, targets, hessians = by_length.setdefault(frames.shape[1], ([], [], []))
            inputs.append(x[frames])
            targets.append(target[frames])
            hessians.append(hessian)
        return ([torch.cat(inputs) for inputs, _, _ in by_length.values()],
                [_concatenate(targets) for _, targets, _ in by_length.values()],
                [torch.cat(hessians) for _, _, hessians in by_length.values()])

    def _validation_data(self, trials) -> list[tuple[torch.Tensor, np.ndarray, PhysicsTargets]]:
        """Normalised features, times (s) and float32 loss targets of held-out trials at the internal rate,
        on the network's device."""
        device = next(self.network.parameters()).device
        data = []
        for trial in (resample_trial(t, self.config.rate) for t in trials):
            if list(trial.actuators) != self.actuators:
                raise InputError(f"validation trial {trial.name}: actuators differ from the training trials'; "
                                 "prepare it with the same reserves")
            self.check_kinematics(trial)
            data.append((self.features(trial), trial.time,
                         self.targets(trial).to(device=device, dtype=torch.float32)))
        return data

    def _validation_loss(self, held_out, loss: PhysicsLoss) -> dict:
        """The physics loss terms of the network's predictions on held-out trials, means over their frames."""
        self.network.eval()
        sums, n_frames = dict.fromkeys(VALIDATION_COLUMNS, 0.0), 0
        for features, times, target in held_out:
            terms = loss(self.activations(features, times), target)
            for column in VALIDATION_COLUMNS:
                sums[column] += features.shape[0] * float(terms[column.removeprefix("validation_")])
            n_frames += features.shape[0]
        self.network.train()
        return {column: value / n_frames for column, value in sums.items()}

    # ---- prediction ---------------------------------------------------------------
    def predict(self, kinematics) -> np.ndarray:
        """Muscle activations for a trial, shape (n_frames, n_muscles), within each muscle's bounds.

        ``kinematics`` is a :class:`~opensim_pinn.trial.Kinematics` (or Trial) of
        the same model, with the GRF components the network was trained with.
        Trials longer than the training window are predicted window by window
        and blended where windows overlap.
        """
        self._check_fitted()
        self.check_kinematics(kinematics)
        return self.activations(self.features(kinematics), kinematics.time).cpu().numpy().astype(float)

    def features(self, kinematics) -> torch.Tensor:
        """Normalised network input of a trial, (n_frames, n_features), on the network's device.

        The trial's GRF components are taken in the network's order (they are matched by body and
        frame, see :mod:`opensim_pinn.external_loads`; :meth:`check_kinematics` checks them).
        """
        device = next(self.network.parameters()).device
        return torch.as_tensor(self._normalize(self._raw_features(kinematics)), dtype=torch.float32, device=device)

    def _raw_features(self, kinematics) -> np.ndarray:
        """:func:`trial_features` with the GRF components in the network's order; with ``"forces"`` outputs,
        then the loads' generalised forces (n_coordinates, :func:`~opensim_pinn.motion_forces.load_forces`)."""
        labels = list(kinematics.grf_labels)
        features = trial_features(kinematics)
        if labels != self.grf_labels and set(labels) == set(self.grf_labels):
            grf = kinematics.grf[:, [labels.index(label) for label in self.grf_labels]]
            features = np.concatenate([features[:, :3 * len(self.coordinates)], grf], axis=1)
        if self.config.outputs == "forces":
            loads = (np.zeros(kinematics.q.shape) if self.load_kinematics is None
                     else motion_forces.load_forces(self.load_kinematics, kinematics, f"trial {kinematics.name}"))
            features = np.concatenate([features, loads], 1)
        return features

    def outputs(self, features: torch.Tensor, time: np.ndarray | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Activations (n_frames, n_muscles) and the actuator head's controls (n_frames, n_actuators; None
        without a head: no actuators, or an older checkpoint) from normalised features, in one network pass
        (inference mode: no gradients).

        ``time`` (n_frames,), s: the frames' times, needed with an internal rate
        (:attr:`TrainConfig.rate`): the features are resampled to its ticks and the
        outputs interpolated back to ``time``. Windows as in training; where they
        overlap, their outputs are blended with triangular weights. With multiplier outputs
        (:attr:`TrainConfig.outputs`) the blended multipliers are interpolated to ``time`` and the
        activations are ``clip(M^T lam)`` with the muscle matrix at each frame's own q, qd. With ``"forces"``
        outputs the blended forces of motion are interpolated to ``time`` and the activations and controls come
        from Static Optimization of each frame (:mod:`opensim_pinn.motion_forces`).
        """
        lower, upper = self._bounds(features.device)
        frame_features = features
        features, grid = self._to_ticks(features, time)
        n_frames = features.shape[0]
        index = window_index(n_frames, self.config.window_frames(), device=features.device)
        with torch.inference_mode():
            logits, heads = self._window_outputs(features, index)
            controls = None if heads is None else blend(heads, index, n_frames) * torch.as_tensor(
                self.control_scale, dtype=heads.dtype, device=heads.device)
            if self.config.outputs == "forces":
                motion = self._to_frames(blend(logits, index, n_frames), grid, time)
                return self._solved(frame_features, motion)
            if self.config.outputs == "multipliers":
                lam = self._to_frames(blend(logits, index, n_frames), grid, time) * torch.as_tensor(
                    self.multiplier_scale, dtype=logits.dtype, device=logits.device)
                activations = self._multiplier_activations(frame_features, lam, lower, upper)
            else:
                activations = lower + (upper - lower) * blend(torch.sigmoid(logits), index, n_frames)
                activations = self._to_frames(activations, grid, time, lower, upper)
        return activations, None if controls is None else self._to_frames(controls, grid, time)

    def _solved(self, features: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations (n_frames, n_muscles) and controls (n_frames, n_actuators) of Static Optimization for
        ``tau = motion * scale - Q_loads``, from ``motion`` (n_frames, n_coordinates; in :attr:`motion_scale`
        units) and the normalised ``features`` (their q, qd and Q_loads), float32 on the features' device."""
        c = len(self.coordinates)
        loads = features[:, -c:].double().cpu().numpy() * self.feature_std[-c:] + self.feature_mean[-c:]
        tau = motion.double().cpu() * torch.as_tensor(self.motion_scale) - torch.as_tensor(loads)
        matrix = self._frame_muscle_matrix(features).double().cpu()  # float32, as the forces; the solve in float64
        lower, upper = (torch.cat(pair) for pair in zip(self._bounds("cpu", torch.float64),
                                                        self._actuator_bounds("cpu", torch.float64)))
        activations, controls = motion_forces.solve_frames(matrix, tau, torch.as_tensor(self.actuator_map),
                                                           lower, upper)
        return (activations.to(device=features.device, dtype=torch.float32),
                controls.to(device=features.device, dtype=torch.float32))

    def _frame_muscle_matrix(self, features: torch.Tensor) -> torch.Tensor:
        """The float32 muscle module's muscle matrix (n_frames, n_coordinates, n_muscles), on its device, at the
        frames' q, qd recovered from the normalised ``features`` (n_frames, n_features)."""
        c = len(self.coordinates)
        mean = torch.as_tensor(self.feature_mean[:2 * c], dtype=features.dtype, device=features.device)
        std = torch.as_tensor(self.feature_std[:2 * c], dtype=features.dtype, device=features.device)
        kinematics = features[:, :2 * c] * std + mean
        model = self.inference_muscle_model()
        device = model.max_isometric_force.device
        return model.muscle_matrix(kinematics[:, :c].to(device), kinematics[:, c:].to(device))[0]

    def _multiplier_activations(self, features: torch.Tensor, lam: torch.Tensor, lower: torch.Tensor,
                                upper: torch.Tensor) -> torch.Tensor:
        """``clip(M^T lam)`` (n_frames, n_muscles) with M from the float32 muscle module at the frames' q, qd,
        recovered from the normalised ``features`` (n_frames, n_features); ``lam`` (n_frames, n_coordinates)."""
        return multiplier_activations(lam, self._frame_muscle_matrix(features).to(lam.device), lower, upper)

    def activations(self, features: torch.Tensor, time: np.ndarray | None = None) -> torch.Tensor:
        """The activations of :meth:`outputs`."""
        return self.outputs(features, time)[0]

    def controls(self, features: torch.Tensor, time: np.ndarray | None = None) -> torch.Tensor | None:
        """The actuator head's controls of :meth:`outputs` (None without a head)."""
        return self.outputs(features, time)[1]

    def _to_ticks(self, features: torch.Tensor, time) -> tuple[torch.Tensor, np.ndarray | None]:
        """Features at the internal rate's ticks, and the ticks (None: the frames are the ticks)."""
        if self.config.rate is None:
            return features, None
        if time is None or len(time) != features.shape[0]:
            raise ValueError(f"this network works at {self.config.rate:g} Hz: pass the frames' times "
                             f"({features.shape[0]}), s")
        if at_rate(time, self.config.rate):
            return features, None
        grid = ticks(time, self.config.rate)
        values = interpolate(time, features.detach().cpu().double().numpy(), grid)
        return torch.as_tensor(values, dtype=features.dtype, device=features.device), grid

    @staticmethod
    def _to_frames(values: torch.Tensor, grid, time, lower=None, upper=None) -> torch.Tensor:
        """Per-tick outputs back at the frames ``time`` (unchanged when ``grid`` is None)."""
        if grid is None:
            return values
        bounds = {} if lower is None else {"lower": lower.cpu().numpy(), "upper": upper.cpu().numpy()}
        out = to_frames(values.cpu().double().numpy(), grid, np.asarray(time, float), **bounds)
        return torch.as_tensor(out, dtype=values.dtype, device=values.device)

    def _window_outputs(self, features: torch.Tensor, index: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and actuator head outputs (see :meth:`MJCABiGRU.sequence_outputs`) of the windows ``index``."""
        if self.network.per_frame_encoder:
            return self.network.sequence_outputs(self.network.frame_features(features[None])[0][index])
        return self.network.sequence_outputs(self.network.frame_features(features[index]))

    def muscle_forces(self, kinematics, activations: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """Muscle forces (N) = activation x rigid-tendon force at full activation, (n_frames, n_muscles).

        Evaluated in float32, like the network (a copy of the float64 muscle module):
        the forces differ from float64 by less than 1e-4 of their size, and the
        muscle module runs two to three times faster.
        """
        if activations is None:
            activations = self.predict(kinematics)
        model = self.inference_muscle_model()
        device = model.max_isometric_force.device
        with torch.inference_mode():
            q = torch.as_tensor(np.asarray(kinematics.q), dtype=torch.float32, device=device)
            qd = torch.as_tensor(np.asarray(kinematics.qd), dtype=torch.float32, device=device)
            forces = model.muscle_forces(q, qd, torch.as_tensor(activations, dtype=torch.float32, device=device))
        return forces.cpu().numpy().astype(float)

    def inference_muscle_model(self):
        """A float32 copy of :attr:`muscle_model` for predictions (made once)."""
        import copy

        if getattr(self, "_inference_muscles", None) is None:
            device = next(self.network.parameters()).device
            self._inference_muscles = copy.deepcopy(self.muscle_model).to(device=device, dtype=torch.float32)
        return self._inference_muscles

    # ---- checkpoints --------------------------------------------------------------
    def state(self) -> dict:
        """Everything :meth:`load` needs, as torch-saveable plain data (no pickled objects)."""
        self._check_fitted()
        if self.polynomials is None:
            raise ValueError("the checkpoint needs the muscle path polynomials: pass polynomials= to fit()")
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "package_version": __version__,
            "train_config": self.config.to_dict(),
            "network_state": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "epochs_done": len(self.history),
            "feature_mean": self.feature_mean.tolist(), "feature_std": self.feature_std.tolist(),
            "model_info": self.info.to_dict(),
            "path_polynomials": [p.to_dict() for p in self.polynomials],
            "coordinates": self.coordinates, "muscles": self.muscles, "actuators": self.actuators,
            "control_scale": np.asarray(self.control_scale, float).tolist(),
            "multiplier_scale": None if self.multiplier_scale is None
            else np.asarray(self.multiplier_scale, float).tolist(),
            "load_kinematics": None if self.load_kinematics is None else self.load_kinematics.state(),
            "motion_scale": None if self.motion_scale is None else np.asarray(self.motion_scale, float).tolist(),
            "actuator_map": None if self.actuator_map is None else np.asarray(self.actuator_map, float).tolist(),
            "grf_labels": self.grf_labels, "lowpass": self.lowpass, "trials": self.trial_settings,
            "state_variables": self.state_variables, "history": self.history,
            "best_epoch": getattr(self, "best_epoch", None),
        }

    def save(self, path: str | Path) -> None:
        """Write a self-contained checkpoint (see :meth:`state`) to ``path``, atomically."""
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        write_atomically(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> "Trainer":
        """A fitted Trainer from a checkpoint written by :meth:`save`.

        Raises
        ------
        InputError
            Missing file, not an opensim-pinn checkpoint, damaged, or ``device`` unavailable.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: checkpoint not found; give the checkpoint.pt written by 'opensim-pinn train'")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises several kinds for a file that is not a checkpoint
            state = None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: not an opensim-pinn checkpoint; give the checkpoint.pt written by "
                             "'opensim-pinn train'")
        if state.get("format_version", 0) > CHECKPOINT_VERSION:
            raise InputError(f"{path}: checkpoint format {state['format_version']} is newer than this "
                             f"opensim-pinn ({__version__}) reads; upgrade opensim-pinn")
        torch_device = check_device(device)
        try:
            trainer = cls._from_state(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            reason = first_line(error, type(error).__name__)
            raise InputError(f"{path}: damaged or incompatible opensim-pinn checkpoint ({reason}); train it again "
                             "with 'opensim-pinn train'") from None
        trainer.grf_labels = labels_by_body(trainer.grf_labels, trainer.trial_settings, path)
        trainer.config.device = str(torch_device)
        trainer.network.to(torch_device)
        return trainer

    @classmethod
    def _from_state(cls, state: dict) -> "Trainer":
        """The Trainer of a checkpoint's :meth:`state`, on the CPU, in evaluation mode."""
        from .muscle import MusculoskeletalModel
        from .osim import model_info_from_dict
        from .paths import PathPolynomial

        trainer = cls(TrainConfig.from_dict(state["train_config"]), progress=False)
        info = model_info_from_dict(state["model_info"])
        polynomials = [PathPolynomial.from_dict(p) for p in state["path_polynomials"]]
        trainer.info, trainer.polynomials = info, polynomials
        trainer.muscle_model = MusculoskeletalModel(info, polynomials).to(torch.float64)
        trainer.coordinates, trainer.muscles = state["coordinates"], state["muscles"]
        trainer.actuators, trainer.grf_labels = state["actuators"], state["grf_labels"]
        trainer.lowpass, trainer.trial_settings = state["lowpass"], state["trials"]
        trainer.feature_mean = np.array(state["feature_mean"])
        trainer.feature_std = np.array(state["feature_std"])
        # Checkpoints written before the actuator head load without it (no actuator controls to predict).
        head = any(k.startswith("actuator_head.") for k in state["network_state"])
        trainer.control_scale = np.array(state.get("control_scale") or [1.0] * len(trainer.actuators), float)
        scale = state.get("multiplier_scale")
        trainer.multiplier_scale = None if scale is None else np.array(scale, float)
        if trainer.config.outputs == "multipliers" and trainer.multiplier_scale is None:
            raise ValueError("multiplier outputs without their multiplier_scale")
        trainer.load_kinematics = trainer.motion_scale = trainer.actuator_map = None
        if trainer.config.outputs == "forces":
            from .body_kinematics import LoadKinematics

            loads = state["load_kinematics"]
            trainer.load_kinematics = None if loads is None else LoadKinematics.from_state(loads)
            trainer.motion_scale = np.array(state["motion_scale"], float)
            trainer.actuator_map = np.array(state["actuator_map"], float).reshape(len(trainer.actuators),
                                                                               len(trainer.coordinates))
        trainer.network = build_network(trainer.config.network, len(trainer.coordinates),
                                        trainer._n_load_inputs(), trainer._n_outputs(),
                                        len(trainer.actuators) if head else 0)
        trainer.network.load_state_dict(state["network_state"])
        trainer.network.eval()
        trainer.state_variables = state.get("state_variables")
        trainer.history = list(state.get("history", []))
        trainer.best_epoch = state.get("best_epoch")
        return trainer

    def write_history(self, path: str | Path) -> None:
        """Write :attr:`history` as CSV (one row per epoch); with validation, its columns too (empty on
        epochs without one), and ``best`` marks the epoch whose weights the network kept (:attr:`best_epoch`)."""
        validated = any(VALIDATION_COLUMNS[-1] in row for row in self.history)
        columns = HISTORY_COLUMNS + (VALIDATION_COLUMNS + ("best",) if validated else ())
        best = getattr(self, "best_epoch", None)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in self.history:
                row = {**row, "best": int(row["epoch"] == best)} if validated else row
                writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, ""))
                                 for k in columns})

    # ---- helpers ------------------------------------------------------------------
    def _set_model(self, info, muscle_model, polynomials, trials) -> None:
        self.info = info
        self.muscle_model = muscle_model.to(torch.float64)
        self.polynomials = polynomials if polynomials is not None else getattr(muscle_model, "polynomials", None)
        self.coordinates = list(muscle_model.coordinates)
        self.muscles = list(muscle_model.muscles)
        first = trials[0]
        self.actuators = list(first.actuators)
        self.grf_labels = list(first.grf_labels)
        for trial in trials:
            if list(trial.coordinates) != self.coordinates:
                raise InputError(f"trial {trial.name}: coordinates {trial.coordinates} differ from the "
                                 f"model's {self.coordinates}")
            if list(trial.actuators) != self.actuators:
                raise InputError(f"trial {trial.name}: actuators differ from trial {first.name}'s; "
                                 "train on trials prepared with the same reserves")
        check_same_loads(trials)
        self.trial_settings = [dict(t.settings) for t in trials]
        self.state_variables = list(info.state_variables) or None  # for states files
        lowpass = {t.settings.get("lowpass") for t in trials}
        if len(lowpass) > 1:
            raise InputError(f"trials were filtered with different low-pass cut-offs {sorted(map(str, lowpass))}; "
                             "use one --lowpass for all")
        self.lowpass = lowpass.pop()

    def targets(self, trial) -> PhysicsTargets:
        """The physics loss's per-frame data of a prepared trial (float64, CPU), from the muscle module."""
        as64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        return physics_targets(as64(trial.q), as64(trial.qd), as64(trial.tau), as64(trial.actuator_map),
                               self.muscle_model)

    def _loss(self, device) -> PhysicsLoss:
        return PhysicsLoss(*self._bounds(device), *self._actuator_bounds(device), loss_weights=self.config.loss_weights)

    def loss(self, device: str = "cpu") -> PhysicsLoss:
        """The physics loss of the trained model (float32 bounds on ``device``)."""
        self._check_fitted()
        return self._loss(torch.device(device))

    def _bounds(self, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The muscles' activation bounds (n_muscles,), lower and upper."""
        by_name = {m.name: m for m in self.info.muscles}
        lower = torch.tensor([by_name[m].min_control for m in self.muscles], dtype=dtype, device=device)
        upper = torch.tensor([by_name[m].max_control for m in self.muscles], dtype=dtype, device=device)
        return lower, upper

    def _actuator_bounds(self, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The actuators' control bounds (n_actuators,), lower and upper."""
        by_name = {a.name: a for a in self.info.actuators}
        unknown = [a for a in self.actuators if a not in by_name]
        if unknown:
            raise InputError(f"actuators {', '.join(unknown)} of the trials are not in the model description")
        return tuple(torch.tensor([getattr(by_name[a], bound) for a in self.actuators], dtype=dtype, device=device)
                     for bound in ("min_control", "max_control"))

    def _n_outputs(self) -> int:
        """Outputs of the muscle head: one per muscle, or one multiplier or force of motion per coordinate."""
        return len(self.muscles) if self.config.outputs == "activations" else len(self.coordinates)

    def _n_load_inputs(self) -> int:
        """Inputs after the kinematics: GRF components, and with ``"forces"`` the loads' generalised forces."""
        return len(self.grf_labels) + (len(self.coordinates) if self.config.outputs == "forces" else 0)

    def _curvature(self, loss: PhysicsLoss, targets: PhysicsTargets) -> torch.Tensor:
        """Per frame, what the training direction needs: the loss's Hessian in the activations (n_muscles^2),
        or with multipliers the dual's (n_coordinates^2, :func:`~opensim_pinn.multipliers.dual_curvature`,
        in float64)."""
        if self.config.outputs == "multipliers":
            return dual_curvature(loss, targets.to(dtype=torch.float64)).to(targets.tau.dtype)
        if self.config.outputs == "forces":  # least squares: no curvature
            return targets.tau.new_zeros(targets.tau.shape[0], 1, 1)
        return curvature(loss, targets, len(self.muscles))

    def _normalize(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_mean) / self.feature_std

    def _check_fitted(self) -> None:
        if not hasattr(self, "network"):
            raise RuntimeError("this Trainer is not fitted: call fit() or Trainer.load() first")

    def check_kinematics(self, kinematics) -> None:
        """Raise :class:`InputError` unless the trial has the network's coordinates and GRF components."""
        if list(kinematics.coordinates) != self.coordinates:
            raise InputError(f"the motion's coordinates {kinematics.coordinates} are not the checkpoint's "
                             f"{self.coordinates}")
        labels = list(kinematics.grf_labels)
        if self.grf_labels and not labels:
            raise InputError("the network was trained with ground reaction forces; give the trial's "
                             "--external-loads")
        if labels and not self.grf_labels:
            raise InputError("the network was trained without external loads; leave out --external-loads")
        if self.config.outputs == "forces" and self.load_kinematics is not None:
            motion_forces.check_loads(kinematics, "the trial")
        mismatch = loads_mismatch(labels, self.grf_labels)
        if mismatch:
            raise InputError(f"the external loads do not match the checkpoint's: {mismatch}; give loads on the "
                             f"bodies the network was trained with ({loads_description(self.grf_labels)})")


class _WindowNetwork(torch.nn.Module):
    """Both heads' outputs of batches of windows, in one ``forward`` (what DistributedDataParallel wraps)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, inputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per batch of windows (n_windows, window, n_features): logits and actuator head outputs."""
        return [self.network.sequence_outputs(self.network.frame_features(x)) for x in inputs]


def _concatenate(targets: list[PhysicsTargets]) -> PhysicsTargets:
    """Targets of several batches of windows, one after the other."""
    return PhysicsTargets(*(torch.cat(values) for values in zip(*(vars(t).values() for t in targets))))
