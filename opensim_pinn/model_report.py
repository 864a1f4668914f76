"""What ``opensim-pinn inspect`` reports about a model (and its path fit on a motion)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def inspect_model(model: str | Path, *, reserves: str | None = None, motion: str | Path | None = None,
                  lowpass: float | None = 6.0, path_fitter: str = "auto") -> dict:
    """Describe a model: coordinates, muscles with their Hill parameters, actuators.

    With ``motion``, also fit (or reuse) the path polynomials around it and
    report their RMS error against OpenSim on the motion's frames, in mm;
    ``path_fitter`` is :attr:`opensim_pinn.paths.PathFitSettings.fitter`.

    Returns
    -------
    dict
        ``model``, ``coordinates``, ``muscles``, ``actuators`` (lists of dicts)
        and, with a motion, ``path_fit``.
    """
    from .trial import load_kinematics, load_model_info

    info = load_model_info(model, reserves)
    report = {
        "model": {"name": info.name, "path": info.path, "n_muscles": len(info.muscles),
                  "n_coordinates": len(info.coordinates), "n_free_coordinates": len(info.free_coordinates),
                  "n_actuators": len(info.actuators)},
        "coordinates": [{"name": c.name, "joint": c.joint, "type": c.motion_type, "locked": c.locked,
                         "range": list(c.range)} for c in info.coordinates],
        "muscles": [{"name": m.name, "class": m.muscle_class, "max_isometric_force": m.max_isometric_force,
                     "optimal_fiber_length": m.optimal_fiber_length,
                     "tendon_slack_length": m.tendon_slack_length,
                     "pennation_angle_at_optimal": m.pennation_angle_at_optimal,
                     "max_contraction_velocity": m.max_contraction_velocity,
                     "coordinates": m.coordinates} for m in info.muscles],
        "actuators": [{"name": a.name, "class": a.actuator_class, "optimal_force": a.optimal_force,
                       "min_control": a.min_control, "max_control": a.max_control,
                       "coordinate": a.coordinate} for a in info.actuators],
    }
    if motion is not None:
        from .muscle import MusculoskeletalModel, path_errors
        from .paths import PathFitSettings, load_or_fit_paths

        settings = PathFitSettings(fitter=path_fitter)  # checked before any long work
        kinematics = load_kinematics(info, motion, lowpass=lowpass)
        polynomials = load_or_fit_paths(info.path, kinematics.coordinates, kinematics.time, kinematics.q,
                                        [m.name for m in info.muscles], settings)
        errors = path_errors(MusculoskeletalModel(info, polynomials), info.path, kinematics.q, kinematics.qd)
        report["path_fit"] = {"motion": str(motion), "n_frames": len(kinematics.time), **errors}
    return report


def format_report(report: dict) -> str:
    """Human-readable text of :func:`inspect_model`'s report."""
    model = report["model"]
    lines = [f"Model {model['name']}: {model['n_muscles']} muscles, {model['n_free_coordinates']} unlocked "
             f"of {model['n_coordinates']} coordinates, {model['n_actuators']} actuators", "",
             "Coordinates:"]
    for c in report["coordinates"]:
        unit = "rad" if c["type"] == "rotational" else "m"
        lines.append(f"  {c['name']:<24} {c['joint']:<20} {c['type']:<13} "
                     f"[{c['range'][0]:.3g}, {c['range'][1]:.3g}] {unit}{'  locked' if c['locked'] else ''}")
    lines += ["", f"Muscles ({'Fmax N':>8} {'l_opt m':>8} {'l_ts m':>8} {'penn rad':>8} {'v_max':>6}):"]
    fit = report.get("path_fit")
    for m in report["muscles"]:
        error = ""
        if fit:
            error = (f"  fit: length {fit['length_mm'][m['name']]:.3f} mm, "
                     f"moment arm {fit['moment_arm_mm'][m['name']]:.3f} mm")
        lines.append(f"  {m['name']:<16} {m['class']:<29} {m['max_isometric_force']:8.1f} "
                     f"{m['optimal_fiber_length']:8.4f} {m['tendon_slack_length']:8.4f} "
                     f"{m['pennation_angle_at_optimal']:8.3f} {m['max_contraction_velocity']:6.1f}  "
                     f"spans {', '.join(m['coordinates'])}{error}")
    lines += ["", "Actuators:" if report["actuators"] else "Actuators: none (use --reserves FILE|auto)"]
    for a in report["actuators"]:
        target = f" on {a['coordinate']}" if a["coordinate"] else ""
        lines.append(f"  {a['name']:<24} {a['class']:<20} optimal force {a['optimal_force']:g}{target}, "
                     f"control [{a['min_control']:g}, {a['max_control']:g}]")
    if fit:
        lines += ["", f"Path polynomials vs OpenSim on {fit['n_frames']} frames of {fit['motion']}: worst RMS "
                  f"length error {fit['worst_length_mm'][1]:.3f} mm ({fit['worst_length_mm'][0]}), worst "
                  f"moment arm error {fit['worst_moment_arm_mm'][1]:.3f} mm ({fit['worst_moment_arm_mm'][0]})"]
    return "\n".join(lines)
