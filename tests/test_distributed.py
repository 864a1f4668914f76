"""``torchrun --nproc_per_node 2 -m opensim_pinn train``: 2 gloo processes on the CPU give the 1-process result.

Same manifest (two trials of the built-in walk, 16 windows), same global batch of 8
windows: each process takes 4 of every batch and DistributedDataParallel averages
the gradients, so every step is the 1-process step up to the summation order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from opensim_pinn.train import train_network

from test_train_manifest import manifests  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
BATCH = 8
LOSS_RTOL = 1e-4
"""Loss per epoch, 2 processes vs 1: the same frames in each step, float32 sums in another order
(measured: 6e-6)."""
WEIGHT_ATOL = 3e-3
"""Largest weight difference: Adam's first steps move each weight by about the learning rate (3e-3)
whatever its gradient's size, so a gradient near zero whose sign the summation order flips moves a
weight by up to that (measured: 9e-4 after 12 steps)."""


def test_two_gloo_processes_match_one(manifests, tmp_path, session_cache):  # noqa: F811
    one = train_network(str(manifests["model"]), manifest=manifests["train"], batch_windows=BATCH, epochs=EPOCHS,
                        out=tmp_path / "one", progress=False)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   "OPENSIM_PINN_CACHE": str(session_cache), "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "opensim_pinn", "-q", "train", "--model", str(manifests["model"]),
                          "--manifest", str(manifests["train"]), "--batch-windows", str(BATCH),
                          "--epochs", str(EPOCHS), "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=environment, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count('"final_loss"') == 1, "process 0 alone reports"
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "history.csv"]
    reference = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    shared = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert len(shared["history"]) == EPOCHS
    for column in ("dynamics", "performance", "total"):  # means over every window of the corpus, both processes
        assert [r[column] for r in shared["history"]] == pytest.approx(
            [r[column] for r in reference["history"]], rel=LOSS_RTOL)
    for name, weight in reference["network_state"].items():
        difference = (shared["network_state"][name] - weight).abs().max().item()
        assert difference <= WEIGHT_ATOL, f"{name} differs by {difference}"
    assert one["final_loss"]["total"] == pytest.approx(shared["history"][-1]["total"], rel=LOSS_RTOL)


def test_batch_not_shared_evenly_is_refused(manifests, tmp_path, session_cache):  # noqa: F811
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   "OPENSIM_PINN_CACHE": str(session_cache), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "opensim_pinn", "train", "--model", str(manifests["model"]),
                          "--manifest", str(manifests["train"]), "--batch-windows", "5", "--epochs", "1",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=environment,
                         timeout=300)
    assert run.returncode != 0
    assert "make it a multiple of their number" in run.stderr
    assert not (tmp_path / "out").exists()


def test_distributed_outside_torchrun_is_one_line_exit_2(manifests, tmp_path, capfd, monkeypatch):  # noqa: F811
    from opensim_pinn import cli
    from opensim_pinn.distributed import TORCHRUN_VARIABLES

    from test_robustness_inputs import assert_refused

    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["train", "--model", str(manifests["model"]), "--manifest", str(manifests["train"]),
                     "--distributed", "--epochs", "1", "--out", str(tmp_path / "out")])
    assert_refused(capfd, code, "--distributed", "torchrun")
    assert not (tmp_path / "out").exists()
