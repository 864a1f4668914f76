"""Cross-validation: every accuracy number on frames the network was not trained on.

Folds are whole trials (a manifest: train on the others, test on each in turn)
or segments of one trial (strides between heel strikes, or fixed durations).
For a segment held out in the middle of a trial, the rest of the trial is two
training trials, before and after it. Every piece is a trial of its own, prepared
with its own time window by :func:`opensim_pinn.trial.prepare_trial`; the
coordinates are filtered over the whole motion before the window is cut, so a
held-out frame has exactly the kinematics it has in the full trial.

For each fold the network is trained (:class:`~opensim_pinn.trainer.Trainer`,
label-free) on the other folds, predicts the held-out frames, and is compared
there with a reference Static Optimization: OpenSim's own over the fold's time
window (default), or the project's fast solver. The path polynomials of the
muscle module are fitted once to the model's geometry over every frame of every
trial: geometry only, like the model file itself; no Static Optimization result
reaches the training.

>>> summary = evaluate("subject01.osim", motion="walk_IK.mot", external_loads="walk_grf.xml",
...                    reserves="actuators.xml", folds="strides", out="cv")      # doctest: +SKIP
>>> summary["overall"]["median_r2"]                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InputError
from .metrics import nrmse, r2, rmse
from .trial import DEFAULT_LOWPASS_HZ, TrialSettings

log = logging.getLogger(__name__)

REFERENCES = ("opensim", "fast")
REFERENCE_LABELS = {"opensim": "OpenSim Static Optimization", "fast": "fast Static Optimization"}
MIN_TRAINING_FRAMES = 4
"""A piece of a trial left beside a held-out segment is trained on only if it has this many frames."""
POOLED = "all held-out frames"


@dataclass
class Fold:
    """One held-out trial or segment and the trials trained on without it."""

    name: str
    held_out: TrialSettings
    training: list[TrialSettings]


@dataclass
class FoldPlan:
    """How the frames were split: the folds, and in words how they were found."""

    model: str
    reserves: str | None
    folds: list[Fold]
    how: str
    gait: dict | None = None
    all_settings: list[TrialSettings] = field(default_factory=list)
    """Every trial of the data (whole trials or the whole analysed window), for the path fit."""


def segment_folds(model: str, motion: str, external_loads: str | None = None, *, folds: str | float,
                  reserves: str | None = None, start: float | None = None, end: float | None = None,
                  lowpass: float | None = DEFAULT_LOWPASS_HZ) -> FoldPlan:
    """Folds that are segments of one trial: ``folds="strides"`` or a duration in seconds.

    Strides run from one heel strike to the next of the foot with the most heel strikes
    (:func:`opensim_pinn.plots.heel_strikes`: its vertical ground reaction force rising
    through the contact threshold). The frames before the first strike and after the
    last are a fold of their own if they last half a median stride or more, otherwise
    part of the neighbouring stride. Durations: consecutive pieces of that many seconds
    from the first frame, a last piece shorter than half of it joined to the one before.

    Raises
    ------
    InputError
        Strides without external loads or with fewer than two heel strikes, a
        duration that is not positive, fewer than two folds.
    """
    from .plots import heel_strikes
    from .trial import load_kinematics, load_model_info

    info = load_model_info(model, reserves)
    kinematics = load_kinematics(info, motion, external_loads, start=start, end=end, lowpass=lowpass)
    times = kinematics.time
    n = len(times)
    gait = None
    if folds == "strides":
        if external_loads is None or kinematics.grf.shape[1] == 0:
            raise InputError("--folds strides finds strides from heel strikes in the ground reaction forces: give "
                             "--external-loads, or use --folds SECONDS")
        cycle = heel_strikes(times, list(kinematics.grf_labels), kinematics.grf)
        if cycle is None:
            raise InputError(f"{motion}: no foot has two heel strikes (vertical ground reaction force rising through "
                             "the contact threshold) in the analysed window, so there are no strides; use --folds "
                             "SECONDS")
        strikes = [int(np.argmin(np.abs(times - t))) for t in cycle.heel_strikes]
        edges = _merge_short([0, *strikes, n], 0.5 * float(np.median(np.diff(strikes))))
        gait = {"foot": cycle.force, "threshold_n": round(cycle.threshold_n, 3), "heel_strikes_s": cycle.heel_strikes}
        how = (f"strides between heel strikes of {cycle.force} (vertical ground reaction force rising through "
               f"{cycle.threshold_n:.1f} N) at " + ", ".join(f"{t:.3f}" for t in cycle.heel_strikes) + " s")
    else:
        duration = _duration(folds)
        step = float(np.median(np.diff(times)))
        cuts = [int(i) for i in np.searchsorted(times, times[0] + duration * np.arange(1, n) - 0.5 * step)
                if 0 < i < n]
        edges = _merge_short(sorted(set([0, *cuts, n])), 0.5 * duration / step)
        how = f"consecutive segments of {duration:g} s"
    if len(edges) - 1 < 2:
        raise InputError(f"{motion}: {times[0]:.3f}-{times[-1]:.3f} s gives {len(edges) - 1} fold with "
                         f"{'strides' if folds == 'strides' else f'--folds {folds}'}; cross-validation needs 2 or "
                         "more: give a longer window or shorter folds")

    def settings(a: int, b: int) -> TrialSettings:  # frames a..b-1; the window's own ends where it has them
        # (the first analysed frame can lie just before the data's first time, on the filter's resampled grid)
        return TrialSettings(model=str(model), motion=str(motion), external_loads=external_loads and str(external_loads),
                             reserves=reserves, start=start if a == 0 else float(times[a]),
                             end=end if b == n else float(times[b - 1]), lowpass=lowpass)

    plan = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        rest = [settings(x, y) for x, y in ((0, a), (b, n)) if y - x >= MIN_TRAINING_FRAMES]
        first, last = (round(float(times[i]), 2) + 0.0 for i in (a, b - 1))  # + 0.0: no "-0.00"
        plan.append(Fold(f"fold {k + 1} ({first:.2f}-{last:.2f} s)", settings(a, b), rest))
    whole = settings(0, n)
    return FoldPlan(str(model), reserves, plan, how, gait, [whole])


def manifest_folds(model: str, manifest: str | Path, *, reserves: str | None = None,
                   lowpass: float | None = DEFAULT_LOWPASS_HZ) -> FoldPlan:
    """Leave-one-trial-out folds over the trials of a manifest (:func:`opensim_pinn.manifest.read_manifest`)."""
    from .manifest import read_manifest

    trials = read_manifest(manifest)
    if len(trials) < 2:
        raise InputError(f"{manifest}: lists {len(trials)} trial; leaving one trial out needs 2 or more")
    settings = [TrialSettings(model=str(model), motion=str(t.motion),
                              external_loads=None if t.external_loads is None else str(t.external_loads),
                              reserves=reserves, start=t.start, end=t.end, lowpass=lowpass) for t in trials]
    folds = [Fold(t.name, s, [o for o in settings if o is not s]) for t, s in zip(trials, settings)]
    return FoldPlan(str(model), reserves, folds, f"leave one trial out of {len(trials)} ({Path(manifest).name})",
                    all_settings=settings)


def _duration(folds) -> float:
    try:
        duration = float(folds)
    except (TypeError, ValueError):
        raise InputError(f"--folds {folds!r}: give 'strides' or a duration in seconds") from None
    if not np.isfinite(duration) or duration <= 0:
        raise InputError(f"--folds {folds}: a fold duration must be a number of seconds above 0")
    return duration


def _merge_short(edges: list[int], shortest: float) -> list[int]:
    """Frame edges of consecutive pieces, with a first or last piece shorter than ``shortest`` frames joined
    to its neighbour."""
    edges = list(edges)
    if len(edges) > 3 and edges[1] - edges[0] < shortest:
        del edges[1]
    if len(edges) > 3 and edges[-1] - edges[-2] < shortest:
        del edges[-2]
    return edges


# ---- running the folds ------------------------------------------------------------------------------------------
def label_free_fit(config) -> Callable:
    """The default way to train a fold: :meth:`Trainer.fit` with ``config`` (a :class:`TrainConfig`)."""
    from .trainer import Trainer

    def fit(trials, info, muscle_model, polynomials):
        return Trainer(config, progress=False).fit(trials, info, muscle_model, polynomials=polynomials)

    return fit


def cross_validate(plan: FoldPlan, *, config=None, reference: str = "opensim", fit: Callable | None = None,
                   progress: bool = True) -> dict:
    """Train on all folds but one, predict it, compare with the reference; every fold in turn.

    Parameters
    ----------
    plan : FoldPlan
    config : TrainConfig, optional
        Training settings of every fold (default :class:`TrainConfig`).
    reference : "opensim" or "fast"
    fit : callable, optional
        ``fit(trials, info, muscle_model, polynomials) -> Trainer``; default :func:`label_free_fit`.
        (The supervised baseline of ``benchmarks/paper_experiments.py`` comes in here.)

    Returns
    -------
    dict
        ``metrics`` (JSON-ready: per fold and overall) and ``folds``: per fold the arrays
        ``time``, ``reference``, ``estimate`` (forces, N, (n_frames, n_muscles)), ``gait``, ``trial``.
    """
    from tqdm import tqdm

    from .muscle import MusculoskeletalModel
    from .paths import load_or_fit_paths
    from .trainer import TrainConfig
    from .trial import load_model_info, prepare_trial

    if reference not in REFERENCES:
        raise InputError(f"--reference {reference}: choose {' or '.join(REFERENCES)}")
    config = config if config is not None else TrainConfig()
    fit = fit if fit is not None else label_free_fit(config)
    info = load_model_info(plan.model, plan.reserves)
    began = time.perf_counter()
    prepared: dict[str, object] = {}

    def trial_of(settings: TrialSettings):
        key = json.dumps(settings.__dict__, sort_keys=True, default=str)
        if key not in prepared:
            prepared[key] = prepare_trial(settings, info=info)[0]
        return prepared[key]

    every = [*plan.all_settings, *(f.held_out for f in plan.folds), *(s for f in plan.folds for s in f.training)]
    for settings in tqdm(every, desc="preparing trials (inverse dynamics)", disable=not progress, leave=False):
        trial_of(settings)
    whole = [trial_of(s) for s in plan.all_settings]
    q = np.concatenate([t.q for t in whole])
    reference_time = whole[0].time if len(whole) == 1 else np.arange(len(q)) * 0.01
    polynomials = load_or_fit_paths(info.path, whole[0].coordinates, reference_time, q, [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)
    prepared_s = time.perf_counter() - began

    results, fold_metrics = [], {}
    bar = tqdm(plan.folds, desc="cross-validation folds", disable=not progress)
    for fold in bar:
        bar.set_postfix_str(fold.name)
        training = [trial_of(s) for s in fold.training]
        held = trial_of(fold.held_out)
        check_held_out(held, training)
        fold_began = time.perf_counter()
        trainer = fit(training, info, muscle_model, polynomials)
        trained_s = time.perf_counter() - fold_began
        frames, ref_forces, ref_activations, reference_s = _reference(reference, fold.held_out, held, info,
                                                                      muscle_model)
        activations = trainer.predict(frames)
        forces = trainer.muscle_forces(frames, activations)
        metrics = fold_measures(trainer, frames, ref_forces, ref_activations, activations, forces)
        metrics.update(held_out={"start_s": float(frames.time[0]), "end_s": float(frames.time[-1]),
                                 "motion": str(fold.held_out.motion)},
                       training_trials=[{"motion": s.motion, "start_s": t.time[0], "end_s": t.time[-1],
                                         "n_frames": len(t.time)} for s, t in zip(fold.training, training)],
                       training_agreement=_training_agreement(trainer, training, info, muscle_model),
                       wall_s={"training": round(trained_s, 3), "reference": round(reference_s, 3)})
        fold_metrics[fold.name] = metrics
        results.append({"name": fold.name, "time": frames.time, "reference": ref_forces, "estimate": forces,
                        "trial": frames, "trainer": trainer})
    muscles = list(muscle_model.muscles)
    pooled = pooled_measures(muscles, results, fold_metrics)
    metrics = {
        "model": str(Path(plan.model).resolve()), "folds_from": plan.how, "gait": plan.gait,
        "reference": REFERENCE_LABELS[reference], "n_folds": len(plan.folds), "muscles": muscles,
        "training": {"epochs": config.epochs, "architecture": config.network.architecture, "seed": config.seed,
                     "outputs": config.outputs, "loss_weights": config.loss_weights},
        "folds": fold_metrics, "overall": pooled,
        "wall_s": {"preparing_trials_and_paths": round(prepared_s, 3), "total": round(time.perf_counter() - began, 3)},
        "notes": {
            "held_out": "every measure is on the held-out fold's frames only, with a network trained without them",
            "r2": "per muscle, force (N) of the network vs the reference over the fold's frames",
            "nrmse": "RMSE divided by the range of the reference force of that muscle; null where the range is 0",
            "torque_residual": "RMS over the held-out frames of inverse dynamics minus the generalised forces of the "
                               "network's muscles and of the least-cost actuator controls",
            "training_agreement": "sanity check, on the training trials: median R^2 of the network's forces vs the "
                                  "fast Static Optimization there (near 1 when training converged)",
            "overall": "per-muscle measures over the held-out frames of all folds together; fold_median_r2: the "
                       "spread of the folds' median R^2",
        },
    }
    return {"metrics": metrics, "folds": results}


def check_held_out(held, training) -> None:
    """Raise if a frame (by time, within the same motion) of the held-out trial is in a training trial."""
    for trial in training:
        if trial.settings.get("motion") != held.settings.get("motion"):
            continue
        overlap = np.abs(np.asarray(trial.time)[:, None] - np.asarray(held.time)[None, :]).min(initial=np.inf)
        if overlap < 1e-9:
            raise RuntimeError(f"held-out frames of {held.name} are in a training trial: the folds overlap")


def _reference(reference: str, settings: TrialSettings, trial, info, muscle_model):
    """The held-out frames that have a reference, and its forces and activations (muscles in the model's order)."""
    began = time.perf_counter()
    muscles = [m.name for m in info.muscles]
    if reference == "fast":
        from .static_opt import fast_static_optimization

        result = fast_static_optimization(trial, info, muscle_model)
        frames, rows = trial, np.arange(len(trial.time))
    else:
        from .child import run_in_child
        from .compare import _matching_frames, _subset
        from .static_opt import check_covered, opensim_static_optimization
        from .trial import load_kinematics

        kinematics = load_kinematics(info, settings.motion, settings.external_loads, start=settings.start,
                                     end=settings.end, lowpass=settings.lowpass)
        check_covered(info, settings, kinematics)
        result = run_in_child("OpenSim static optimization", opensim_static_optimization, settings.model,
                              settings.motion, settings.external_loads, settings.reserves,
                              *(float(t) if s is None else s for s, t in ((settings.start, trial.time[0]),
                                                                          (settings.end, trial.time[-1]))),
                              settings.lowpass, 1)
        keep, rows = _matching_frames(trial.time, result.time)
        frames = _subset(trial, keep)
    columns = [result.labels.index(m) for m in muscles]
    return (frames, result.forces[rows][:, columns], result.activations[rows][:, columns],
            time.perf_counter() - began)


def _training_agreement(trainer, trials, info, muscle_model) -> dict:
    from .train import _training_agreement as agreement

    return {f"{t.time[0]:.2f}-{t.time[-1]:.2f} s of {t.name}": v
            for t, v in zip(trials, agreement(trainer, trials, info, muscle_model).values())}


def fold_measures(trainer, frames, ref_forces, ref_activations, activations, forces) -> dict:
    """Per-muscle R^2, NRMSE, RMSE of forces (and R^2 of activations), and the torque residual, on one fold."""
    from .compare import _generalized_forces

    muscles = list(trainer.muscles)
    muscle_r2, muscle_nrmse, muscle_rmse = r2(ref_forces, forces), nrmse(ref_forces, forces), rmse(ref_forces, forces)
    activation_r2 = r2(ref_activations, activations)
    tau, by_muscles, by_actuators, _ = _generalized_forces(trainer, frames, activations)
    residual = np.sqrt(np.mean((tau - by_muscles - by_actuators) ** 2, axis=0))
    return {"n_frames": len(frames.time), "summary": _summary(muscle_r2, muscle_nrmse),
            "muscles": {m: {"r2": float(muscle_r2[i]), "nrmse": _number(muscle_nrmse[i]),
                            "rmse": float(muscle_rmse[i]), "activation_r2": float(activation_r2[i])}
                        for i, m in enumerate(muscles)},
            "torque_residual": {c: float(residual[i]) for i, c in enumerate(frames.coordinates)}}


def pooled_measures(muscles: list[str], results: list[dict], fold_metrics: dict) -> dict:
    """Per-muscle measures over the held-out frames of every fold together, and the spread of the folds."""
    reference = np.concatenate([r["reference"] for r in results])
    estimate = np.concatenate([r["estimate"] for r in results])
    muscle_r2, muscle_nrmse, muscle_rmse = r2(reference, estimate), nrmse(reference, estimate), rmse(reference,
                                                                                                      estimate)
    medians = [m["summary"]["median_r2"] for m in fold_metrics.values()]
    frames = np.array([m["n_frames"] for m in fold_metrics.values()], float)
    coordinates = list(next(iter(fold_metrics.values()))["torque_residual"])
    residual = {c: float(np.sqrt(np.sum([m["torque_residual"][c] ** 2 * n for m, n in
                                         zip(fold_metrics.values(), frames)]) / frames.sum())) for c in coordinates}
    return {"n_frames": int(frames.sum()), **_summary(muscle_r2, muscle_nrmse),
            "fold_median_r2": {"min": float(np.min(medians)), "median": float(np.median(medians)),
                               "max": float(np.max(medians))},
            "muscles": {m: {"r2": float(muscle_r2[i]), "nrmse": _number(muscle_nrmse[i]),
                            "rmse": float(muscle_rmse[i])} for i, m in enumerate(muscles)},
            "torque_residual": residual}


def _summary(muscle_r2: np.ndarray, muscle_nrmse: np.ndarray) -> dict:
    finite = np.isfinite(muscle_nrmse)
    return {"median_r2": float(np.median(muscle_r2)), "mean_r2": float(np.mean(muscle_r2)),
            "mean_nrmse": float(np.mean(muscle_nrmse[finite])) if finite.any() else None}


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# ---- the command ---------------------------------------------------------------------------------------------------
def evaluate(model: str | Path, *, manifest: str | Path | None = None, motion: str | Path | None = None,
             external_loads: str | Path | None = None, reserves: str | None = None, folds: str | float | None = None,
             start: float | None = None, end: float | None = None, lowpass: float | None = DEFAULT_LOWPASS_HZ,
             reference: str = "opensim", epochs: int | None = None, architecture: str = "mjca", seed: int = 0,
             outputs: str = "activations", config=None, out: str | Path, force: bool = False,
             progress: bool = True) -> dict:
    """Cross-validate the network on a manifest's trials or on segments of one trial; write the results.

    Parameters
    ----------
    model : path
    manifest : path, optional
        Leave one trial out (give either this or ``motion``).
    motion, external_loads : path, optional
        One trial, cut into ``folds``: ``"strides"`` or a duration in seconds.
    reserves : path, "auto" or None
    start, end : float, optional
        Time window of ``motion`` that is cut into folds.
    lowpass : float or None
    reference : "opensim" or "fast"
    epochs, architecture, seed, outputs :
        Training of each fold (ignored where ``config``, a TrainConfig, is given).
    out : path
        ``metrics.json``, ``report.md``, ``fold_r2.png`` and one ``fold_N_muscle_forces.png`` per fold.
    force : bool
        Replace existing output files.

    Returns
    -------
    dict
        ``files``, ``report``, ``overall`` (pooled summary), ``folds`` (each fold's summary).
    """
    from .multipliers import check_outputs
    from .network import ARCHITECTURES, NetworkConfig
    from .outputs import OutputFolder
    from .trainer import DEFAULT_EPOCHS, TrainConfig

    if reference not in REFERENCES:
        raise InputError(f"--reference {reference}: choose {' or '.join(REFERENCES)}")
    if config is None:
        if epochs is not None and epochs < 1:
            raise InputError(f"--epochs must be 1 or more, got {epochs}")
        if architecture not in ARCHITECTURES:
            raise InputError(f"--architecture {architecture}: choose one of {', '.join(ARCHITECTURES)}")
        check_outputs(outputs)
        config = TrainConfig(epochs=epochs or DEFAULT_EPOCHS, seed=seed, outputs=outputs,
                             network=NetworkConfig(architecture=architecture))
    if (manifest is None) == (motion is None):
        raise InputError("give --manifest FILE (leave one trial out) or --motion with --folds (segments of one trial)")
    if manifest is not None:
        if folds is not None or external_loads is not None or start is not None or end is not None:
            raise InputError("--manifest makes one fold per trial: leave out --folds, --external-loads, --start, --end "
                             "(the manifest gives each trial's loads and window)")
        plan = manifest_folds(model, manifest, reserves=reserves, lowpass=lowpass)
    else:
        if folds is None:
            raise InputError("--motion needs --folds strides or --folds SECONDS (how to cut the trial into folds)")
        plan = segment_folds(model, motion, external_loads, folds=folds, reserves=reserves, start=start, end=end,
                             lowpass=lowpass)
    names = output_names(len(plan.folds))
    output = OutputFolder(out, names, force=force)
    output.check()
    result = cross_validate(plan, config=config, reference=reference, progress=progress)
    metrics = result["metrics"]
    with output as staging:
        write_figures(result, staging, reference)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False, default=_json) + "\n")
        (staging / "report.md").write_text(format_report(metrics))
    return {"files": [str(Path(out) / n) for n in names], "report": str(Path(out) / "report.md"),
            "overall": {k: metrics["overall"][k] for k in ("n_frames", "median_r2", "mean_r2", "mean_nrmse",
                                                            "fold_median_r2")},
            "folds": {name: m["summary"] for name, m in metrics["folds"].items()}}


def output_names(n_folds: int) -> list[str]:
    """What :func:`evaluate` writes for ``n_folds`` folds."""
    return ["metrics.json", "report.md", "fold_r2.png", *(f"fold_{k + 1}_muscle_forces.png" for k in range(n_folds))]


def write_figures(result: dict, folder: Path, reference: str) -> None:
    """``fold_r2.png`` and one muscle-force figure per fold (held-out frames, reference vs network)."""
    from .plots import heel_strikes, plot_fold_r2, plot_muscle_forces

    metrics = result["metrics"]
    muscles = metrics["muscles"]
    label = REFERENCE_LABELS[reference]
    per_fold = {r["name"]: np.array([metrics["folds"][r["name"]]["muscles"][m]["r2"] for m in muscles])
                for r in result["folds"]}
    per_fold[POOLED] = np.array([metrics["overall"]["muscles"][m]["r2"] for m in muscles])
    plot_fold_r2(muscles, per_fold, folder / "fold_r2.png", reference_label=label)
    for k, fold in enumerate(result["folds"]):
        trial = fold["trial"]
        gait = heel_strikes(trial.time, list(trial.grf_labels), trial.grf)
        plot_muscle_forces(fold["time"], muscles, fold["reference"], fold["estimate"],
                           folder / f"fold_{k + 1}_muscle_forces.png", r2=per_fold[fold["name"]], gait=gait,
                           reference_label=f"{label} (held-out {fold['name']})")


def format_report(metrics: dict) -> str:
    """The human-readable ``report.md`` of a cross-validation."""
    o, t = metrics["overall"], metrics["training"]

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f} %"

    lines = [
        "# opensim-pinn: cross-validation on held-out frames", "",
        f"- Model: `{metrics['model']}` ({len(metrics['muscles'])} muscles)",
        f"- Folds: {metrics['n_folds']}, {metrics['folds_from']}",
        f"- Each fold: the network trained label-free on the other folds ({t['epochs']} epochs, architecture "
        f"`{t['architecture']}`, outputs `{t.get('outputs', 'activations')}`, seed {t['seed']}), then compared on "
        "the held-out frames with "
        f"{metrics['reference']}", "",
        "## Held-out agreement", "",
        "| fold | frames | median R² | mean R² | mean NRMSE | training-frame median R² (vs fast SO) |",
        "|---|---|---|---|---|---|",
    ]
    for name, fold in metrics["folds"].items():
        s = fold["summary"]
        training = [v["median_r2_vs_fast_static_optimization"] for v in fold["training_agreement"].values()
                    if isinstance(v, dict)]
        lines.append(f"| {name} | {fold['n_frames']} | {s['median_r2']:.3f} | {s['mean_r2']:.3f} | "
                     f"{pct(s['mean_nrmse'])} | {', '.join(f'{x:.3f}' for x in training) or 'n/a'} |")
    lines.append(f"| **{POOLED}** | {o['n_frames']} | **{o['median_r2']:.3f}** | {o['mean_r2']:.3f} | "
                 f"{pct(o['mean_nrmse'])} | |")
    lines += ["", "## Muscles (all held-out frames)", "", "| muscle | R² force | NRMSE | RMSE (N) |", "|---|---|---|---|"]
    for name, m in o["muscles"].items():
        lines.append(f"| {name} | {m['r2']:.3f} | {pct(m['nrmse'])} | {m['rmse']:.1f} |")
    lines += ["", "## Joint balance (all held-out frames)", "", "| coordinate | RMS torque residual |", "|---|---|"]
    for name, value in o["torque_residual"].items():
        lines.append(f"| {name} | {value:.4g} |")
    lines += ["", "## How to read it", "",
              "- Every number above the training-frame column is on frames the fold's network never saw. The "
              "training-frame column is a sanity check: there the label-free loss has SO's answer as its optimum, "
              "so values well below 1 mean the training did not converge (more --epochs), not that the network "
              "fails to generalise.",
              "- R² can be very negative for a muscle the reference keeps near its minimum activation: its force "
              "barely varies (read its RMSE).",
              "- The torque residual is what neither the muscles nor the least-cost actuator controls supply of the "
              "inverse-dynamics generalised forces (0 where every coordinate has an actuator).", "",
              "## Figures", "", "![R² per fold](fold_r2.png)", ""]
    lines += [f"![{name}](fold_{k + 1}_muscle_forces.png)" for k, name in enumerate(metrics["folds"])]
    return "\n".join(lines) + "\n"


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


__all__ = ["Fold", "FoldPlan", "segment_folds", "manifest_folds", "cross_validate", "evaluate", "check_held_out",
           "fold_measures", "pooled_measures", "label_free_fit"]
