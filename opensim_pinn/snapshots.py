"""Training snapshots: what ``opensim-pinn train --resume RUN_DIR`` continues from.

While it trains, :func:`opensim_pinn.train.train_network` keeps ``RUN_DIR/resume.pt``
up to date (before the first epoch and every ``snapshot_every`` epochs, written to
a temporary name and renamed into place, so a kill never leaves half a file). It
holds the run's arguments, a digest of every input file, the path polynomials and
the training state at the end of an epoch: network and Adam state, loss history.
The file is removed once the run's ``checkpoint.pt`` is written.

Resuming rebuilds the trials from the same files (cached, so quickly) and
trains exactly the epochs that were not done: on the CPU the result is the one
an uninterrupted run gives, weight for weight.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from . import __version__
from .errors import InputError

DEFAULT_SNAPSHOT_EVERY = 100
"""Epochs between training snapshots; writing one takes milliseconds."""

RESUME_FILE = "resume.pt"
LOCK_FILE = ".training.lock"
"""Holds the process id of the ``train`` writing into a run folder (left behind by a killed one)."""
SNAPSHOT_FORMAT = "opensim-pinn-training-snapshot"
SNAPSHOT_VERSION = 1


def input_files(arguments: dict) -> list[str]:
    """Every file a training run reads: model, motions, external loads and their data, reserves."""
    from .external_loads import loads_datafile

    files = [arguments["model"], *arguments["motions"]]
    for loads in arguments["external_loads"]:
        if loads is not None:
            files += [loads, str(loads_datafile(loads))]
    if arguments["reserves"] not in (None, "auto"):
        files.append(arguments["reserves"])
    return list(dict.fromkeys(files))


def file_digests(files: list[str]) -> dict[str, str]:
    """SHA-256 of each of ``files``, by path."""
    from .trial import file_digest

    return {path: file_digest(path) for path in files}


def interrupted(run_dir: str | Path, *, since: float | None = None) -> bool:
    """Whether ``run_dir`` holds the snapshot of an unfinished run (written after ``since``, a time.time())."""
    snapshot, checkpoint = Path(run_dir) / RESUME_FILE, Path(run_dir) / "checkpoint.pt"
    if not snapshot.is_file():
        return False
    written = snapshot.stat().st_mtime
    finished = checkpoint.is_file() and checkpoint.stat().st_mtime >= written
    return not finished and (since is None or written >= since)


def check_not_training(run_dir: str | Path) -> None:
    """Raise :class:`InputError` if another running process trains into ``run_dir``."""
    lock = Path(run_dir) / LOCK_FILE
    try:
        pid = int(lock.read_text())
    except (OSError, ValueError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return  # a killed run's lock
    except PermissionError:
        pass  # it exists, under another user
    raise InputError(f"{run_dir}: another 'opensim-pinn train' (process {pid}) is training into it; wait for it "
                     f"to end or stop it, or choose another --out (if no such training runs, delete {lock})")


@contextlib.contextmanager
def training_lock(run_dir: str | Path):
    """Hold ``run_dir`` for this process while the block trains into it.

    ``run_dir`` is created if needed, and removed again if the block leaves it empty.
    """
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_FILE
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                check_not_training(run_dir)
                lock.unlink(missing_ok=True)  # a killed run's lock
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
    except OSError as error:
        raise InputError(f"{run_dir}: cannot write the training there ({error.strerror or type(error).__name__}); "
                         "choose another --out") from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()


def write_snapshot(run_dir: str | Path, arguments: dict, digests: dict, polynomials: list, training: dict) -> None:
    """Write ``run_dir/resume.pt`` atomically.

    ``polynomials`` are :meth:`PathPolynomial.to_dict` of the run's paths, ``training``
    is :meth:`opensim_pinn.trainer.Trainer.training_state`.
    """
    import torch

    from .storage import write_atomically

    buffer = io.BytesIO()
    torch.save({"format": SNAPSHOT_FORMAT, "format_version": SNAPSHOT_VERSION, "package_version": __version__,
                "arguments": arguments, "inputs": digests, "path_polynomials": polynomials,
                "training": training}, buffer)
    try:
        write_atomically(Path(run_dir) / RESUME_FILE, buffer.getvalue())
    except OSError as error:
        raise InputError(f"{run_dir}: cannot write the training snapshot there "
                         f"({error.strerror or type(error).__name__}); choose another --out") from None


def read_snapshot(run_dir: str | Path) -> dict:
    """The snapshot of an interrupted run in ``run_dir``, its input files checked unchanged.

    Raises
    ------
    InputError
        No such folder, no snapshot (never started, or finished), not a snapshot,
        another opensim-pinn version, or an input file changed or missing since
        the run began.
    """
    import torch

    from .trial import file_digest

    run_dir = Path(run_dir)
    path = run_dir / RESUME_FILE
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such folder; give the --out folder of the interrupted 'opensim-pinn train'")
    if not path.is_file():
        if (run_dir / "checkpoint.pt").is_file():
            raise InputError(f"{run_dir}: its training finished (checkpoint.pt is there); nothing to resume")
        raise InputError(f"{run_dir}: holds no interrupted training ({RESUME_FILE} is missing); start the "
                         "training again without --resume")
    if not interrupted(run_dir):
        raise InputError(f"{run_dir}: its training finished (checkpoint.pt was written after {RESUME_FILE}); "
                         f"nothing to resume: delete the left-over {RESUME_FILE}")
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several kinds for a file that is not a snapshot
        snapshot = None
    if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
        raise InputError(f"{path}: not an opensim-pinn training snapshot; start the training again with --force")
    if snapshot.get("package_version") != __version__:
        raise InputError(f"{path}: written by opensim-pinn {snapshot.get('package_version')}, this is {__version__}; "
                         "resume it with that version, or start the training again with --force")
    for file, digest in snapshot["inputs"].items():
        if not Path(file).is_file():
            raise InputError(f"{run_dir}: the training's input {file} is gone; put it back to resume, or "
                             "start again with --force")
        if file_digest(file) != digest:
            raise InputError(f"{run_dir}: the training's input {file} changed since the run began; resuming "
                             "would mix two trials: start again with --force")
    return snapshot
