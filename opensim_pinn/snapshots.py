"""Training snapshots: what ``opensim-pinn train --resume RUN_DIR`` continues from.

While it trains, :func:`opensim_pinn.train.train_network` keeps ``RUN_DIR/resume.pt``
up to date (at the start and every ``snapshot_every`` epochs, written to a
temporary name and renamed into place, so a kill never leaves half a file). It
holds the run's arguments, a digest of every input file, and the training state
at the end of an epoch: network and Adam state, loss history, random state. The
file is removed when the run's ``checkpoint.pt`` is written.

Resuming rebuilds the trials from the same files (cached, so quickly) and
repeats exactly the epochs that were not done: the result is the one an
uninterrupted run gives.
"""

from __future__ import annotations

from pathlib import Path

from . import __version__
from .errors import InputError

DEFAULT_SNAPSHOT_EVERY = 100
"""Epochs between training snapshots; writing one takes milliseconds."""

RESUME_FILE = "resume.pt"
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


def write_snapshot(run_dir: str | Path, arguments: dict, digests: dict, training: dict) -> None:
    """Write ``run_dir/resume.pt`` atomically (creating ``run_dir`` if needed).

    ``training`` is :meth:`opensim_pinn.train.Trainer.training_state`.
    """
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = run_dir / f".{RESUME_FILE}.partial"
    torch.save({"format": SNAPSHOT_FORMAT, "format_version": SNAPSHOT_VERSION, "package_version": __version__,
                "arguments": arguments, "inputs": digests, "training": training}, partial)
    partial.replace(run_dir / RESUME_FILE)


def read_snapshot(run_dir: str | Path) -> dict:
    """The snapshot of an interrupted run in ``run_dir``, its input files checked unchanged.

    Raises
    ------
    InputError
        No such folder, no snapshot (never started, or finished), not a snapshot,
        or an input file changed or missing since the run began.
    """
    import torch

    run_dir = Path(run_dir)
    path = run_dir / RESUME_FILE
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such folder; give the --out folder of the interrupted 'opensim-pinn train'")
    if not path.is_file():
        if (run_dir / "checkpoint.pt").is_file():
            raise InputError(f"{run_dir}: its training finished (checkpoint.pt is there); nothing to resume")
        raise InputError(f"{run_dir}: holds no interrupted training ({RESUME_FILE} is missing); start the "
                         "training again without --resume")
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several kinds for a file that is not a snapshot
        snapshot = None
    if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
        raise InputError(f"{path}: not an opensim-pinn training snapshot; start the training again with --force")
    if snapshot.get("format_version", 0) > SNAPSHOT_VERSION:
        raise InputError(f"{path}: written by a newer opensim-pinn ({snapshot.get('package_version')}); "
                         "upgrade opensim-pinn to resume it")
    for file, digest in snapshot["inputs"].items():
        if not Path(file).is_file():
            raise InputError(f"{run_dir}: the training's input {file} is gone; put it back to resume, or "
                             "start again with --force")
        if file_digests([file])[file] != digest:
            raise InputError(f"{run_dir}: the training's input {file} changed since the run began; resuming "
                             "would mix two trials: start again with --force")
    return snapshot

