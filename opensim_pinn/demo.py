"""The whole job on the built-in example: model, walking trial, training, prediction, comparison.

:func:`run_demo` writes into ``out``::

    project/   the generated planar lower-limb model and synthesized walk (opensim_pinn.demo_model)
    train/     checkpoint.pt, history.csv
    predict/   walk_forces.sto, walk_activations.sto, walk_states.sto
    compare/   metrics.json, report.md, figures

and the marker file ``.opensim-pinn-demo``. A folder that carries the marker is an
earlier demo's output: running the demo again replaces it without ``force``. A folder
without it that holds any of the demo's files is a user's: refused unless ``force``.
Only a folder the demo creates (or finds empty) gets the marker.

No file outside the package is needed. About two minutes on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

PROJECT_FILES = ("opensim_pinn_lower_limb.osim", "walk_IK.mot", "walk_grf.mot", "walk_grf.xml")
MARKER = ".opensim-pinn-demo"
"""File the demo writes into its output folder: the folder is the demo's own, which a new demo may replace."""
MARKER_TEXT = ("This folder was written by 'opensim-pinn demo'. Running the demo again replaces the demo's files "
               "here (project/, train/, predict/, compare/); remove this file to protect them.\n")


def made_by_demo(out: str | Path) -> bool:
    """Whether ``out`` carries the demo's marker (a plain file, not a link), i.e. is an earlier demo's output."""
    marker = Path(out) / MARKER
    return marker.is_file() and not marker.is_symlink()


def run_demo(out: str | Path = "opensim-pinn-demo", *, force: bool = False, epochs: int | None = None,
             time_limit: float | None = None, progress: bool = True) -> dict:
    """Build the demo project in ``out/project``, train on its walk, predict it and compare with OpenSim SO.

    Parameters
    ----------
    out : path
        Output folder.
    force : bool
        Replace the demo's files in ``out`` even when ``out`` has no marker (an earlier
        demo's folder, which has it, is replaced without ``force``).
    epochs, time_limit : optional
        Training length (default: the trainer's) and a wall-clock limit (s).

    Returns
    -------
    dict
        ``project`` (model, motion, external loads), ``checkpoint``, ``predictions``,
        ``report``, ``metrics``, ``summary`` (median/mean R^2, mean NRMSE, speedup),
        ``wall_s``.
    """
    from .compare import OUTPUTS as COMPARE_OUTPUTS, compare
    from .demo_model import write_demo_project
    from .outputs import OutputFolder
    from .predict import predict, prediction_files
    from .train import TRAIN_OUTPUTS, train_network

    out = Path(out)
    began = time.perf_counter()
    if not force and made_by_demo(out):
        log.info("demo: %s holds an earlier demo's output (%s); replacing it", out, MARKER)
        force = True
    # Every output checked before any work, so that an existing demo is never half replaced.
    OutputFolder(out / "project", list(PROJECT_FILES), force=force).check()
    OutputFolder(out / "train", list(TRAIN_OUTPUTS), force=force).check()
    OutputFolder(out / "predict", prediction_files("walk"), force=force).check()
    OutputFolder(out / "compare", list(COMPARE_OUTPUTS), force=force).check()

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):  # a folder the demo makes: mark it
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text(MARKER_TEXT)
    log.info("demo: writing the model and the synthesized walking trial into %s", out / "project")
    project = write_demo_project(out / "project")
    if {p.name for p in project.values()} != set(PROJECT_FILES):
        raise InputError(f"the demo project wrote {sorted(p.name for p in project.values())}, expected "
                         f"{sorted(PROJECT_FILES)}")
    model, motion, loads = str(project["model"]), str(project["motion"]), str(project["external_loads"])
    log.info("demo: training the network (label-free)")
    trained = train_network(model, [motion], [loads], epochs=epochs, time_limit=time_limit, out=out / "train",
                            force=force, progress=progress)
    checkpoint = Path(trained["files"][0])
    log.info("demo: predicting the walk")
    predicted = predict(checkpoint, motion, loads, out=out / "predict", force=force)
    log.info("demo: comparing with OpenSim Static Optimization")
    compared = compare(checkpoint, model, motion, loads, out=out / "compare", force=force)
    summary = {**compared["summary"], "speedup": compared["speedup"],
               "opensim_static_optimization_s": compared["timing_s"]["opensim_static_optimization"],
               "network_inference_s": compared["timing_s"]["network_inference"]}
    return {"project": {k: str(v) for k, v in project.items()}, "checkpoint": str(checkpoint),
            "history": str(out / "train" / "history.csv"), "predictions": predicted["files"],
            "report": compared["report"], "metrics": str(out / "compare" / "metrics.json"),
            "figures": [f for f in compared["files"] if f.endswith(".png")], "summary": summary,
            "training": {"epochs": trained["epochs"], "wall_s": trained["wall_s"]["training"]},
            "wall_s": round(time.perf_counter() - began, 1)}
