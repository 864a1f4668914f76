"""The real OpenSim cases of ../shared/data that the integration tests run."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

SHARED_DATA = Path(os.environ.get("OPENSIM_PINN_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
"""The real cases: ``../shared/data`` from the repository root, or ``$OPENSIM_PINN_SHARED_DATA`` (point it at a
missing folder to run the suite as on a fresh clone)."""


@dataclass
class Case:
    """One trial: files (relative to the case folder) and the Static Optimization settings."""

    folder: str
    model: str
    motion: str
    external_loads: str | None
    reserves: str | None
    start: float
    end: float
    lowpass: float
    step_interval: int


CASES = {
    "gait10dof18musc": Case("gait10dof18musc", "subject01.osim", "subject01_walk_IK.mot",
                            "subject01_walk_grf.xml", "gait10dof18musc_Strong_actuators.xml", 0.0, 2.5, 6.0, 1),
    # OpenSim's own SO setup for this model: 0.5-1.999 s, no filtering, every 10th frame.
    "gait2392": Case("gait2392", "subject01_simbody_adjusted_StaticOp.osim", "subject01_walk1_Kinematics.sto",
                     "foot_floor_loads.xml", "gait2392_SO_weak_Residual_Actuators.xml", 0.5, 1.999, -1.0, 10),
    "arm26": Case("arm26", "arm26.osim", "arm26_InverseKinematics.mot", None, None, 0.0, 1.0, 6.0, 1),
}


def renamed_two_foot_loads(folder: Path, out: Path) -> Path:
    """A copy in ``out`` of gait10dof18musc's ``subject01_walk_grf.xml`` (ExternalForces 'right', 'left' on
    calcn_r, calcn_l) with the forces renamed 'externalforce_right'/'externalforce_left' and the left one
    listed first; its data file is copied next to it."""
    tree = ElementTree.parse(folder / "subject01_walk_grf.xml")
    objects = tree.getroot().find("ExternalLoads/objects")
    right, left = objects.findall("ExternalForce")
    right.set("name", "externalforce_right")
    left.set("name", "externalforce_left")
    objects.remove(right)
    objects.append(right)  # now after the left one
    path = out / "renamed_grf.xml"
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    shutil.copy(folder / "subject01_walk_grf.mot", out / "subject01_walk_grf.mot")
    return path
