"""Corpus training: ``train --manifest``, minibatches of windows across trials, ``--validation`` (issue #9 item 1).

On the built-in model (tests/conftest.py's ``builtin_project``): two training trials cut
from its walk by the manifest's per-trial windows, a third window held out.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from opensim_pinn import cli, snapshots, trainer as trainer_module
from opensim_pinn.train import resume_training, train_network
from opensim_pinn.trainer import Trainer
from opensim_pinn.windows import window_batches, windows

from test_robustness_inputs import assert_refused

WINDOW = 16  # TrainConfig's default window (frames)
BATCH = 4
EPOCHS = 20
VALIDATE_EVERY = 5
LOSS_RTOL = 1e-5
"""The checkpoint's held-out loss, recomputed from its weights, vs the history's best: the same float32
operations on the same frames; the tolerance only admits another summation order."""


@pytest.fixture(scope="module")
def manifests(builtin_project, tmp_path_factory) -> dict[str, Path]:
    """A training manifest of two trials (0-0.7 s, 0.7-1.4 s of the walk) and a validation one (1.4-2.0 s)."""
    folder = tmp_path_factory.mktemp("manifests")
    motion, loads = builtin_project["motion"], builtin_project["external_loads"]
    (folder / "train.csv").write_text("name,motion,external_loads,start,end\n"
                                      f"first,{motion},{loads},0.0,0.7\nsecond,{motion},{loads},0.7,1.4\n")
    (folder / "validation.toml").write_text(f'[[trial]]\nmotion = "{motion}"\nexternal_loads = "{loads}"\n'
                                            "start = 1.4\nend = 2.0\n")
    return {"model": builtin_project["model"], "train": folder / "train.csv",
            "validation": folder / "validation.toml", "motion": motion, "loads": loads}


def train(manifests, out: Path, **options) -> dict:
    options = {"validation": manifests["validation"], "validate_every": VALIDATE_EVERY, "batch_windows": BATCH,
               "epochs": EPOCHS, **options}
    return train_network(str(manifests["model"]), manifest=manifests["train"], out=out, progress=False,
                         **options)


@pytest.fixture(scope="module")
def corpus_run(manifests, tmp_path_factory) -> dict:
    """A minibatch run with validation, the shapes of every curvature it computed recorded."""
    shapes = []
    real = trainer_module.curvature

    def recording(loss, targets, n_muscles):
        hessian = real(loss, targets, n_muscles)
        shapes.append(tuple(hessian.shape))
        return hessian

    patch = pytest.MonkeyPatch()
    patch.setattr(trainer_module, "curvature", recording)  # the real computation, its shapes recorded
    try:
        out = tmp_path_factory.mktemp("corpus") / "run"
        summary = train(manifests, out)
    finally:
        patch.undo()
    return {"summary": summary, "out": out, "shapes": shapes,
            "checkpoint": torch.load(out / "checkpoint.pt", weights_only=True)}


def test_per_trial_windows_of_the_manifest_are_trained(corpus_run):
    summary, checkpoint = corpus_run["summary"], corpus_run["checkpoint"]
    assert summary["trials"] == ["first", "second"]
    windows = [(t["start"], t["end"]) for t in checkpoint["trials"]]
    assert windows == [(0.0, 0.7), (0.7, 1.4)]
    assert summary["n_frames"] == 71 + 71  # the built-in walk at 100 Hz, both ends included
    assert set(summary["training_agreement"]) == {"first", "second"}


def test_curvatures_are_per_batch_not_per_corpus(corpus_run):
    """Memory follows the batch: no curvature tensor holds more than BATCH windows' frames."""
    n_muscles = len(corpus_run["checkpoint"]["muscles"])
    assert corpus_run["shapes"], "the curvatures were not computed"
    for shape in corpus_run["shapes"]:
        assert shape[0] <= BATCH * WINDOW and shape[1:] == (n_muscles, n_muscles), shape
    corpus_windows = 2 * len(windows(71, WINDOW))
    assert corpus_windows > 2 * BATCH  # so that the bound is a real one


def test_validation_columns_and_best_epoch_kept(corpus_run, manifests):
    summary, checkpoint, out = corpus_run["summary"], corpus_run["checkpoint"], corpus_run["out"]
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == EPOCHS
    validated = [row for row in rows if row["validation_total"] != ""]
    assert [int(row["epoch"]) for row in validated] == list(range(VALIDATE_EVERY, EPOCHS + 1, VALIDATE_EVERY))
    losses = [float(row["validation_total"]) for row in validated]
    best = int(validated[int(np.argmin(losses))]["epoch"])
    assert summary["best_epoch"] == checkpoint["best_epoch"] == best
    assert [int(row["epoch"]) for row in rows if row["best"] == "1"] == [best]

    # The checkpoint holds that epoch's weights: its held-out loss is the best one of the history.
    from opensim_pinn.trial import TrialSettings, prepare_trial

    trained = Trainer.load(out / "checkpoint.pt")
    settings = checkpoint["trials"][0]
    held_out, _ = prepare_trial(TrialSettings(**{**settings, "start": 1.4, "end": 2.0}))
    terms = trained.loss()(torch.as_tensor(trained.predict(held_out), dtype=torch.float32),
                           trained.targets(held_out).to(torch.float32))
    assert float(terms["total"]) == pytest.approx(summary["best_validation_loss"], rel=LOSS_RTOL)
    assert summary["best_validation_loss"] == pytest.approx(min(losses), rel=1e-5)  # history keeps 6 digits


def test_one_batch_of_the_whole_corpus_is_full_batch(manifests, tmp_path):
    """batch_windows at least the corpus's windows: the full-batch training, number for number."""
    full = train(manifests, tmp_path / "full", batch_windows=None, validation=None, validate_every=None, epochs=8)
    whole = train(manifests, tmp_path / "whole", batch_windows=1000, validation=None, validate_every=None, epochs=8)
    load = lambda name: torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)  # noqa: E731
    assert [r["total"] for r in load("full")["history"]] == [r["total"] for r in load("whole")["history"]]
    assert full["final_loss"] == whole["final_loss"]


def test_batches_cover_every_window_once_per_epoch():
    batches = window_batches([5, 3, 4], 5, seed=0, epoch=3)
    pairs = [pair for batch in batches for pair in batch]
    assert sorted(pairs) == [(t, w) for t, n in enumerate([5, 3, 4]) for w in range(n)]
    assert [len(b) for b in batches] == [5, 5, 2]
    assert window_batches([5, 3, 4], 5, seed=0, epoch=3) == batches  # seeded: a resumed run draws the same
    assert window_batches([5, 3, 4], 5, seed=0, epoch=4) != batches


def test_resume_with_a_manifest_finishes_as_uninterrupted(manifests, corpus_run, tmp_path, monkeypatch):
    """Ctrl-C after a snapshot mid-run, then resume_training: the same history, weights and best epoch."""
    real = snapshots.write_snapshot

    def interrupting(run_dir, arguments, digests, polynomials, training):
        real(run_dir, arguments, digests, polynomials, training)
        if training["epochs_done"] == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(snapshots, "write_snapshot", interrupting)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(manifests, out, snapshot_every=5)
    monkeypatch.setattr(snapshots, "write_snapshot", real)
    summary = resume_training(out, progress=False)
    assert summary["resumed_at_epoch"] == 10
    resumed, reference = torch.load(out / "checkpoint.pt", weights_only=True), corpus_run["checkpoint"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    for column in ("total", "validation_total"):
        assert [r[column] for r in resumed["history"] if column in r] == pytest.approx(
            [r[column] for r in reference["history"] if column in r], rel=1e-6)
    for name, weight in reference["network_state"].items():
        assert (resumed["network_state"][name] - weight).abs().max().item() <= 1e-6, name


@pytest.mark.parametrize("rows, fragments", [
    ("motion,start,end\nmissing_IK.mot,0,1\n", ["line 2", "missing_IK.mot"]),
    ("motion,start,end\n{motion},1.0,0.5\n", ["line 2", "start 1 s is not before end 0.5 s"]),
    ("motion,start\n{motion},soon\n", ["line 2", "'soon' is not a time"]),
    ("motion,speed\n{motion},1.2\n", ["unknown manifest column", "speed"]),
    ("external_loads\n{loads}\n", ["'motion' column"]),
    ("motion\n", ["lists no trials"]),
])
def test_bad_manifest_is_one_line_exit_2(manifests, tmp_path, capfd, rows, fragments):
    manifest = tmp_path / "bad.csv"
    manifest.write_text(rows.format(motion=manifests["motion"], loads=manifests["loads"]))
    code = cli.main(["train", "--model", str(manifests["model"]), "--manifest", str(manifest),
                     "--out", str(tmp_path / "out")])
    assert_refused(capfd, code, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--motion", "{motion}"], "not both"),
    (["--validate-every", "5"], "--validate-every needs --validation"),
    (["--batch-windows", "0"], "--batch-windows must be 1 or more"),
])
def test_conflicting_options_are_one_line_exit_2(manifests, tmp_path, capfd, extra, fragment):
    motion = str(manifests["motion"])
    code = cli.main(["train", "--model", str(manifests["model"]), "--manifest", str(manifests["train"]),
                     "--out", str(tmp_path / "out"), *[e.format(motion=motion) for e in extra]])
    assert_refused(capfd, code, fragment)
    assert not (tmp_path / "out").exists()
