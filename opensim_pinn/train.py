"""The ``train`` command's API: from a user's OpenSim files to a trained checkpoint.

:func:`train_network` checks every input, prepares the trials (inverse dynamics,
cached), fits the muscle paths (cached), trains a :class:`~opensim_pinn.trainer.Trainer`
and writes ``checkpoint.pt`` and ``history.csv``; while it trains, a snapshot
(:mod:`opensim_pinn.snapshots`) lets :func:`resume_training` finish an
interrupted run as if it had never stopped.

>>> summary = train_network("subject01.osim", ["walk_IK.mot"], ["walk_grf.xml"],
...                         reserves="auto", out="run1")                 # doctest: +SKIP
>>> summary = resume_training("run1")     # after Ctrl-C or a killed process   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from .augment import augmented_settings, check_augmentations
from .errors import InputError
from .external_loads import check_same_loads
from .multipliers import check_outputs
from .network import NetworkConfig
from .distributed import session
from .snapshots import DEFAULT_SNAPSHOT_EVERY
from .trainer import DEFAULT_EPOCHS, DEFAULT_VALIDATE_EVERY, TrainConfig, Trainer, check_device

TRAIN_OUTPUTS = ("checkpoint.pt", "history.csv")
"""What :func:`train_network` writes into its output folder."""


def train_network(model: str, motions=None, external_loads=None, *, manifest: str | Path | None = None,
                  validation: str | Path | None = None, validate_every: int | None = None,
                  batch_windows: int | None = None, reserves: str | None = None,
                  start: float | None = None, end: float | None = None, lowpass: float | None = 6.0,
                  step_interval: int = 1, epochs: int | None = None, time_limit: float | None = None,
                  seed: int = 0, device: str = "cpu", architecture: str = "mjca", outputs: str = "activations",
                  out: str | Path, force: bool = False, progress: bool = True,
                  snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                  distributed: bool = False, augment: list[str] | None = None) -> dict | None:
    """Prepare trials of ``model``, train the network on them and write ``out/checkpoint.pt`` and ``out/history.csv``.

    While training, ``out/resume.pt`` holds a snapshot every ``snapshot_every``
    epochs, from which :func:`resume_training` continues an interrupted run; it is
    removed when the checkpoint is written.

    Parameters
    ----------
    model : path
        The scaled ``.osim`` model.
    motions : path or list of paths
        Inverse-kinematics motions (one trial each).
    external_loads : path, list of paths (one per motion, None entries allowed) or None
    manifest : path, optional
        A CSV or TOML manifest of the trials (:mod:`opensim_pinn.manifest`), instead of
        ``motions`` and ``external_loads``; its per-trial start and end win over ``start``, ``end``.
    validation : path, optional
        A manifest of held-out trials: their physics loss (label-free) goes into
        ``history.csv`` every ``validate_every`` epochs, and the checkpoint keeps
        the weights of the epoch with the lowest one (``best_epoch`` in the summary).
    validate_every : int, optional
        Epochs between validations (default :data:`~opensim_pinn.trainer.DEFAULT_VALIDATE_EVERY`).
    batch_windows : int, optional
        Windows per optimiser step, drawn across the trials (default: all of them, one step per epoch).
    reserves : path, "auto" or None
        Reserve/residual actuators (OpenSim ForceSet file) appended to the model.
    start, end : float, optional
        Time window (s) of every motion.
    lowpass : float or None
        Low-pass cut-off (Hz) of the coordinates; -1 or None: no filtering.
    step_interval : int
        Train on every N-th frame (OpenSim's ``step_interval``).
    epochs, time_limit : optional
        Training length (default :data:`DEFAULT_EPOCHS`), and a wall-clock limit in seconds.
    seed : int
    device : "cpu" or "cuda"
    architecture : "mjca", "bigru", "cnn" or "mlp"
    outputs : "activations", "multipliers" or "forces"
        What the network's muscle head outputs (:attr:`~opensim_pinn.trainer.TrainConfig.outputs`).
    out : path
        Output folder.
    force : bool
        Replace existing output files (and the snapshot of an interrupted run).
    snapshot_every : int
        Epochs between snapshots.
    distributed : bool
        Join the ``torchrun`` process group (also done without it when torchrun's
        environment variables are set; see :mod:`opensim_pinn.distributed`).
    augment : list of str, optional
        Also train on augmented versions of every training trial (:data:`opensim_pinn.augment.AUGMENTATIONS`:
        ``"mirror"``, ``"timescale"``, ``"perturb"``), each with its own inverse dynamics.

    Returns
    -------
    dict
        ``files``, ``n_frames``, ``epochs``, ``final_loss`` (last epoch's terms),
        ``wall_s`` (``trials``, ``paths``, ``training``, ``total``) and
        ``training_agreement``: per trial, the median R^2 of the network's muscle
        forces against the project's fast Static Optimization on that trial. None in
        ``torchrun`` processes other than process 0 (which alone writes and reports).
    """
    from .outputs import OutputFolder
    from .snapshots import RESUME_FILE, check_not_training, interrupted

    from .manifest import read_manifest

    check_device(device)
    windows = names = None
    if manifest is not None:
        if motions or external_loads:
            raise InputError("give the trials with --manifest or with --motion/--external-loads, not both")
        listed = read_manifest(manifest)
        motions, external_loads = [t.motion for t in listed], [t.external_loads for t in listed]
        windows = [[start if t.start is None else t.start, end if t.end is None else t.end] for t in listed]
        names = [t.name for t in listed]
    motions = [motions] if isinstance(motions, (str, Path)) else list(motions or [])
    if not motions:
        raise InputError("give at least one --motion, or a --manifest")
    if external_loads is None or isinstance(external_loads, (str, Path)):
        external_loads = [external_loads] * len(motions)
    external_loads = list(external_loads)
    if len(external_loads) == 1 and len(motions) > 1:
        external_loads = external_loads * len(motions)
    if len(external_loads) != len(motions):
        raise InputError(f"{len(external_loads)} --external-loads for {len(motions)} --motion; give one per "
                         "motion, in the same order")
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be 1 or more, got {epochs}")
    if snapshot_every < 1:
        raise InputError(f"--snapshot-every must be 1 or more, got {snapshot_every}")
    if validate_every is not None and validation is None:
        raise InputError("--validate-every needs --validation MANIFEST (the held-out trials)")
    if validate_every is not None and validate_every < 1:
        raise InputError(f"--validate-every must be 1 or more, got {validate_every}")
    if batch_windows is not None and batch_windows < 1:
        raise InputError(f"--batch-windows must be 1 or more, got {batch_windows}")
    check_augmentations(augment or [])
    check_outputs(outputs)
    held_out = [] if validation is None else read_manifest(validation)
    OutputFolder(out, list(TRAIN_OUTPUTS), force=force).check()  # in every process before they meet (session)
    check_not_training(out)
    if interrupted(out) and not force:
        raise InputError(f"{out}: holds an interrupted training ({RESUME_FILE}); continue it with "
                         f"'opensim-pinn train --resume {out}', or use --force to start again")

    def absolute(path):
        return None if path is None else str(Path(path).resolve())

    arguments = {"model": absolute(model), "motions": [absolute(m) for m in motions],
                 "external_loads": [absolute(x) for x in external_loads],
                 "reserves": reserves if reserves in (None, "auto") else absolute(reserves),
                 "start": start, "end": end, "lowpass": lowpass, "step_interval": step_interval,
                 "epochs": epochs or DEFAULT_EPOCHS, "time_limit": time_limit, "seed": seed, "device": device,
                 "architecture": architecture, "outputs": outputs, "force": force, "snapshot_every": snapshot_every,
                 "windows": windows or [[start, end]] * len(motions), "batch_windows": batch_windows,
                 "names": names,
                 "validation": [{"name": t.name, "motion": str(t.motion), "external_loads": absolute(t.external_loads),
                                 "window": [start if t.start is None else t.start, end if t.end is None else t.end]}
                                for t in held_out],
                 "validate_every": validate_every or DEFAULT_VALIDATE_EVERY, "augment": sorted(set(augment or []))}
    with session(device, distributed) as ranks:
        return _run_training(arguments, Path(out), progress=progress, ranks=ranks)


def resume_training(run_dir: str | Path, *, progress: bool = True, distributed: bool = False) -> dict | None:
    """Continue the interrupted :func:`train_network` whose ``out`` was ``run_dir``.

    The run's arguments and path polynomials come from its snapshot
    (``run_dir/resume.pt``); the epochs not done are trained, and the checkpoint
    is the one the uninterrupted run would have written. Returns
    :func:`train_network`'s summary, plus ``resumed_at_epoch``.

    Raises
    ------
    InputError
        See :func:`opensim_pinn.snapshots.read_snapshot`; also a run that was
        trained on CUDA where no GPU is now.
    """
    from .outputs import OutputFolder
    from .snapshots import check_not_training, read_snapshot

    check_not_training(run_dir)
    snapshot = read_snapshot(run_dir)  # in every process, before they meet (session): the same file
    arguments = snapshot["arguments"]
    try:
        check_device(arguments["device"])
    except InputError:
        raise InputError(f"{run_dir}: this training ran on {arguments['device']} and no CUDA GPU is available here; "
                         "resume it where there is one, or start again with --force --device cpu") from None
    OutputFolder(run_dir, list(TRAIN_OUTPUTS), force=arguments["force"]).check()
    with session(arguments["device"], distributed) as ranks:
        summary = _run_training(arguments, Path(run_dir), progress=progress, snapshot=snapshot, ranks=ranks)
    return None if summary is None else {**summary, "resumed_at_epoch": snapshot["training"]["epochs_done"]}


def _run_training(settings: dict, out: Path, *, progress: bool, snapshot: dict | None = None,
                  ranks=None) -> dict | None:
    """Check every input, prepare the trials, fit the paths (unless resuming ``snapshot``), train
    (writing snapshots) and write the outputs. Under torchrun (``ranks``, a
    :class:`~opensim_pinn.distributed.Distributed`), process 0 prepares first and alone writes and reports."""
    from .muscle import MusculoskeletalModel
    from .outputs import OutputFolder
    from .paths import PathPolynomial, load_or_fit_paths
    from .snapshots import RESUME_FILE, file_digests, input_files, training_lock, write_snapshot
    from .trial import load_model_info

    began = time.perf_counter()
    main = ranks is None or ranks.main
    progress = progress and main
    if ranks is not None and settings.get("batch_windows") and settings["batch_windows"] % ranks.world_size:
        raise InputError(f"--batch-windows {settings['batch_windows']} is shared among {ranks.world_size} "
                         "processes: make it a multiple of their number")
    trial_windows = settings.get("windows") or [[settings["start"], settings["end"]]] * len(settings["motions"])
    listed = list(zip(settings["motions"], settings["external_loads"], trial_windows))
    held_out = [(v["motion"], v["external_loads"], v["window"]) for v in settings.get("validation", [])]

    def prepare():  # the trials (OpenSim inverse dynamics, cached) and the muscle paths (fitted, cached)
        info = load_model_info(settings["model"], settings["reserves"])
        trials = _prepare_trials(settings, info, listed, settings.get("names"), progress=progress, what="trials",
                                 augment=settings.get("augment", []))
        validation = _prepare_trials(settings, info, held_out, [v["name"] for v in settings.get("validation", [])],
                                     progress=progress, what="validation trials")
        prepared = time.perf_counter()
        if snapshot is not None:
            polynomials = [PathPolynomial.from_dict(p) for p in snapshot["path_polynomials"]]
        else:
            q = np.concatenate([t.q for t in trials])
            reference_time = trials[0].time if len(trials) == 1 else np.arange(len(q)) * 0.01
            polynomials = load_or_fit_paths(info.path, trials[0].coordinates, reference_time, q,
                                            [m.name for m in info.muscles])
        return info, trials, validation, polynomials, prepared

    info, trials, validation, polynomials, prepared = prepare() if ranks is None else ranks.first_on_main(prepare)
    muscle_model = MusculoskeletalModel(info, polynomials)
    fitted = time.perf_counter()
    config = TrainConfig(epochs=settings["epochs"], time_limit_s=settings["time_limit"], seed=settings["seed"],
                         device=settings["device"], network=NetworkConfig(architecture=settings["architecture"]),
                         outputs=settings.get("outputs", "activations"))
    config.batch_windows = settings.get("batch_windows")
    validation_files = input_files({**settings, "motions": [m for m, _, _ in held_out],
                                    "external_loads": [x for _, x, _ in held_out]})
    digests = snapshot["inputs"] if snapshot is not None else file_digests(
        list(dict.fromkeys(input_files(settings) + validation_files)))  # checked
    stored_polynomials = [p.to_dict() for p in polynomials]
    with training_lock(out) if main else contextlib.nullcontext():
        trainer = Trainer(config, progress=progress).fit(
            trials, info, muscle_model, polynomials=polynomials,
            resume=None if snapshot is None else snapshot["training"], snapshot_every=settings["snapshot_every"],
            snapshot=(lambda training: write_snapshot(out, settings, digests, stored_polynomials, training))
            if main else None, distributed=ranks,
            validation=validation if main and validation else None,
            validate_every=settings.get("validate_every", DEFAULT_VALIDATE_EVERY))
        trained = time.perf_counter()
        if not main:
            return None
        with OutputFolder(out, list(TRAIN_OUTPUTS), force=settings["force"]) as staging:
            trainer.save(staging / "checkpoint.pt")
            trainer.write_history(staging / "history.csv")
        (out / RESUME_FILE).unlink(missing_ok=True)
    last = trainer.history[-1] if trainer.history else {}
    return {
        "files": [str(out / n) for n in TRAIN_OUTPUTS],
        "trials": [t.name for t in trials], "n_frames": sum(len(t.time) for t in trials),
        "muscles": len(trainer.muscles), "coordinates": len(trainer.coordinates),
        "epochs": len(trainer.history), "architecture": settings["architecture"], "outputs": trainer.config.outputs,
        "final_loss": {k: last.get(k) for k in ("dynamics", "performance", "boundary", "total")},
        "training_agreement": _training_agreement(trainer, trials, info, muscle_model),
        **({"validation_trials": [t.name for t in validation], "best_epoch": trainer.best_epoch,
            "best_validation_loss": next((row["validation_total"] for row in trainer.history
                                          if row["epoch"] == trainer.best_epoch), None)} if validation else {}),
        "wall_s": {"trials": round(prepared - began, 3), "paths": round(fitted - prepared, 3),
                   "training": round(trained - fitted, 3), "total": round(time.perf_counter() - began, 3)},
    }


def _prepare_trials(settings: dict, info, listed, names, *, progress: bool, what: str, augment=()) -> list:
    """Trials (inverse dynamics with OpenSim, cached) of ``listed`` (motion, external loads, [start, end]),
    named ``names`` (a manifest's) or after their motions (``None``), each followed by its ``augment``
    versions (:func:`opensim_pinn.augment.augmented_settings`, each with its own inverse dynamics).

    Every motion is read and checked before the first inverse dynamics runs.
    """
    from tqdm.auto import tqdm

    from .trial import TrialSettings, load_kinematics, prepare_trial

    if not listed:
        return []
    common = {"lowpass": settings["lowpass"], "step_interval": settings["step_interval"]}
    checked = [load_kinematics(info, motion, loads, start=window[0], end=window[1], **common)
               for motion, loads, window in listed]
    check_same_loads(checked)
    trials = []
    for number, ((motion, loads, window), kinematics) in enumerate(tqdm(
            list(zip(listed, checked)), desc=f"preparing {what}", unit="trial",
            disable=not progress or len(listed) < 2, leave=False)):
        trial_settings = TrialSettings(model=settings["model"], motion=motion, external_loads=loads,
                                       reserves=settings["reserves"], start=window[0], end=window[1], **common)
        trial, _ = prepare_trial(trial_settings, info=info, kinematics=kinematics)
        if names:
            trial.name = names[number]
        trials.append(trial)
        stem = Path(motion).stem
        for augmented in augmented_settings(trial_settings, augment, info):
            version, _ = prepare_trial(augmented, info=info)
            version.name = trial.name + Path(augmented.motion).stem.removeprefix(stem)  # e.g. walk1_mirror
            trials.append(version)
    return trials


def _training_agreement(trainer: Trainer, trials, info, muscle_model) -> dict:
    """Median R^2 of the network's forces vs the fast SO solver on each training trial (or a reason)."""
    from .metrics import r2
    from .static_opt import fast_static_optimization

    agreement = {}
    for trial in trials:
        try:
            reference = fast_static_optimization(trial, info, muscle_model)
        except InputError as error:
            agreement[trial.name] = f"not computed: {error}"
            continue
        n_muscles = len(trainer.muscles)
        forces = trainer.muscle_forces(trial)
        agreement[trial.name] = {"median_r2_vs_fast_static_optimization":
                                 round(float(np.median(r2(reference.forces[:, :n_muscles], forces))), 4)}
    return agreement
