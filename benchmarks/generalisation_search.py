"""Experiment: which design changes raise the network's accuracy on frames it was never trained on.

gait10dof18musc walk (subject01, strong reserves, 6 Hz): train on 0-1.25 s, test on 1.25-2.5 s (the
next stride). Each variant is trained label-free from the same seed; its muscle forces on the
held-out frames are compared with the fast Static Optimization solver
(:func:`opensim_pinn.static_opt.fast_static_optimization`, which agrees with OpenSim SO at R^2 0.9999),
per muscle: median R^2 and mean NRMSE (RMSE / range). Training-frame R^2 is reported too.
Variants train without input noise unless they name it ("noise0.2" is the package's default since this search).
With several seeds, each variant's ensemble is scored too: the mean of the seeds' activations (and, with
multiplier outputs, the activations of the seeds' mean multipliers); it costs one inference per network.
The "+ema" and "+swa" variants end with averaged weights (:class:`RegularisedTrainer`).

Every variant uses the same path polynomials (fitted once on the poses of the whole walk and its
mirror image), so that differences come from the network and its data only.

Usage: python benchmarks/generalisation_search.py [--variants a,b] [--epochs N] [--seeds 0,1] [--opensim]
       [--out benchmarks/results/generalisation_search.json]
       python benchmarks/generalisation_search.py --table   (the saved results as a Markdown table)
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from opensim_pinn import augment
from opensim_pinn.augment import augmented_settings
from opensim_pinn.external_loads import loads_datafile, parse_external_loads
from opensim_pinn.metrics import nrmse, r2
from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.network import NetworkConfig
from opensim_pinn.paths import load_or_fit_paths
from opensim_pinn.child import run_in_child
from opensim_pinn.static_opt import fast_static_optimization, opensim_static_optimization
from opensim_pinn.storage import read_storage
from opensim_pinn.trainer import TrainConfig, Trainer
from opensim_pinn.trial import TrialSettings, load_model_info, prepare_trial
from opensim_pinn.windows import blend, window_index

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gait10dof18musc"
SPLIT = 1.25

VARIANTS = {
    "baseline": {},
    "mlp": {"network": {"architecture": "mlp"}},
    "bigru": {"network": {"architecture": "bigru"}},
    "cnn": {"network": {"architecture": "cnn"}},
    "mirror": {"augment": ["mirror"]},
    "timescale": {"augment": ["timescale"]},
    "perturb": {"augment": ["perturb"]},
    "mirror+timescale": {"augment": ["mirror", "timescale"]},
    "mirror+timescale+perturb": {"augment": ["mirror", "timescale", "perturb"]},
    "moments": {"moments": True},
    "mirror+moments": {"augment": ["mirror"], "moments": True},
    "mirror+timescale+moments": {"augment": ["mirror", "timescale"], "moments": True},
    "dropout0.1": {"network": {"dropout": 0.1}},
    "small": {"network": {"d_model": 16, "gru_hidden": 32}},
    "large": {"network": {"d_model": 64, "gru_hidden": 128}},
    "large+noise0.2": {"network": {"d_model": 64, "gru_hidden": 128}, "train": {"input_noise": 0.2}},
    "mirror+noise0.2": {"augment": ["mirror"], "train": {"input_noise": 0.2}},
    "window8": {"train": {"window_s": 0.08}},
    "window32": {"train": {"window_s": 0.32}},
    "epochs300": {"train": {"epochs": 300}},
    "no_pelvis_tx": {"ignore": ("pelvis_tx",)},
    "no_pelvis_tx+mirror": {"ignore": ("pelvis_tx",), "augment": ["mirror"]},
    "no_pelvis_tx+moments": {"ignore": ("pelvis_tx",), "moments": True},
    "no_pelvis_tx+mirror+moments": {"ignore": ("pelvis_tx",), "augment": ["mirror"], "moments": True},
    "no_pelvis_tx+mirror+timescale": {"ignore": ("pelvis_tx",), "augment": ["mirror", "timescale"]},
    "no_pelvis_tx+mlp": {"ignore": ("pelvis_tx",), "network": {"architecture": "mlp"}},
    "perturb5x4": {"augment": ["perturb"], "perturb": (5.0, 4)},
    "mirror+perturb5x4": {"augment": ["mirror", "perturb"], "perturb": (5.0, 4)},
    "perturb10x4": {"augment": ["perturb"], "perturb": (10.0, 4)},
    "noise0.1": {"train": {"input_noise": 0.1}},
    "noise0.2": {"train": {"input_noise": 0.2}},
    "noise0.3": {"train": {"input_noise": 0.3}},
    "noise0.4": {"train": {"input_noise": 0.4}},
    "noise0.5": {"train": {"input_noise": 0.5}},
    "noise0.5+epochs2000": {"train": {"input_noise": 0.5, "epochs": 2000}},
    "mirror+noise0.3": {"augment": ["mirror"], "train": {"input_noise": 0.3}},
    "perturb5x4+noise0.3": {"augment": ["perturb"], "perturb": (5.0, 4), "train": {"input_noise": 0.3}},
    "weight_decay1e-3": {"weight_decay": 1e-3},
    "weight_decay1e-2": {"weight_decay": 1e-2},
    "mirror+mlp": {"augment": ["mirror"], "network": {"architecture": "mlp"}},
    "mirror+timescale+mlp": {"augment": ["mirror", "timescale"], "network": {"architecture": "mlp"}},
    "multipliers": {"train": {"outputs": "multipliers"}},
    "multipliers+noise0.2": {"train": {"outputs": "multipliers", "input_noise": 0.2}},
    "mirror+multipliers+noise0.2": {"augment": ["mirror"], "train": {"outputs": "multipliers", "input_noise": 0.2}},
    "tau": {"tau": True},
    "tau+noise0.2": {"tau": True, "train": {"input_noise": 0.2}},
    "tau+multipliers": {"tau": True, "train": {"outputs": "multipliers"}},
    "tau+multipliers+noise0.2": {"tau": True, "train": {"outputs": "multipliers", "input_noise": 0.2}},
    "tau+mlp": {"tau": True, "network": {"architecture": "mlp"}},
    "tau+mirror+noise0.2": {"tau": True, "augment": ["mirror"], "train": {"input_noise": 0.2}},
    "tau+perturb5x4+noise0.2": {"tau": True, "augment": ["perturb"], "perturb": (5.0, 4), "train": {"input_noise": 0.2}},
    "tau+noise0.4": {"tau": True, "train": {"input_noise": 0.4}},
    "tau+lam0+multipliers+noise0.2": {"tau": True, "unbounded": "multipliers",
                                      "train": {"outputs": "multipliers", "input_noise": 0.2}},
    "tau+a0+multipliers+noise0.2": {"tau": True, "unbounded": "activations",
                                    "train": {"outputs": "multipliers", "input_noise": 0.2}},
    # the loads' generalised forces computed exactly, the network learns the rest, SO solved (motion_forces)
    "forces": {"train": {"outputs": "forces"}},
    "forces+noise0.2": {"train": {"outputs": "forces", "input_noise": 0.2}},
    "forces+mirror+noise0.2": {"augment": ["mirror"], "train": {"outputs": "forces", "input_noise": 0.2}},
}
for _base, _settings in (("noise0.2", VARIANTS["noise0.2"]),
                         ("tau+multipliers+noise0.2", VARIANTS["tau+multipliers+noise0.2"])):
    for _decay in (0.99, 0.995, 0.999):  # exponential moving averages of the weights, per optimiser step
        VARIANTS[f"{_base}+ema{_decay}"] = {**_settings, "average": ("ema", _decay)}
    for _last in (0.25, 0.5):  # stochastic weight averaging: the plain mean over the last fraction of the steps
        VARIANTS[f"{_base}+swa{_last}"] = {**_settings, "average": ("swa", _last)}
    # SWA as its authors run it: the learning rate held at half its peak while averaging the last half
    VARIANTS[f"{_base}+swa0.5+lr0.5"] = {**_settings, "average": ("swa", 0.5, 0.5)}


class RegularisedTrainer(Trainer):
    """Trainer with candidate changes that the package does not have: L2 weight decay in Adam,
    coordinates left out of the inputs (their normalised value set to 0), and averaged weights.

    ``average``: ``("ema", decay)``, the network ends with the exponential moving average of its
    weights after each optimiser step, bias-corrected (the weights of step ``t`` count ``(1 - decay)
    decay^(T - t)``, normalised to sum 1); ``("swa", fraction[, lr_floor])``, with the plain mean of its
    weights after each of the last ``fraction`` of the steps, the learning rate there held at least at
    ``lr_floor`` times its peak when given.
    """

    def __init__(self, config, *, weight_decay: float = 0.0, ignore: tuple = (), average: tuple | None = None):
        super().__init__(config, progress=False)
        self.weight_decay, self.ignore, self.average = weight_decay, ignore, average

    def _normalize(self, features):
        normalized = super()._normalize(features)
        normalized[:, [self.coordinates.index(c) for c in self.ignore]] = 0.0
        return normalized

    def _train(self, *args, **kwargs):
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.weight_decay
        if self.average is None:
            return super()._train(*args, **kwargs)
        kind, value, *floor = self.average
        total = self.config.epochs  # full batch: one optimiser step per epoch
        first = total - int(round(value * total)) if kind == "swa" else 0
        weights = {k: v for k, v in self.network.state_dict().items() if v.is_floating_point()}
        mean = {k: torch.zeros_like(v) for k, v in weights.items()}
        steps = 0

        def lr_floor(optimizer, args, kwargs):
            if floor and steps >= first:
                for group in optimizer.param_groups:
                    group["lr"] = max(group["lr"], floor[0] * self.config.learning_rate)

        def accumulate(optimizer, args, kwargs):
            nonlocal steps
            steps += 1
            if steps <= first:
                return
            if kind == "ema":  # bias-corrected: step 1 gives the weights themselves
                share = (1 - value) / (1 - value ** steps)
            else:
                share = 1 / (steps - first)
            with torch.no_grad():
                for k, v in weights.items():
                    mean[k] += share * (v - mean[k])

        hooks = [self.optimizer.register_step_pre_hook(lr_floor), self.optimizer.register_step_post_hook(accumulate)]
        try:
            super()._train(*args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        assert steps == total, f"{steps} optimiser steps, expected {total} (one per epoch)"
        with torch.no_grad():
            for k, v in weights.items():
                v.copy_(mean[k])


def multipliers(trainer, trial) -> torch.Tensor:
    """SO's multipliers (n_frames, n_coordinates) that a network with multiplier outputs predicts at the trial's
    frames (as in :meth:`Trainer.outputs`, before ``clip(M^T lam)``)."""
    frames = trainer.features(trial)
    features, grid = trainer._to_ticks(frames, trial.time)
    index = window_index(features.shape[0], trainer.config.window_frames(), device=features.device)
    with torch.inference_mode():
        logits, _ = trainer._window_outputs(features, index)
        blended = trainer._to_frames(blend(logits, index, features.shape[0]), grid, trial.time)
    return blended * torch.as_tensor(trainer.multiplier_scale, dtype=blended.dtype)


def multiplier_ensemble_forces(trainers, trial) -> np.ndarray:
    """Muscle forces (N) from the mean of the networks' multipliers: ``clip(M^T mean(lam))``."""
    lam = torch.stack([multipliers(t, trial) for t in trainers]).mean(0)
    first = trainers[0]  # trained on the same trials: the same input normalisation and muscle matrix
    activations = first._multiplier_activations(first.features(trial), lam, *first._bounds(lam.device))
    return first.muscle_forces(trial, activations)


def base_settings(start: float, end: float) -> TrialSettings:
    return TrialSettings(model=str(DATA / "subject01.osim"), motion=str(DATA / "subject01_walk_IK.mot"),
                         external_loads=str(DATA / "subject01_walk_grf.xml"),
                         reserves=str(DATA / "gait10dof18musc_Strong_actuators.xml"), start=start, end=end)


def ground_moments(trial, external_loads: str) -> tuple[list[str], np.ndarray]:
    """Moment (N m) of each foot's ground reaction about the pelvis origin, (n_frames, 3 per force).

    ``(p - r) x F + T`` with ``p`` the centre of pressure, ``r`` = (pelvis_tx, pelvis_ty, pelvis_tz or 0),
    ``F`` the force and ``T`` the free torque, all in ground: the information about where the
    force acts, which the forces alone do not carry (zero in swing, where the centre of pressure is not
    defined).
    """
    loads = parse_external_loads(Path(external_loads))
    table = read_storage(loads_datafile(external_loads, loads))
    at = lambda label: np.interp(trial.time, table.time, table.column(label))  # noqa: E731
    origin = np.column_stack([trial.q[:, trial.coordinates.index(f"pelvis_t{a}")]
                              if f"pelvis_t{a}" in trial.coordinates else np.zeros(len(trial.time)) for a in "xyz"])
    moments = {}
    for force in loads.findall("objects/ExternalForce"):
        get = {tag: (force.findtext(f"{tag}_identifier") or "").strip() for tag in ("force", "point", "torque")}
        vector = lambda prefix: np.column_stack([at(prefix + a) if prefix + a in table.labels else  # noqa: E731
                                                 np.zeros(len(trial.time)) for a in "xyz"])
        moment = np.cross(vector(get["point"]) - origin, vector(get["force"])) + vector(get["torque"])
        body = force.findtext("applied_to_body").strip()
        moments[body] = moments.get(body, 0.0) + moment
    bodies = sorted(moments)  # in the order of the force labels (external_loads.read_external_loads)
    return ([f"{body}/ground/m{a}" for body in bodies for a in "xyz"],
            np.concatenate([moments[body] for body in bodies], axis=1))


def with_moments(trial, settings: TrialSettings, info):
    """The trial with the ground reaction moments about the pelvis origin appended to its GRF inputs."""
    labels, moments = ground_moments(trial, settings.external_loads)
    return replace(trial, grf_labels=list(trial.grf_labels) + labels, grf=np.concatenate([trial.grf, moments], 1))


def with_tau(trial):
    """The trial with its inverse-dynamics generalised forces (N m or N) appended to the GRF inputs: what the
    network would read if prediction ran OpenSim's inverse dynamics first (not a package option)."""
    return replace(trial, grf_labels=list(trial.grf_labels) + [f"tau/{c}" for c in trial.coordinates],
                   grf=np.concatenate([trial.grf, trial.tau], 1))


def with_unbounded_so(trial, muscle_model, what: str):
    """The trial with SO's solution without activation bounds appended to its GRF inputs: per frame, for
    cost sum(a^2) + sum(u^2) and M a + B u = tau (``M`` the muscle matrix, ``B`` the actuators'),
    ``lam0 = (M M^T + B B^T)^-1 tau`` (``what="multipliers"``, n_coordinates) or ``a0 = M^T lam0``
    (``"activations"``, n_muscles): one linear solve per frame, no optimisation (not a package option)."""
    as64 = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        m = copy.deepcopy(muscle_model).to(torch.float64).muscle_matrix(as64(trial.q), as64(trial.qd))[0]  # (T, C, M)
        b = as64(trial.actuator_map).transpose(1, 2)  # (T, C, A)
        lam = torch.linalg.solve(m @ m.transpose(1, 2) + b @ b.transpose(1, 2), as64(trial.tau).unsqueeze(-1))
        values = lam.squeeze(-1) if what == "multipliers" else (m.transpose(1, 2) @ lam).squeeze(-1)
    names = trial.coordinates if what == "multipliers" else [f"m{j}" for j in range(values.shape[1])]
    return replace(trial, grf_labels=list(trial.grf_labels) + [f"unbounded/{n}" for n in names],
                   grf=np.concatenate([trial.grf, values.numpy()], 1))


def evaluate(trainer, trial, reference, forces=None) -> dict:
    forces = trainer.muscle_forces(trial) if forces is None else forces
    n = forces.shape[1]
    return {"median_r2": float(np.median(r2(reference[:, :n], forces))),
            "mean_nrmse": float(np.nanmean(nrmse(reference[:, :n], forces)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the trainer's)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--opensim", action="store_true",
                        help="also compare the held-out frames with OpenSim's own Static Optimization")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generalisation_search.json"))
    parser.add_argument("--table", action="store_true", help="print the saved results as a table and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    train_settings, test_settings = base_settings(0.0, SPLIT), base_settings(SPLIT, 2.5)
    info = load_model_info(train_settings.model, train_settings.reserves)
    train_trial, _ = prepare_trial(train_settings, info=info)
    test_trial, _ = prepare_trial(test_settings, info=info)
    whole, _ = prepare_trial(base_settings(0.0, 2.5), info=info)
    mirrored_whole, _ = prepare_trial(augmented_settings(base_settings(0.0, 2.5), ["mirror"], info)[0], info=info)
    q = np.concatenate([whole.q, mirrored_whole.q])
    polynomials = load_or_fit_paths(info.path, whole.coordinates, np.arange(len(q)) * 0.01, q,
                                    [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)
    references = {name: fast_static_optimization(t, info, muscle_model).forces
                  for name, t in (("train", train_trial), ("test", test_trial))}
    if args.opensim:
        so = run_in_child("OpenSim static optimization", opensim_static_optimization, test_settings.model,
                          test_settings.motion, test_settings.external_loads, test_settings.reserves, SPLIT, 2.5,
                          test_settings.lowpass)
        rows = [int(np.argmin(np.abs(so.time - t))) for t in test_trial.time]
        assert np.abs(so.time[rows] - test_trial.time).max() < 1e-5, "OpenSim SO frames differ from the trial's"
        opensim_forces = so.forces[rows][:, [so.labels.index(m.name) for m in info.muscles]]
        agreement = evaluate(None, test_trial, references["test"], opensim_forces)
        print(f"fast SO vs OpenSim SO on the held-out frames: median R^2 {agreement['median_r2']:.5f}", flush=True)

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name in args.variants.split(","):
        variant = VARIANTS[name]
        degrees, copies = variant.get("perturb", (2.0, 1))
        augment.POSE_NOISE_RAD, augment.PERTURBED_COPIES = np.deg2rad(degrees), copies
        augmented = augmented_settings(train_settings, variant.get("augment", []), info) \
            if variant.get("augment") else []
        pairs = [(train_settings, train_trial)] + [(s, prepare_trial(s, info=info)[0]) for s in augmented]
        test = test_trial
        if variant.get("moments"):
            pairs = [(s, with_moments(t, s, info)) for s, t in pairs]
            test = with_moments(test_trial, test_settings, info)
        if variant.get("tau"):
            pairs = [(s, with_tau(t)) for s, t in pairs]
            test = with_tau(test)
        if variant.get("unbounded"):
            pairs = [(s, with_unbounded_so(t, muscle_model, variant["unbounded"])) for s, t in pairs]
            test = with_unbounded_so(test, muscle_model, variant["unbounded"])
        trials = [t for _, t in pairs]
        ensemble = []
        for seed in (int(s) for s in args.seeds.split(",")):
            train = {"seed": seed, "input_noise": 0.0, **variant.get("train", {})}  # as measured: noise only when named
            if args.epochs is not None and "epochs" not in variant.get("train", {}):
                train["epochs"] = args.epochs
            config = TrainConfig(network=NetworkConfig(**variant.get("network", {})), threads=1, **train)
            began = time.perf_counter()
            trainer = RegularisedTrainer(config, weight_decay=variant.get("weight_decay", 0.0),
                                         ignore=variant.get("ignore", ()), average=variant.get("average"))
            trainer.fit(trials, info, muscle_model, polynomials=polynomials)
            train_s = time.perf_counter() - began
            ensemble.append((trainer.muscle_forces(test), trainer.muscle_forces(trials[0]), trainer))
            row = {"variant": name, "seed": seed, "train_frames": sum(len(t.time) for t in trials),
                   "train_s": round(train_s, 1),
                   "held_out": evaluate(trainer, test, references["test"]),
                   **({"held_out_vs_opensim_so": evaluate(trainer, test, opensim_forces)} if args.opensim else {}),
                   "training": evaluate(trainer, trials[0], references["train"])}
            results[f"{name}/seed{seed}"] = row
            if args.opensim:
                print(f"{name:28s} seed {seed}  vs OpenSim SO: held-out R^2 "
                      f"{row['held_out_vs_opensim_so']['median_r2']:.3f} NRMSE "
                      f"{100 * row['held_out_vs_opensim_so']['mean_nrmse']:5.1f} %", flush=True)
            print(f"{name:28s} seed {seed}  held-out R^2 {row['held_out']['median_r2']:.3f} "
                  f"NRMSE {100 * row['held_out']['mean_nrmse']:5.1f} %   training R^2 "
                  f"{row['training']['median_r2']:.4f}   ({row['train_frames']} frames, {row['train_s']} s)",
                  flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
        if len(ensemble) > 1:  # the seeds' networks averaged (an ensemble)
            seeds = [row["seed"] for key, row in results.items() if key.startswith(f"{name}/seed")]
            row = {"variant": name, "seeds": seeds[-len(ensemble):],
                   "held_out": evaluate(None, test, references["test"], np.mean([e[0] for e in ensemble], 0)),
                   "training": evaluate(None, trials[0], references["train"], np.mean([e[1] for e in ensemble], 0))}
            results[f"{name}/ensemble{len(ensemble)}"] = row
            print(f"{name:28s} ensemble of {len(ensemble)}  held-out R^2 {row['held_out']['median_r2']:.3f} "
                  f"NRMSE {100 * row['held_out']['mean_nrmse']:5.1f} %   training R^2 "
                  f"{row['training']['median_r2']:.4f}", flush=True)
            if variant.get("train", {}).get("outputs") == "multipliers":  # the mean of the multipliers instead
                trainers = [e[2] for e in ensemble]
                row = {**row, "held_out": evaluate(None, test, references["test"],
                                                   multiplier_ensemble_forces(trainers, test)),
                       "training": evaluate(None, trials[0], references["train"],
                                            multiplier_ensemble_forces(trainers, trials[0]))}
                results[f"{name}/ensemble{len(ensemble)}_multipliers"] = row
                print(f"{name:28s} ensemble of {len(ensemble)}, mean multipliers  held-out R^2 "
                      f"{row['held_out']['median_r2']:.3f} NRMSE {100 * row['held_out']['mean_nrmse']:5.1f} %   "
                      f"training R^2 {row['training']['median_r2']:.4f}", flush=True)
            out.write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: dict) -> str:
    """One line per variant: held-out median R^2 and mean NRMSE, mean (min-max) over its seeds, its ensemble
    of the most seeds (the mean of the activations; with multiplier outputs, then the mean of the multipliers)."""
    lines = ["| variant | seeds | held-out median R^2 | held-out mean NRMSE | ensemble R^2 / NRMSE | training R^2 |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(key.split("/")[0] for key in results):
        rows = [row for key, row in results.items() if key.startswith(f"{name}/seed")]
        ensembles = {key.split("/")[1]: row for key, row in results.items() if key.startswith(f"{name}/ensemble")}
        largest = max((key for key in ensembles if key[len("ensemble"):].isdigit()),
                      key=lambda key: int(key[len("ensemble"):]), default=None)
        r2s = [row["held_out"]["median_r2"] for row in rows]
        errors = [100 * row["held_out"]["mean_nrmse"] for row in rows]
        fits = [row["training"]["median_r2"] for row in rows]
        shown = [ensembles[key] for key in (largest, f"{largest}_multipliers") if key in ensembles]
        both = "; ".join(f"{e['held_out']['median_r2']:.3f} / {100 * e['held_out']['mean_nrmse']:.1f} %"
                         for e in shown)
        lines.append(f"| {name} | {len(rows)} | {np.mean(r2s):.3f} ({min(r2s):.3f}-{max(r2s):.3f}) | "
                     f"{np.mean(errors):.1f} % ({min(errors):.1f}-{max(errors):.1f}) | {both} | {min(fits):.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
