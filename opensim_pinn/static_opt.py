"""Static Optimization: OpenSim's own (AnalyzeTool) and the project's fast batched solver.

Both solve, at every frame, OpenSim's problem with activation exponent 2 and
muscle physiology on::

    minimise   sum_m a_m^2 + sum_r u_r^2
    subject to sum_m r_mj(q) F_act,m(q, qd) a_m + sum_r G_rj(q) u_r = tau_j   (every unlocked j)
               min_control <= a, u <= max_control

The fast solver works on all frames at once in torch: the problem is a
strictly convex QP whose dual is smooth and concave, so a semismooth Newton
method on the multipliers (x = clip(A^T lambda, lower, upper)) converges in a
few iterations to the exact optimum.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .storage import StorageTable, read_storage, write_storage

log = logging.getLogger(__name__)


@dataclass
class StaticOptimizationResult:
    """Activations/controls and forces per frame.

    Attributes
    ----------
    time : ndarray, shape (n_frames,)
    labels : list of str
        Muscles, then actuators.
    activations : ndarray, shape (n_frames, n_muscles + n_actuators)
        Muscle activations and actuator controls.
    forces : ndarray, shape (n_frames, n_muscles + n_actuators)
        Muscle forces (N) = activation * F_act; actuator forces = control * optimal force.
    converged : ndarray of bool, shape (n_frames,)
    wall_s : float
        Seconds spent, see ``timing_note``.
    timing_note : str
    """

    time: np.ndarray
    labels: list[str]
    activations: np.ndarray
    forces: np.ndarray
    converged: np.ndarray
    wall_s: float = 0.0
    timing_note: str = ""


INITIAL_DAMPING = 1e-2
"""Levenberg-Marquardt damping of the first Newton step (relative to max |matrix|^2), from a cold start."""
WARM_DAMPING = 1e-10
"""The same from a neighbouring frame's multipliers: near the optimum, where an undamped step is exact
once the bounds that bind are the same (damping 1e-2 there costs four more steps)."""
HALVINGS = 20


def solve_bounded_least_norm(matrix: torch.Tensor, target: torch.Tensor, lower: torch.Tensor,
                             upper: torch.Tensor, *, tolerance: float = 1e-6, max_iterations: int = 100,
                             initial: torch.Tensor | None = None, multipliers_out: list | None = None,
                             initial_damping: float = INITIAL_DAMPING) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve min ||x||^2 s.t. matrix @ x = target, lower <= x <= upper, for a batch of frames.

    Parameters
    ----------
    matrix : tensor, shape (n_frames, n_equations, n_variables)
    target : tensor, shape (n_frames, n_equations)
    lower, upper : tensor, shape (n_variables,)
        May hold -inf / inf.
    tolerance : float
        Converged when the equality residual is below ``tolerance * (1 + |target|)`` (max norm).
    initial : tensor, shape (n_frames, n_equations), optional
        Multipliers to start from (a warm start, e.g. a neighbouring frame's); default: those of the
        unconstrained least-norm solution.
    multipliers_out : list, optional
        The final multipliers are appended to it.
    initial_damping : float
        Damping of the first step (:data:`INITIAL_DAMPING`; :data:`WARM_DAMPING` suits warm starts).

    Returns
    -------
    x : tensor, shape (n_frames, n_variables)
    converged : tensor of bool, shape (n_frames,)
    """
    n_frames, n_equations, _ = matrix.shape
    transpose = matrix.transpose(1, 2)
    scale = torch.maximum(matrix.amax(dim=(1, 2)), -matrix.amin(dim=(1, 2))).clamp_min(1e-12) ** 2  # (n_frames,)
    eye = torch.eye(n_equations, dtype=matrix.dtype, device=matrix.device)
    if initial is None:  # start from the unconstrained least-norm solution
        multipliers = torch.linalg.solve(matrix @ transpose + (1e-12 * scale)[:, None, None] * eye, target)
    else:
        multipliers = initial.clone()

    def primal(lam, a_t):
        return torch.maximum(torch.minimum((a_t @ lam.unsqueeze(-1)).squeeze(-1), upper), lower)

    def dual(lam, x, a, b):  # concave; its gradient is the equality residual
        return (lam * b).sum(-1) - (lam * (a @ x.unsqueeze(-1)).squeeze(-1)).sum(-1) + 0.5 * (x * x).sum(-1)

    limit = tolerance * (1.0 + target.abs().amax(dim=-1))
    damping = torch.full((n_frames,), initial_damping, dtype=matrix.dtype, device=matrix.device)
    x = primal(multipliers, transpose)
    residual = target - (matrix @ x.unsqueeze(-1)).squeeze(-1)
    converged = residual.abs().amax(dim=-1) <= limit
    for _ in range(max_iterations):
        if bool(converged.all()):
            break
        # Only the frames not yet converged are worked on (converged ones keep their solution).
        active = (~converged).nonzero().squeeze(-1)
        every = len(active) == n_frames
        a, b, lam, r, x_active, damp, size, bound = (_rows(t, active, every) for t in (
            matrix, target, multipliers, residual, x, damping, scale, limit))
        a_t = a.transpose(1, 2)
        unclipped = (a_t @ lam.unsqueeze(-1)).squeeze(-1)
        free = ((unclipped > lower) & (unclipped < upper)).to(matrix.dtype)
        # Levenberg-Marquardt-damped Newton step on the dual (the Hessian is singular
        # where every variable is at a bound).
        hessian = (a * free.unsqueeze(1)) @ a_t + (damp * size)[:, None, None] * eye
        step = torch.linalg.solve(hessian, r)
        value, slope = dual(lam, x_active, a, b), (r * step).sum(-1)
        length = torch.ones(len(active), dtype=matrix.dtype, device=matrix.device)
        accepted = torch.zeros(len(active), dtype=torch.bool, device=matrix.device)
        for _ in range(HALVINGS):  # backtracking (Armijo) on the concave dual, on the frames still backtracking
            waiting = (~accepted).nonzero().squeeze(-1)
            all_waiting = len(waiting) == len(active)
            a_w, b_w, lam_w, step_w, value_w, slope_w, length_w = (_rows(t, waiting, all_waiting) for t in (
                a, b, lam, step, value, slope, length))
            candidate = lam_w + length_w.unsqueeze(-1) * step_w
            gain = dual(candidate, primal(candidate, a_w.transpose(1, 2)), a_w, b_w) - value_w
            accepted[waiting] = good = gain >= 1e-4 * length_w * slope_w
            if bool(good.all()):
                break
            length[waiting] = torch.where(good, length_w, 0.5 * length_w)
        lam = torch.where(accepted.unsqueeze(-1), lam + length.unsqueeze(-1) * step, lam)
        damp = torch.where(accepted & (length == 1), damp / 10, damp * 10).clamp(1e-14, 1e6)
        x_active = primal(lam, a_t)
        r = b - (a @ x_active.unsqueeze(-1)).squeeze(-1)
        multipliers[active], damping[active], x[active], residual[active] = lam, damp, x_active, r
        converged[active] = r.abs().amax(dim=-1) <= bound
    if multipliers_out is not None:
        multipliers_out.append(multipliers)
    return x, converged


def _rows(tensor: torch.Tensor, chosen: torch.Tensor, everything: bool) -> torch.Tensor:
    """``tensor[chosen]``, without a copy when ``chosen`` is every row."""
    return tensor if everything else tensor[chosen]


WARM_START_STRIDE = 5
"""Frames between the ones solved first; the others start from the nearest one's multipliers."""


def solve_frames(matrix: torch.Tensor, target: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, *,
                 stride: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`solve_bounded_least_norm` of a trial's frames in time order, warm-started: every ``stride``-th
    frame (default :data:`WARM_START_STRIDE`) is solved first, then the others from the multipliers of the
    nearest of those, with :data:`WARM_DAMPING` (neighbouring frames have nearly the same solution:
    Newton's method then needs a few steps). The optimum is the same: each frame's problem is strictly
    convex and solved to the same tolerance."""
    n_frames, stride = matrix.shape[0], WARM_START_STRIDE if stride is None else stride
    if stride <= 1 or n_frames < 4 * stride:
        return solve_bounded_least_norm(matrix, target, lower, upper)
    frames = torch.arange(n_frames, device=matrix.device)
    first, rest = frames[::stride], frames[frames % stride != 0]
    found: list = []
    x = torch.empty(n_frames, matrix.shape[2], dtype=matrix.dtype, device=matrix.device)
    converged = torch.empty(n_frames, dtype=torch.bool, device=matrix.device)
    x[first], converged[first] = solve_bounded_least_norm(matrix[first], target[first], lower, upper,
                                                          multipliers_out=found)
    nearest = torch.div(rest + stride // 2, stride, rounding_mode="floor").clamp(max=len(first) - 1)
    x[rest], converged[rest] = solve_bounded_least_norm(matrix[rest], target[rest], lower, upper,
                                                        initial=found[0][nearest], initial_damping=WARM_DAMPING)
    return x, converged


def muscle_matrices(kinematics, muscle_model, *, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``muscle_model.muscle_matrix`` (float64, on ``device``) at every frame of ``kinematics`` (a Kinematics
    or Trial): generalised force per unit activation, shape (n_frames, n_coordinates, n_muscles), and the
    force at full activation (N), shape (n_frames, n_muscles)."""
    from .trainer import check_device

    check_device(device)
    muscle_model = muscle_model.to(device=device, dtype=torch.float64)
    q = torch.as_tensor(kinematics.q, dtype=torch.float64, device=device)
    qd = torch.as_tensor(kinematics.qd, dtype=torch.float64, device=device)
    with torch.no_grad():
        return muscle_model.muscle_matrix(q, qd)


def fast_static_optimization(trial, info, muscle_model, *, device: str = "cpu",
                             muscles: tuple[torch.Tensor, torch.Tensor] | None = None) -> StaticOptimizationResult:
    """Solve Static Optimization on every frame of ``trial`` with the torch muscle model.

    Parameters
    ----------
    trial : Trial
        From :func:`opensim_pinn.trial.prepare_trial`.
    info : ModelInfo
    muscle_model : MusculoskeletalModel
    muscles : tuple of tensors, optional
        :func:`muscle_matrices` of the trial's kinematics, if already computed.
    """
    from .trainer import check_device

    check_device(device)
    check_actuated(trial, info)
    dtype = torch.float64
    muscle_matrix, active_force = muscle_matrices(trial, muscle_model, device=device) if muscles is None \
        else muscles
    with torch.no_grad():
        actuator_matrix = torch.as_tensor(trial.actuator_map, dtype=dtype, device=device).transpose(1, 2)
        matrix = torch.cat([muscle_matrix, actuator_matrix], dim=2)
        lower, upper = bounds(info, dtype=dtype, device=device)
        target = torch.as_tensor(trial.tau, dtype=dtype, device=device)
        x, converged = solve_frames(matrix, target, lower, upper)
        optimal = torch.cat([active_force, torch.as_tensor(
            [a.optimal_force for a in info.actuators], dtype=dtype, device=device).expand(trial.n_frames, -1)], dim=1)
        forces = x * optimal
    if not bool(converged.all()):
        log.warning("static optimization: %d of %d frames did not meet the equations (muscles and "
                    "actuators too weak there); add reserves (--reserves auto)",
                    int((~converged).sum()), len(converged))
    labels = [m.name for m in info.muscles] + [a.name for a in info.actuators]
    return StaticOptimizationResult(time=trial.time, labels=labels, activations=x.cpu().numpy(),
                                    forces=forces.cpu().numpy(), converged=converged.cpu().numpy())


def bounds(info, *, dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper control bounds, muscles then actuators, shape (n_muscles + n_actuators,)."""
    lower = [m.min_control for m in info.muscles] + [a.min_control for a in info.actuators]
    upper = [m.max_control for m in info.muscles] + [a.max_control for a in info.actuators]
    return (torch.tensor(lower, dtype=dtype, device=device), torch.tensor(upper, dtype=dtype, device=device))


def check_actuated(trial, info) -> None:
    """Every balanced coordinate needs a muscle or an actuator, or no solution exists."""
    spanned = {c for m in info.muscles for c in m.coordinates}
    actuated = np.abs(trial.actuator_map).max(axis=(0, 1)) > 0 if trial.actuators else \
        np.zeros(len(trial.coordinates), bool)
    _refuse_bare([c for i, c in enumerate(trial.coordinates) if c not in spanned and not actuated[i]])


def _refuse_bare(bare: list[str]) -> None:
    if bare:
        raise InputError(f"no muscle or actuator acts on coordinate(s) {', '.join(bare)}; add residual "
                         "and reserve actuators with --reserves FILE or --reserves auto")


def check_covered(info, settings, kinematics) -> None:
    """:func:`check_actuated` before OpenSim's Static Optimization, which would leave such a problem
    unsolved (muscles at full activation) and still write results.

    Decided from the model description where every actuator is a CoordinateActuator;
    otherwise (point and torque actuators, the usual residuals) from the actuators'
    generalised forces, which need the trial's inverse dynamics (cached).
    """
    from .trial import prepare_trial

    covered = {c for m in info.muscles for c in m.coordinates} | {a.coordinate for a in info.actuators}
    bare = [c for c in kinematics.coordinates if c not in covered]
    if bare and all(a.coordinate for a in info.actuators):
        _refuse_bare(bare)
    if bare:
        trial, _ = prepare_trial(settings, info=info, kinematics=kinematics)
        check_actuated(trial, info)


def opensim_static_optimization(model: str, motion: str, external_loads: str | None,
                                reserves: str | None, start: float, end: float,
                                lowpass: float | None, step_interval: int = 1) -> StaticOptimizationResult:
    """Run OpenSim's own Static Optimization (AnalyzeTool); call through ``run_in_child``.

    Activation exponent 2, muscle physiology on, the model's force set plus
    ``reserves`` (a ForceSet file, or "auto"). Timed from the tool's construction
    (model loading included) to its results on disk.
    """
    import opensim

    from .osim import auto_reserves, load_model, quiet_opensim

    quiet_opensim()
    with tempfile.TemporaryDirectory(prefix="opensim_pinn_so_") as folder:
        folder = Path(folder)
        force_set_files = []
        if reserves == "auto":
            force_set = opensim.ForceSet()
            for actuator in auto_reserves(load_model(model, initialize=False)):
                force_set.cloneAndAppend(actuator)
            force_set.printToXML(str(folder / "auto_reserves.xml"))
            force_set_files.append(str(folder / "auto_reserves.xml"))
        elif reserves:
            force_set_files.append(str(Path(reserves).resolve()))
        tool = analyze_tool(model, motion, external_loads, force_set_files, start=start, end=end, lowpass=lowpass,
                            results=folder / "results")
        tool.getAnalysisSet().cloneAndAppend(static_optimization_analysis(start, end, step_interval))
        setup = folder / "setup.xml"
        tool.printToXML(str(setup))
        began = time.perf_counter()
        opensim.AnalyzeTool(str(setup)).run()
        wall = time.perf_counter() - began
        forces = read_storage(folder / "results" / "trial_StaticOptimization_force.sto")
        activations = read_storage(folder / "results" / "trial_StaticOptimization_activation.sto")
    labels = activations.labels
    force_columns = [forces.labels.index(label) for label in labels]
    return StaticOptimizationResult(
        time=activations.time, labels=labels, activations=activations.data,
        forces=forces.data[:, force_columns], converged=np.ones(len(activations.time), bool),
        wall_s=wall, timing_note="OpenSim AnalyzeTool.run() with StaticOptimization: model loading, "
        "filtering, inverse dynamics and per-frame optimisation; child interpreter start-up excluded")


def analyze_tool(model: str, motion: str, external_loads: str | None, force_set_files: list[str], *, start: float,
                 end: float, lowpass: float | None, results: Path):
    """An OpenSim ``AnalyzeTool`` named "trial", with no analysis yet: the model's force set plus
    ``force_set_files``, the coordinates low-pass filtered at ``lowpass`` Hz (None: not filtered), results
    written into ``results``. Run it from a setup file (``printToXML``): built in Python, it does not load
    the motion."""
    import opensim

    tool = opensim.AnalyzeTool()
    tool.setName("trial")
    tool.setModelFilename(str(Path(model).resolve()))
    tool.setCoordinatesFileName(str(Path(motion).resolve()))
    tool.setLowpassCutoffFrequency(-1.0 if lowpass is None else float(lowpass))
    tool.setInitialTime(float(start))
    tool.setFinalTime(float(end))
    tool.setReplaceForceSet(False)
    files = opensim.ArrayStr()
    for name in force_set_files:
        files.append(str(Path(name).resolve()))
    tool.setForceSetFiles(files)
    if external_loads:
        tool.setExternalLoadsFileName(str(Path(external_loads).resolve()))
    tool.setResultsDir(str(results))
    return tool


def static_optimization_analysis(start: float, end: float, step_interval: int = 1):
    """OpenSim's ``StaticOptimization`` analysis as this package solves it: activation exponent 2, muscle
    physiology on, the model's force set."""
    import opensim

    analysis = opensim.StaticOptimization()
    analysis.setStartTime(float(start))
    analysis.setEndTime(float(end))
    analysis.setUseModelForceSet(True)
    analysis.setActivationExponent(2.0)
    analysis.setUseMusclePhysiology(True)
    analysis.setStepInterval(int(step_interval))
    return analysis


def force_table(result: StaticOptimizationResult, name: str) -> StorageTable:
    """OpenSim's ``_StaticOptimization_force.sto`` layout (muscles then actuators)."""
    return StorageTable(name="ModelForces", labels=result.labels, time=result.time, data=result.forces,
                        comments=["", "This file contains the forces exerted on a model during a simulation.",
                                  "", "A force is a generalized force, meaning that it can be either a "
                                  "force (N) or a torque (Nm).", "",
                                  "Units are S.I. units (second, meters, Newtons, ...)",
                                  f"Written by opensim-pinn for trial {name}.", ""])


def activation_table(result: StaticOptimizationResult, name: str) -> StorageTable:
    """OpenSim's ``_StaticOptimization_activation.sto`` layout."""
    return StorageTable(name="Static Optimization", labels=result.labels, time=result.time,
                        data=result.activations,
                        comments=[f"This file contains static optimization results (opensim-pinn, trial {name}).",
                                  ""])



SOLVERS = ("fast", "opensim")


def _fast_solve(child, settings, info, kinematics, device: str) -> StaticOptimizationResult:
    """The fast solver on a read trial; OpenSim's inverse dynamics in ``child`` while this process makes
    the muscle module and its matrices. ``wall_s``: the longer of the two, then the solve."""
    from .muscle import MusculoskeletalModel
    from .paths import load_or_fit_paths
    from .trial import start_inverse_dynamics

    waiting = start_inverse_dynamics(child, settings, info, kinematics)
    polynomials = load_or_fit_paths(info.path, kinematics.coordinates, kinematics.time, kinematics.q,
                                    [m.name for m in info.muscles])
    muscle_model = MusculoskeletalModel(info, polynomials)  # per-model preparation: not timed
    began = time.perf_counter()
    muscles = muscle_matrices(kinematics, muscle_model, device=device)
    meanwhile = time.perf_counter() - began
    trial = waiting()
    began = time.perf_counter()
    result = fast_static_optimization(trial, info, muscle_model, device=device, muscles=muscles)
    result.wall_s = max(meanwhile, trial.preparation_s) + time.perf_counter() - began
    result.timing_note = ("reading and filtering the motion and loads; then, at the same time, OpenSim "
                          "inverse dynamics and actuator maps (child process, started before the reading; "
                          "its interpreter start-up and the transfers excluded) and the muscle paths and "
                          "forces (this process): the longer of the two; then the batched solve; cached "
                          "model description and path polynomials reused, the muscle module's construction "
                          "from them excluded")
    return result


def static_optimization(model: str, motion: str, *, out: str, external_loads: str | None = None,
                        reserves: str | None = None, start: float | None = None, end: float | None = None,
                        lowpass: float | None = 6.0, step_interval: int = 1, solver: str = "fast",
                        force: bool = False, name: str | None = None, device: str = "cpu") -> dict:
    """Run Static Optimization on a trial and write OpenSim's result files.

    Writes ``out/<trial>_StaticOptimization_force.sto``,
    ``out/<trial>_StaticOptimization_activation.sto`` and ``out/timing.json``.
    ``timing.json`` holds ``wall_s``: from reading the trial's files to the
    results in memory (file writing excluded), without interpreter start-ups
    (ours and OpenSim child processes') and without the per-model preparation
    that is cached and reused (model description, path polynomials); its
    ``includes`` says what was timed (the fast solver: see :func:`_fast_solve`).
    ``name``: the files' ``<trial>`` (default: the motion's name; OpenSim uses its tool's name).
    ``device``: where the fast solver's muscle module and solve run ("cpu" or "cuda").

    Returns
    -------
    dict
        ``files`` written, ``timing`` (the timing.json content), ``converged`` frames.
    """
    from .child import Child, run_in_child
    from .outputs import OutputFolder
    from .trial import TrialSettings, load_kinematics, load_model_info

    if solver not in SOLVERS:
        raise InputError(f"--solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    info = load_model_info(model, reserves)
    # The fast solver's child process starts (interpreter, OpenSim) while the trial is read and checked.
    with Child("inverse dynamics") if solver == "fast" else contextlib.nullcontext() as child:
        # Checks every input (files, coordinates, time window) before any long work.
        reading = time.perf_counter()
        kinematics = load_kinematics(info, motion, external_loads, start=start, end=end, lowpass=lowpass,
                                     step_interval=step_interval)
        read_s = time.perf_counter() - reading
        name = name or kinematics.name
        names = [f"{name}_StaticOptimization_force.sto", f"{name}_StaticOptimization_activation.sto",
                 "timing.json"]
        output = OutputFolder(out, names, force=force)
        output.check()
        start = kinematics.time[0] if start is None else start
        end = kinematics.time[-1] if end is None else end
        settings = TrialSettings(model=str(model), motion=str(motion), external_loads=external_loads,
                                 reserves=reserves, start=start, end=end, lowpass=lowpass,
                                 step_interval=step_interval)
        if solver == "fast":
            result = _fast_solve(child, settings, info, kinematics, device)
            result.wall_s += read_s
        else:
            check_covered(info, settings, kinematics)
            result = run_in_child("OpenSim static optimization", opensim_static_optimization, str(model),
                                  str(motion), external_loads, reserves, start, end, lowpass, step_interval)
    timing = {"solver": solver, "wall_s": round(result.wall_s, 4), "n_frames": len(result.time),
              "n_muscles": len(info.muscles), "includes": result.timing_note}
    with output as staging:
        write_storage(staging / names[0], force_table(result, name))
        write_storage(staging / names[1], activation_table(result, name))
        (staging / names[2]).write_text(json.dumps(timing, indent=2) + "\n")
    return {"files": [str(Path(out) / n) for n in names], "timing": timing,
            "converged": int(result.converged.sum()), "n_frames": len(result.time)}
