"""Label-free training lands on OpenSim's Static Optimization on the real cases (opensim_pinn.trainer, opensim_pinn.train).

The issue's acceptance figures, with the defaults (no tuning): the network trained on
a trial reproduces OpenSim SO's muscle forces on it. gait10dof18musc and arm26 are
compared with OpenSim's own SO (AnalyzeTool); gait2392 with both. Then the Trainer's
own contract: several trials at once, seeds, time limits, checkpoints.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from opensim_pinn.errors import InputError
from opensim_pinn.metrics import nrmse, r2
from opensim_pinn.muscle import MusculoskeletalModel
from opensim_pinn.paths import load_or_fit_paths
from opensim_pinn.static_opt import fast_static_optimization
from opensim_pinn.train import train_network
from opensim_pinn.trainer import Trainer, TrainConfig
from opensim_pinn.trial import TrialSettings, prepare_trial
from shared_cases import CASES, Case

# Issue 3's acceptance figures (network forces vs OpenSim Static Optimization, default training).
MEDIAN_R2 = {"gait10dof18musc": 0.95, "gait2392": 0.90, "arm26": 0.95}
MEAN_NRMSE_GAIT10 = 0.08


def case_files(shared_data, case: Case) -> dict:
    folder = shared_data / case.folder

    def path(name):
        return str(folder / name) if name else None

    return {"model": path(case.model), "motion": path(case.motion), "external_loads": path(case.external_loads),
            "reserves": path(case.reserves)}


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, shared_data, tmp_path_factory):
    """Default training through the API, then ``compare`` with OpenSim's Static Optimization."""
    from opensim_pinn.compare import compare

    name, case = request.param, CASES[request.param]
    files = case_files(shared_data, case)
    root = tmp_path_factory.mktemp(name)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        summary = train_network(files["model"], [files["motion"]], [files["external_loads"]],
                                reserves=files["reserves"], start=case.start, end=case.end, lowpass=case.lowpass,
                                step_interval=case.step_interval, out=root / "train", progress=False)
        compare(root / "train" / "checkpoint.pt", files["model"], files["motion"], files["external_loads"],
                reserves=files["reserves"], start=case.start, end=case.end, step_interval=case.step_interval,
                out=root / "compare")
    finally:
        os.chdir(cwd)
    metrics = json.loads((root / "compare" / "metrics.json").read_text())
    return name, summary, metrics


def test_default_training_reproduces_opensim_static_optimization(trained):
    name, summary, metrics = trained
    assert metrics["summary"]["median_r2"] >= MEDIAN_R2[name], metrics["summary"]
    if name == "gait10dof18musc":
        assert metrics["summary"]["mean_nrmse"] <= MEAN_NRMSE_GAIT10, metrics["summary"]
    # The agreement with the project's fast SO solver on the training trial says the same.
    agreement = next(iter(summary["training_agreement"].values()))
    assert agreement["median_r2_vs_fast_static_optimization"] >= MEDIAN_R2[name]


def test_joint_balance_where_no_reserve_acts(trained):
    """arm26 has no reserves: the muscles alone must balance inverse dynamics (as SO's constraint)."""
    name, _, metrics = trained
    if name != "arm26":
        pytest.skip("every coordinate has a reserve or residual actuator in this case")
    assert max(metrics["torque_residual"].values()) < 0.5  # N m, against peak moments of ~10 N m


# ---- the Trainer's contract, on the gait10dof18musc walk ---------------------------------


@pytest.fixture(scope="module")
def walk(shared_data):
    """The walk cut in two trials, its model, muscle module and fast SO on each half."""
    files = case_files(shared_data, CASES["gait10dof18musc"])
    halves = []
    for start, end in ((0.0, 1.25), (1.25, 2.5)):
        trial, info = prepare_trial(TrialSettings(model=files["model"], motion=files["motion"],
                                                  external_loads=files["external_loads"],
                                                  reserves=files["reserves"], start=start, end=end))
        halves.append(trial)
    q = np.concatenate([t.q for t in halves])
    polynomials = load_or_fit_paths(info.path, halves[0].coordinates, np.arange(len(q)) * 0.01, q,
                                    [m.name for m in info.muscles])
    muscles = MusculoskeletalModel(info, polynomials)
    references = [fast_static_optimization(t, info, muscles) for t in halves]
    return halves, info, muscles, polynomials, references


def test_trains_on_several_trials_at_once(walk):
    halves, info, muscles, polynomials, references = walk
    trainer = Trainer(TrainConfig(epochs=400), progress=False).fit(halves, info, muscles, polynomials=polynomials)
    n_muscles = len(info.muscles)
    for trial, reference in zip(halves, references):
        forces = trainer.muscle_forces(trial)
        assert np.median(r2(reference.forces[:, :n_muscles], forces)) >= 0.95
        assert np.nanmean(nrmse(reference.forces[:, :n_muscles], forces)) <= 0.08


def test_seed_makes_training_reproducible(walk):
    halves, info, muscles, polynomials, _ = walk

    def fit(seed):
        return Trainer(TrainConfig(epochs=15, seed=seed), progress=False).fit(halves[:1], info, muscles,
                                                                             polynomials=polynomials)

    def losses(trainer):
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in trainer.history]

    first, again, other = fit(3), fit(3), fit(4)
    assert losses(first) == losses(again)
    np.testing.assert_array_equal(first.predict(halves[0]), again.predict(halves[0]))
    assert not np.array_equal(first.predict(halves[0]), other.predict(halves[0]))


def test_time_limit_stops_training(walk):
    halves, info, muscles, polynomials, _ = walk
    trainer = Trainer(TrainConfig(epochs=10**6, time_limit_s=1.0), progress=False).fit(halves[:1], info, muscles,
                                                                                      polynomials=polynomials)
    assert 0 < len(trainer.history) < 10**6
    assert trainer.history[-1]["wall_s"] < 5.0


def test_checkpoint_round_trip(walk, tmp_path):
    halves, info, muscles, polynomials, _ = walk
    trainer = Trainer(TrainConfig(epochs=5), progress=False).fit(halves[:1], info, muscles, polynomials=polynomials)
    trainer.save(tmp_path / "checkpoint.pt")
    loaded = Trainer.load(tmp_path / "checkpoint.pt")
    np.testing.assert_allclose(loaded.predict(halves[1]), trainer.predict(halves[1]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.muscle_forces(halves[1]), trainer.muscle_forces(halves[1]), rtol=1e-6)
    assert loaded.muscles == trainer.muscles and loaded.coordinates == trainer.coordinates
    assert loaded.history == trainer.history and loaded.lowpass == trainer.lowpass
    assert [p.to_dict() for p in loaded.polynomials] == [p.to_dict() for p in polynomials]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain data: no pickled code
    assert state["package_version"] and state["path_polynomials"] and state["model_info"]["muscles"]


def test_predict_checks_the_trial(walk):
    halves, info, muscles, polynomials, _ = walk
    trainer = Trainer(TrainConfig(epochs=2), progress=False).fit(halves[:1], info, muscles, polynomials=polynomials)
    from dataclasses import replace

    with pytest.raises(InputError, match="external-loads"):
        trainer.predict(replace(halves[1], grf_labels=[], grf=np.zeros((len(halves[1].time), 0))))
    with pytest.raises(InputError, match="coordinates"):
        trainer.predict(replace(halves[1], coordinates=halves[1].coordinates[::-1]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available here")
def test_cuda_without_a_gpu_is_an_input_error(walk, tmp_path):
    halves, info, muscles, polynomials, _ = walk
    with pytest.raises(InputError, match="no CUDA GPU"):
        Trainer(TrainConfig(device="cuda"), progress=False).fit(halves[:1], info, muscles, polynomials=polynomials)
    with pytest.raises(InputError, match="no CUDA GPU"):
        train_network("model.osim", ["motion.mot"], device="cuda", out=tmp_path)
