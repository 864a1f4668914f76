"""The whole job from Python, on the built-in example (or on your own files).

Run: python examples/api_walkthrough.py [OUT_FOLDER]

Builds the demo project (model + synthesized walk), trains the network label-free,
predicts the walk into OpenSim files, and compares with OpenSim Static Optimization.
Replace the four paths in ``project`` with your own model, motion and loads.
"""

import sys
from pathlib import Path

from opensim_pinn import train_network
from opensim_pinn.compare import compare
from opensim_pinn.demo_model import write_demo_project
from opensim_pinn.predict import predict
from opensim_pinn.static_opt import static_optimization

out = Path(sys.argv[1] if len(sys.argv) > 1 else "api-walkthrough")
project = write_demo_project(out / "project")  # {"model", "motion", "grf", "external_loads"}

# OpenSim's Static Optimization and the fast batched solver, same problem.
for solver in ("opensim", "fast"):
    result = static_optimization(project["model"], project["motion"], external_loads=project["external_loads"],
                                 solver=solver, out=out / f"static_opt_{solver}")
    print(f"{solver:8} static optimization: {result['timing']['wall_s']:.3f} s")

# Label-free training, then prediction of a trial (here the same walk) without OpenSim.
summary = train_network(project["model"], [project["motion"]], [project["external_loads"]], out=out / "train")
print("training:", summary["wall_s"], "final loss:", summary["final_loss"])
predicted = predict(out / "train" / "checkpoint.pt", project["motion"], project["external_loads"],
                    out=out / "predict")
print("predicted files:", predicted["files"])

# Side by side with OpenSim Static Optimization on the same trial.
metrics = compare(out / "train" / "checkpoint.pt", project["model"], project["motion"], project["external_loads"],
                  out=out / "compare")
print("agreement:", metrics["summary"], "speed-up:", round(metrics["speedup"]), "x")
