"""OpenSim's JointReaction analysis fed a forces file, as OpenSim's tutorial runs it after Static Optimization.

AnalyzeTool with the model, the same reserve/residual ForceSet as SO (appended to the
model's forces), the trial's coordinates (filtered as SO filtered them) and external
loads, and a JointReaction analysis whose ``forces_file`` is the file under test. Run
through :func:`opensim_pinn.child.run_in_child` (the child must find this module:
put ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from opensim_pinn.static_opt import analyze_tool, static_optimization_analysis


def joint_reaction(model: str, motion: str, external_loads: str | None, reserves: str | None, forces_file: str,
                   joints: list[str], start: float, end: float, lowpass: float) -> dict[str, np.ndarray]:
    """Reaction force magnitude (N) on each joint's child body, per analysed frame.

    Returns ``{"time": (n_frames,), joint: (n_frames,) ...}``; also ``"log"``, OpenSim's
    messages about the forces file (the lines that say whether it was used).
    """
    import opensim

    from opensim_pinn.osim import quiet_opensim
    from opensim_pinn.storage import read_storage

    quiet_opensim("info")
    with tempfile.TemporaryDirectory(prefix="joint_reaction_") as folder:
        folder = Path(folder)
        log_file = folder / "opensim_messages.log"
        opensim.Logger.addFileSink(str(log_file))
        tool = analyze_tool(model, motion, external_loads, [reserves] if reserves else [], start=start, end=end,
                            lowpass=lowpass, results=folder / "results")
        analysis = opensim.JointReaction()
        analysis.setName("JointReaction")
        analysis.setForcesFileName(str(Path(forces_file).resolve()))
        analysis.setStartTime(float(start))
        analysis.setEndTime(float(end))
        names = opensim.ArrayStr()
        for joint in joints:
            names.append(joint)
        analysis.setJointNames(names)
        for setter, value in ((analysis.setOnBody, "child"), (analysis.setInFrame, "ground")):
            values = opensim.ArrayStr()
            values.append(value)
            setter(values)
        tool.getAnalysisSet().cloneAndAppend(analysis)
        setup = folder / "setup.xml"
        tool.printToXML(str(setup))
        if not opensim.AnalyzeTool(str(setup)).run():
            raise RuntimeError("AnalyzeTool with JointReaction failed")
        opensim.Logger.removeFileSink()
        table = read_storage(next((folder / "results").glob("*JointReaction_ReactionLoads.sto")))
        messages = log_file.read_text() if log_file.is_file() else ""
    result = {"time": table.time, "log": "\n".join(line for line in messages.splitlines()
                                                   if "forces file" in line or "actuator" in line.lower())}
    for joint in joints:
        columns = [next(i for i, label in enumerate(table.labels) if label.startswith(f"{joint}_on_")
                        and label.endswith(f"_{axis}")) for axis in ("fx", "fy", "fz")]
        result[joint] = np.linalg.norm(table.data[:, columns], axis=1)
    return result


def opensim_so_forces(model: str, motion: str, external_loads: str | None, reserves: str | None, start: float,
                      end: float, lowpass: float, step_interval: int) -> str:
    """OpenSim Static Optimization's ``_StaticOptimization_force.sto``, as OpenSim wrote it (its text).

    AnalyzeTool as :func:`opensim_pinn.static_opt.opensim_static_optimization` runs it
    (activation exponent 2, muscle physiology on, the model's forces plus ``reserves``).
    """
    import opensim

    from opensim_pinn.osim import quiet_opensim

    quiet_opensim()
    with tempfile.TemporaryDirectory(prefix="static_optimization_") as folder:
        folder = Path(folder)
        tool = analyze_tool(model, motion, external_loads, [reserves] if reserves else [], start=start, end=end,
                            lowpass=lowpass, results=folder / "results")
        tool.getAnalysisSet().cloneAndAppend(static_optimization_analysis(start, end, step_interval))
        tool.printToXML(str(folder / "setup.xml"))
        if not opensim.AnalyzeTool(str(folder / "setup.xml")).run():
            raise RuntimeError("AnalyzeTool with StaticOptimization failed")
        return (folder / "results" / "trial_StaticOptimization_force.sto").read_text()


def peak_reaction(result: dict[str, np.ndarray], joints: list[str], times: np.ndarray) -> float:
    """The largest reaction force magnitude (N) over the given joints and the frames at ``times`` (s).

    JointReaction analyses every frame of the motion; SO's file may hold every N-th
    (``step_interval``), which JointReaction interpolates in between: compare at SO's frames.
    """
    distance = np.abs(result["time"][:, None] - np.asarray(times)[None, :])
    rows = np.flatnonzero(distance.min(axis=1) < 1e-6)
    if len(rows) < len(times):
        raise ValueError(f"JointReaction analysed {len(rows)} of the {len(times)} frames asked for")
    return float(max(result[joint][rows].max() for joint in joints))
