"""What the benchmarks share: where the shared OpenSim cases and the results live, the cases' files, saving.

The benchmarks are scripts run from the repository (``python benchmarks/NAME.py``), so
this folder is on ``sys.path`` and they import it as ``common``.
"""

from __future__ import annotations

import json
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""Default ``--data``: the shared OpenSim cases, beside the repository."""

RESULTS = Path(__file__).resolve().parent / "results"
"""Default ``--out``: where the benchmarks save their JSON figures."""

FILE_KEYS = ("model", "motion", "external_loads", "reserves")
"""Keys of a case that name files in its folder of :data:`SHARED_DATA`."""

CASE_FILES = {
    "gait10dof18musc": dict(model="subject01.osim", motion="subject01_walk_IK.mot",
                            external_loads="subject01_walk_grf.xml",
                            reserves="gait10dof18musc_Strong_actuators.xml"),
    "gait2392": dict(model="subject01_simbody_adjusted_StaticOp.osim", motion="subject01_walk1_Kinematics.sto",
                     external_loads="foot_floor_loads.xml", reserves="gait2392_SO_weak_Residual_Actuators.xml"),
    "arm26": dict(model="arm26.osim", motion="arm26_InverseKinematics.mot"),
}
"""The files of each shared case (see ``../shared/data/README.md``)."""


def case(name: str, **settings) -> dict:
    """The files of shared case ``name`` (:data:`CASE_FILES`) with a benchmark's settings (start, end, ...)."""
    return {**CASE_FILES[name], **settings}


def save_results(results: dict, out: str | Path, name: str) -> Path:
    """Write ``results`` as ``out/name.json`` (``out`` made if missing), say where, and return the path."""
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {path}")
    return path
