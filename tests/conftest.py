"""Shared fixtures: the real OpenSim cases in ../shared/data, the built-in project, a per-session cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared_cases import SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Caches (model descriptions, trials, path fits) live in a fresh folder for the test session."""
    folder = tmp_path_factory.mktemp("opensim_pinn_cache")
    previous = os.environ.get("OPENSIM_PINN_CACHE")
    os.environ["OPENSIM_PINN_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("OPENSIM_PINN_CACHE", None)
    else:
        os.environ["OPENSIM_PINN_CACHE"] = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference cases; tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared OpenSim data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in a temporary folder, so that nothing OpenSim writes lands in the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def builtin_project(tmp_path_factory) -> dict[str, Path]:
    """The built-in model, walk and ground reaction forces (opensim_pinn.demo_model), written once per session.

    Everywhere, with or without ../shared/data: the integration tests run on it. Treat it as read-only
    (copy what a test changes).
    """
    pytest.importorskip("opensim")
    from opensim_pinn.demo_model import write_demo_project

    return write_demo_project(tmp_path_factory.mktemp("builtin_project"))


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory, session_cache, builtin_project) -> dict:
    """A briefly trained checkpoint on the built-in demo model (first 1.2 s of its walk), made once per session.

    For tests of what is done with a checkpoint (streaming, export), not of its accuracy.
    """
    from opensim_pinn.train import train_network

    root = tmp_path_factory.mktemp("demo_checkpoint")
    project = {k: str(v) for k, v in builtin_project.items()}
    train_network(project["model"], [project["motion"]], [project["external_loads"]], end=1.2, epochs=40,
                  out=root / "train", progress=False)
    return {**project, "checkpoint": root / "train" / "checkpoint.pt", "end": 1.2}
