"""Benchmark: the least-squares path fit (the fallback) against OpenSim's PolynomialPathFitter.

For each shared case, fits the path polynomials around the trial's frames with each
fitter (same settings, no cache), in a child process as the package does, and reports
the fit's wall time (inside the child, start-up excluded) and the polynomials' RMS errors
against OpenSim's ``Muscle.getLength`` / ``computeMomentArm`` on the trial's frames
(the numbers ``opensim-pinn inspect --motion`` prints).

Usage: python benchmarks/path_fit_fallback.py [--data ../shared/data] [--out benchmarks/results]
       [--cases arm26 gait10dof18musc gait2392]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import save_results
from opensim_pinn.child import run_in_child_timed
from opensim_pinn.muscle import MusculoskeletalModel, path_errors
from opensim_pinn.path_lstsq import fit_paths_lstsq
from opensim_pinn.paths import PathFitSettings, fit_paths
from opensim_pinn.trial import load_kinematics, load_model_info

CASES = {
    "arm26": ("arm26.osim", "arm26_InverseKinematics.mot", 6.0),
    "gait10dof18musc": ("subject01.osim", "subject01_walk_IK.mot", 6.0),
    "gait2392": ("subject01_simbody_adjusted_StaticOp.osim", "subject01_walk1_Kinematics.sto", -1.0),
}
FITTERS = {"opensim": fit_paths, "lstsq": fit_paths_lstsq}


def run_case(folder: Path, model: str, motion: str, lowpass: float) -> dict:
    info = load_model_info(folder / model)
    kinematics = load_kinematics(info, folder / motion, lowpass=lowpass)
    result = {"n_muscles": len(info.muscles), "n_frames": len(kinematics.time)}
    for name, function in FITTERS.items():
        polynomials, seconds = run_in_child_timed(f"path fitting ({name})", function, info.path,
                                                  kinematics.coordinates, kinematics.time, kinematics.q,
                                                  PathFitSettings())
        errors = path_errors(MusculoskeletalModel(info, polynomials), info.path, kinematics.q, kinematics.qd)
        result[name] = {"fit_s": round(seconds, 2),
                        "max_order": max(int(p.exponents.sum(axis=1).max()) for p in polynomials),
                        "worst_length_mm": errors["worst_length_mm"],
                        "worst_moment_arm_mm": errors["worst_moment_arm_mm"],
                        "median_length_mm": sorted(errors["length_mm"].values())[len(polynomials) // 2],
                        "median_moment_arm_mm": sorted(errors["moment_arm_mm"].values())[len(polynomials) // 2]}
        print(name, json.dumps(result[name]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder of the shared OpenSim cases")
    parser.add_argument("--out", default="benchmarks/results", help="folder for path_fit_fallback.json")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="cases to run")
    args = parser.parse_args()
    results = {}
    for case in args.cases:
        model, motion, lowpass = CASES[case]
        print(case, flush=True)
        results[case] = run_case(Path(args.data) / case, model, motion, lowpass)
    save_results(results, args.out, "path_fit_fallback")


if __name__ == "__main__":
    main()
