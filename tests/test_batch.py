"""Whole datasets (opensim_pinn.batch): predict --manifest and static-opt --manifest on the built-in project.

A manifest of windows of the built-in walk; each trial's files must hold what the one-trial
command writes for the same window, a bad later trial must leave nothing written, and two
processes with RANK/WORLD_SIZE set (as torchrun sets them) must share the trials between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opensim_pinn.cli import main
from opensim_pinn.storage import read_storage

WINDOWS = [("early", 0.0, 0.6), ("late", 0.5, 1.2), ("middle", 0.2, 0.9)]


def write_manifest(path: Path, project: dict, windows=WINDOWS, motion=None) -> Path:
    rows = ["name,motion,external_loads,start,end"]
    rows += [f"{name},{motion or project['motion']},{project['external_loads']},{start},{end}"
             for name, start, end in windows]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def manifest(demo_checkpoint, tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("manifest") / "trials.csv", demo_checkpoint)


def test_predict_manifest_writes_what_predict_writes_per_trial(demo_checkpoint, manifest, tmp_path, capsys):
    from opensim_pinn.predict import predict

    checkpoint = str(demo_checkpoint["checkpoint"])
    assert main(["predict", "--checkpoint", checkpoint, "--manifest", str(manifest), "--out",
                 str(tmp_path / "batch")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 3 and summary["files"] == 9
    assert summary["throughput"]["frames"] == sum(round((end - start) * 100) + 1 for _, start, end in WINDOWS)
    assert summary["throughput"]["frames_per_s"] > 0
    for name, start, end in WINDOWS:
        single = predict(checkpoint, demo_checkpoint["motion"], demo_checkpoint["external_loads"],
                         out=tmp_path / name, start=start, end=end)
        for kind, path in zip(("forces", "activations", "states"), single["files"]):
            expected, got = read_storage(path), read_storage(tmp_path / "batch" / f"{name}_{kind}.sto")
            assert got.labels == expected.labels
            np.testing.assert_array_equal(got.time, expected.time)
            # One network pass for both heads instead of two: the same float32 arithmetic.
            np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-6)


def test_predict_manifest_checks_every_trial_before_writing(demo_checkpoint, tmp_path, capsys):
    project = demo_checkpoint
    bad = write_manifest(tmp_path / "bad.csv", project, WINDOWS + [("outside", 5.0, 9.0)])
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(project["checkpoint"]), "--manifest", str(bad),
                 "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "trial outside" in error and "outside the data" in error and len(error.splitlines()) == 1
    assert not out.exists()  # nothing written for the three good trials either
    good = write_manifest(tmp_path / "good.csv", project, WINDOWS[:1])
    assert main(["predict", "--checkpoint", str(project["checkpoint"]), "--manifest", str(good),
                 "--out", str(out)]) == 0
    before = (out / "early_forces.sto").read_bytes()
    assert main(["predict", "--checkpoint", str(project["checkpoint"]), "--manifest", str(good),
                 "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "early_forces.sto").read_bytes() == before
    assert main(["predict", "--checkpoint", str(project["checkpoint"]), "--manifest", str(good), "--motion",
                 str(project["motion"]), "--out", str(out)]) == 2
    assert "leave out --motion" in capsys.readouterr().err


def test_predict_manifest_failed_write_leaves_nothing(demo_checkpoint, manifest, tmp_path, monkeypatch):
    """A file that cannot be put on disk (here the 5th fsync, in the writer thread) stops the run with that
    error, and nothing is left in --out: no file of any trial, no staging folder, no temporary file."""
    from opensim_pinn import storage
    from opensim_pinn.batch import predict_manifest

    real_fsync, calls = storage.os.fsync, []

    def disk_full_at_the_fifth(descriptor):
        calls.append(descriptor)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr("opensim_pinn.storage.os.fsync", disk_full_at_the_fifth)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        predict_manifest(demo_checkpoint["checkpoint"], manifest, out=out)
    assert not out.exists() or list(out.iterdir()) == []


def test_ranks_share_the_manifest(demo_checkpoint, manifest, tmp_path):
    """Two processes as torchrun starts them (RANK, WORLD_SIZE): trials 0, 2 on rank 0, trial 1 on rank 1."""
    out = tmp_path / "shared_out"
    root = Path(__file__).resolve().parents[1]
    processes = []
    for rank in (0, 1):
        environ = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "PYTHONPATH": str(root)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "opensim_pinn.cli", "-q", "predict", "--checkpoint",
             str(demo_checkpoint["checkpoint"]), "--manifest", str(manifest), "--out", str(out)],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    summaries = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    assert [s["trials"] for s in summaries] == [2, 1]
    assert [s["throughput"]["rank"] for s in summaries] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{name}_{kind}.sto" for name, _, _ in WINDOWS for kind in ("forces", "activations", "states"))


def test_static_opt_manifest_matches_one_trial_runs(demo_checkpoint, manifest, tmp_path, capsys):
    from opensim_pinn.static_opt import static_optimization

    project = demo_checkpoint
    windows = WINDOWS[:2]
    two = write_manifest(tmp_path / "two.csv", project, windows)
    assert main(["static-opt", "--model", str(project["model"]), "--reserves", "auto", "--manifest", str(two),
                 "--out", str(tmp_path / "batch")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["converged"] == summary["throughput"]["frames"]
    for name, start, end in windows:
        single = static_optimization(project["model"], project["motion"], out=str(tmp_path / name),
                                     external_loads=project["external_loads"], reserves="auto", start=start,
                                     end=end)
        expected = read_storage(single["files"][0])
        got = read_storage(tmp_path / "batch" / f"{name}_StaticOptimization_force.sto")
        assert got.labels == expected.labels
        # The batch fits the path polynomials once around all trials' poses, the single run around its own:
        # the forces differ only by the polynomials' fit: within 0.5 % of the trial's largest muscle force
        # (measured: 0.06 %), the actuators' within 0.01 N m.
        n_muscles = 9
        largest = np.abs(expected.data[:, :n_muscles]).max()
        assert np.abs(got.data[:, :n_muscles] - expected.data[:, :n_muscles]).max() < 0.005 * largest
        np.testing.assert_allclose(got.data[:, n_muscles:], expected.data[:, n_muscles:], atol=0.01)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_a_one_line_error(demo_checkpoint, manifest, tmp_path, capsys):
    project = {k: str(v) for k, v in demo_checkpoint.items()}
    commands = [
        ["predict", "--checkpoint", project["checkpoint"], "--manifest", str(manifest)],
        ["predict", "--checkpoint", project["checkpoint"], "--motion", project["motion"]],
        ["static-opt", "--model", project["model"], "--manifest", str(manifest)],
        ["compare", "--checkpoint", project["checkpoint"], "--model", project["model"], "--motion",
         project["motion"]],
        ["train", "--model", project["model"], "--motion", project["motion"]],
    ]
    for command in commands:
        assert main([*command, "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert "no CUDA GPU" in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "out").exists()
    from opensim_pinn.errors import InputError
    from opensim_pinn.static_opt import fast_static_optimization

    with pytest.raises(InputError, match="no CUDA GPU"):
        fast_static_optimization(None, None, None, device="cuda")
