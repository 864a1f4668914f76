"""Training survives interruption: ``opensim-pinn train --resume RUN_DIR`` (opensim_pinn.snapshots).

A real ``opensim-pinn train`` on arm26 (in its own process) is killed with
SIGKILL, or interrupted with SIGINT (Ctrl-C), once its snapshot has passed
:data:`KILL_AFTER_EPOCHS`; ``--resume`` then finishes it, and the result is
compared with an uninterrupted run of the same settings and seed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from opensim_pinn import cli
from opensim_pinn.snapshots import LOCK_FILE, RESUME_FILE

from shared_cases import SHARED_DATA
from test_robustness_inputs import assert_refused as assert_one_line_refusal

ROOT = Path(__file__).resolve().parents[1]
SHARED_ARM26 = SHARED_DATA / "arm26"
EPOCHS = 600
SNAPSHOT_EVERY = 25
KILL_AFTER_EPOCHS = 50
LOSS_RTOL = 1e-6
"""Final loss of a resumed run vs the uninterrupted one. The resumed run repeats the same float32
operations in the same order (one thread), so on one machine the two agree exactly; the tolerance
only admits a summation order changed by the BLAS library."""
WEIGHT_ATOL = 1e-6
"""Largest difference of any network weight between the resumed and the uninterrupted run (same reason)."""


@pytest.fixture(scope="module")
def arm26_files(tmp_path_factory) -> dict[str, Path]:
    """A copy of arm26's model and motion (tests may change them)."""
    if not SHARED_ARM26.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_ARM26}")
    folder = tmp_path_factory.mktemp("arm26")
    for name in ("arm26.osim", "arm26_InverseKinematics.mot"):
        shutil.copy(SHARED_ARM26 / name, folder / name)
    return {"model": folder / "arm26.osim", "motion": folder / "arm26_InverseKinematics.mot"}


def assert_refused(capfd, code: int, *fragments: str) -> None:
    """A one-line refusal (exit 2) that does not offer to resume the run it refused."""
    line = assert_one_line_refusal(capfd, code, *fragments)
    assert "continue the training with" not in line, line


def train_argv(files: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(files["model"]), "--motion", str(files["motion"]), "--epochs", str(EPOCHS),
            "--snapshot-every", str(SNAPSHOT_EVERY), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def uninterrupted(arm26_files, tmp_path_factory) -> dict:
    """The checkpoint of a run that was never stopped."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert cli.main(["-q", *train_argv(arm26_files, out)]) == 0
    assert not (out / RESUME_FILE).exists(), "a finished run leaves no snapshot"
    return torch.load(out / "checkpoint.pt", weights_only=True)


def start_training(files: dict, out: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "opensim_pinn.cli", "-q", *train_argv(files, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def snapshot_epochs(out: Path) -> int:
    """Epochs done in the run's current snapshot (0 while there is none)."""
    path = out / RESUME_FILE
    if not path.is_file():
        return 0
    return torch.load(path, weights_only=True)["training"]["epochs_done"]


def interrupt_mid_run(files: dict, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``train``, send ``sig`` once a snapshot past KILL_AFTER_EPOCHS exists; the finished process."""
    process = start_training(files, out)
    deadline = time.monotonic() + 300
    while snapshot_epochs(out) < KILL_AFTER_EPOCHS:
        assert process.poll() is None, f"training ended before it could be interrupted:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "no snapshot within 5 minutes"
        time.sleep(0.05)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_same_result(resumed: dict, reference: dict) -> None:
    assert len(resumed["history"]) == len(reference["history"]) == EPOCHS
    final, expected = resumed["history"][-1]["total"], reference["history"][-1]["total"]
    assert final == pytest.approx(expected, rel=LOSS_RTOL)
    for name, weight in reference["network_state"].items():
        difference = (resumed["network_state"][name] - weight).abs().max().item()
        assert difference <= WEIGHT_ATOL, f"{name} differs by {difference}"
    for column in ("dynamics", "performance", "total"):  # the whole loss curve, not only its end
        assert [row[column] for row in resumed["history"]] == pytest.approx(
            [row[column] for row in reference["history"]], rel=LOSS_RTOL)


def visible_files(folder: Path) -> list[str]:
    """Files a user sees (a kill may leave a hidden partial snapshot, which resuming overwrites)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def assert_resumed_from(resumed: dict, snapshot_history: list[dict]) -> None:
    """The epochs before the interruption are the interrupted run's own (wall_s included): not a restart."""
    assert resumed["history"][:len(snapshot_history)] == snapshot_history


def test_killed_training_resumes_to_the_uninterrupted_result(arm26_files, uninterrupted, tmp_path, capfd):
    out = tmp_path / "run"
    killed = interrupt_mid_run(arm26_files, out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert visible_files(out) == [RESUME_FILE], "only the snapshot, never half a file"
    assert (out / LOCK_FILE).is_file(), "a killed run leaves its lock (taken over: its process is gone)"
    history = torch.load(out / RESUME_FILE, weights_only=True)["training"]["history"]
    assert KILL_AFTER_EPOCHS <= len(history) < EPOCHS

    assert cli.main(["-q", "train", "--resume", str(out)]) == 0
    assert visible_files(out) == ["checkpoint.pt", "history.csv"]
    assert not (out / LOCK_FILE).exists()
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert_resumed_from(resumed, history)
    assert_same_result(resumed, uninterrupted)
    assert f'"resumed_at_epoch": {len(history)}' in capfd.readouterr().out


def test_ctrl_c_keeps_the_snapshot_and_says_how_to_resume(arm26_files, uninterrupted, tmp_path):
    out = tmp_path / "run"
    interrupted = interrupt_mid_run(arm26_files, out, signal.SIGINT)
    assert interrupted.returncode == 130
    lines = interrupted.stderr.strip().splitlines()
    assert lines == [f"opensim-pinn: interrupted; continue the training with 'opensim-pinn train --resume {out}'"]
    assert visible_files(out) == [RESUME_FILE]
    history = torch.load(out / RESUME_FILE, weights_only=True)["training"]["history"]

    assert cli.main(["-q", "train", "--resume", str(out)]) == 0
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert_resumed_from(resumed, history)
    assert_same_result(resumed, uninterrupted)


# ---- refusals: exit 2, one line, nothing changed -------------------------------------------

@pytest.fixture()
def interrupted_run(arm26_files, tmp_path) -> Path:
    """A run folder as a killed training leaves it: a snapshot only (made by stopping training early)."""
    import opensim_pinn.snapshots
    import opensim_pinn.train

    out = tmp_path / "run"

    class Stop(Exception):
        pass

    real_write = opensim_pinn.snapshots.write_snapshot

    def write_then_maybe_stop(run_dir, arguments, digests, polynomials, training):
        real_write(run_dir, arguments, digests, polynomials, training)
        if training["epochs_done"] >= SNAPSHOT_EVERY:  # the snapshot after the one before the first epoch
            raise Stop

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(opensim_pinn.snapshots, "write_snapshot", write_then_maybe_stop)
        with pytest.raises(Stop):
            opensim_pinn.train.train_network(str(arm26_files["model"]), [str(arm26_files["motion"])], epochs=EPOCHS,
                                             snapshot_every=SNAPSHOT_EVERY, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [RESUME_FILE]
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_new_training_into_an_interrupted_run_is_refused(arm26_files, interrupted_run, capfd):
    before = _snapshot(interrupted_run)
    code = cli.main(train_argv(arm26_files, interrupted_run))
    assert_refused(capfd, code, "holds an interrupted training (resume.pt)",
                   f"'opensim-pinn train --resume {interrupted_run}'", "--force")
    assert _snapshot(interrupted_run) == before


def test_force_starts_again(arm26_files, interrupted_run, uninterrupted):
    assert cli.main(["-q", *train_argv(arm26_files, interrupted_run, "--force")]) == 0
    assert sorted(p.name for p in interrupted_run.iterdir()) == ["checkpoint.pt", "history.csv"]
    assert_same_result(torch.load(interrupted_run / "checkpoint.pt", weights_only=True), uninterrupted)


@pytest.mark.parametrize("option", [["--epochs", "10"], ["--out", "elsewhere"], ["--seed", "3"],
                                    ["--model", "arm26.osim"], ["--force"]])
def test_resume_with_other_settings_is_refused(interrupted_run, capfd, option):
    before = _snapshot(interrupted_run)
    code = cli.main(["train", "--resume", str(interrupted_run), *option])
    assert_refused(capfd, code, "--resume continues a run with the settings it began with", f"leave out {option[0]}")
    assert _snapshot(interrupted_run) == before


def test_resume_after_an_input_changed_is_refused(arm26_files, interrupted_run, capfd, tmp_path):
    motion = arm26_files["motion"]
    original = motion.read_bytes()
    try:
        motion.write_bytes(original.replace(b"\n", b"\r\n"))  # the same numbers; still a different file
        before = _snapshot(interrupted_run)
        code = cli.main(["train", "--resume", str(interrupted_run)])
        assert_refused(capfd, code, f"the training's input {motion} changed since the run began", "--force")
        assert _snapshot(interrupted_run) == before
    finally:
        motion.write_bytes(original)


def test_resume_after_an_input_was_removed_is_refused(arm26_files, interrupted_run, capfd, tmp_path):
    model = arm26_files["model"]
    moved = tmp_path / "moved.osim"
    model.rename(moved)
    try:
        before = _snapshot(interrupted_run)
        code = cli.main(["train", "--resume", str(interrupted_run)])
        assert_refused(capfd, code, f"the training's input {model} is gone")
        assert _snapshot(interrupted_run) == before
    finally:
        moved.rename(model)


def _edit_snapshot(run_dir: Path, edit) -> None:
    path = run_dir / RESUME_FILE
    snapshot = torch.load(path, weights_only=True)
    edit(snapshot)
    torch.save(snapshot, path)


def test_resume_with_another_version_is_refused(interrupted_run, capfd):
    _edit_snapshot(interrupted_run, lambda snapshot: snapshot.update(package_version="0.0.1"))
    code = cli.main(["train", "--resume", str(interrupted_run)])
    assert_refused(capfd, code, "written by opensim-pinn 0.0.1", "resume it with that version", "--force")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_resume_of_a_cuda_run_without_a_gpu_is_refused(interrupted_run, capfd):
    _edit_snapshot(interrupted_run, lambda snapshot: snapshot["arguments"].update(device="cuda"))
    code = cli.main(["train", "--resume", str(interrupted_run)])
    assert_refused(capfd, code, "this training ran on cuda and no CUDA GPU is available here",
                   "--force --device cpu")
    assert visible_files(interrupted_run) == [RESUME_FILE]


def test_killed_after_the_checkpoint_was_written(arm26_files, interrupted_run, capfd):
    """A kill between writing checkpoint.pt and removing resume.pt: the run counts as finished."""
    leftover = (interrupted_run / RESUME_FILE).read_bytes()
    assert cli.main(["-q", *train_argv(arm26_files, interrupted_run, "--force")]) == 0
    (interrupted_run / RESUME_FILE).write_bytes(leftover)
    old = (interrupted_run / "checkpoint.pt").stat().st_mtime - 1
    os.utime(interrupted_run / RESUME_FILE, (old, old))
    capfd.readouterr()
    code = cli.main(["train", "--resume", str(interrupted_run)])
    assert_refused(capfd, code, "its training finished (checkpoint.pt was written after resume.pt)",
                   "delete the left-over resume.pt")
    code = cli.main(train_argv(arm26_files, interrupted_run))
    assert_refused(capfd, code, "already holds checkpoint.pt, history.csv", "--force")


def test_a_snapshot_counts_only_if_this_command_wrote_it(interrupted_run):
    """The Ctrl-C hint never offers an older run's snapshot (say, during a --force restart's preparation)."""
    from opensim_pinn.snapshots import interrupted

    assert interrupted(interrupted_run)
    assert interrupted(interrupted_run, since=time.time() - 3600)
    assert not interrupted(interrupted_run, since=time.time() + 1)


def test_resume_of_a_folder_without_a_run(tmp_path, capfd):
    assert_refused(capfd, cli.main(["train", "--resume", str(tmp_path / "nowhere")]), "no such folder")
    assert_refused(capfd, cli.main(["train", "--resume", str(tmp_path)]),
                   "holds no interrupted training (resume.pt is missing)")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert_refused(capfd, cli.main(["train", "--resume", str(tmp_path)]), "its training finished")
    (tmp_path / RESUME_FILE).write_text("not a snapshot")
    assert_refused(capfd, cli.main(["train", "--resume", str(tmp_path)]), "not an opensim-pinn training snapshot")
    torch.save({"format": "something else"}, tmp_path / RESUME_FILE)
    assert_refused(capfd, cli.main(["train", "--resume", str(tmp_path)]), "not an opensim-pinn training snapshot")


def test_train_needs_model_motion_and_out_without_resume(capfd):
    assert_refused(capfd, cli.main(["train", "--epochs", "3"]), "train needs --model, --motion, --out",
                   "--resume RUN_DIR")
    assert_refused(capfd, cli.main(["train", "--model", "m.osim", "--motion", "m.mot", "--out", "x",
                                    "--snapshot-every", "0"]), "--snapshot-every must be 1 or more")


def test_a_running_training_keeps_others_out(arm26_files, interrupted_run, capfd):
    """A second train or a --resume into a folder that a live process trains into is refused."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (interrupted_run / LOCK_FILE).write_text(str(other.pid))
        before = _snapshot(interrupted_run)
        for argv in (["train", "--resume", str(interrupted_run)], train_argv(arm26_files, interrupted_run, "--force")):
            assert_refused(capfd, cli.main(argv), f"another 'opensim-pinn train' (process {other.pid}) is training "
                           "into it", "choose another --out")
            assert _snapshot(interrupted_run) == before
    finally:
        other.kill()
        other.wait()


def test_an_error_before_the_first_snapshot_leaves_no_folder(arm26_files, tmp_path, monkeypatch, capfd):
    import opensim_pinn.trainer

    def fail(*args, **kwargs):
        raise opensim_pinn.trainer.InputError("trials differ")

    monkeypatch.setattr(opensim_pinn.trainer.Trainer, "fit", fail)
    out = tmp_path / "new"
    assert_refused(capfd, cli.main(train_argv(arm26_files, out)), "trials differ")
    assert not out.exists()
