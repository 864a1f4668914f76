"""A trial: filtered kinematics, ground reaction forces and inverse dynamics of one motion.

:func:`prepare_trial` reads an IK motion (and an ExternalLoads file), checks it
against the model, filters and differentiates the coordinates exactly as
OpenSim's Static Optimization does (:mod:`opensim_pinn.filtering`), and has
OpenSim compute, in a child process, the generalised forces the muscles and
actuators must supply (muscles removed, gravity and external loads on) and each
actuator's generalised force per unit control. Results are cached on disk,
so a second run does no OpenSim work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .cache import cache_folder, reused
from .child import run_in_child, run_in_child_timed
from .errors import InputError, one_line, parse_xml, read_input_file
from .external_loads import loads_datafile, read_external_loads
from .filtering import filtered_kinematics, frame_indices
from .osim import ModelInfo, generalized_forces, model_info, model_info_from_dict
from .storage import StorageTable, read_storage, to_radians, write_atomically

log = logging.getLogger(__name__)

DEFAULT_LOWPASS_HZ = 6.0
"""Default low-pass cut-off of the coordinates (OpenSim tools' usual 6 Hz)."""

MODEL_INFO_FORMAT = 2
"""Version of the cached model descriptions (2: with the model's state variable names)."""

TRIAL_FORMAT = 3
"""Version of the cached trials (2: ground reaction forces labelled by body and frame; 3: each load whole)."""

MIN_FRAMES = 6
"""Fewest motion rows that a quintic spline (and so the differentiation) needs."""


@dataclass
class TrialSettings:
    """How a trial was prepared (everything that changes its numbers)."""

    model: str
    motion: str
    external_loads: str | None = None
    reserves: str | None = None
    start: float | None = None
    end: float | None = None
    lowpass: float | None = DEFAULT_LOWPASS_HZ
    step_interval: int = 1


@dataclass
class Kinematics:
    """Filtered kinematics and ground reaction forces at the analysed frames.

    Attributes
    ----------
    time : ndarray, shape (n_frames,)
    coordinates : list of str, the model's unlocked coordinates
    q, qd, qdd : ndarray, shape (n_frames, n_coordinates)
        rad (m), rad/s (m/s), rad/s^2 (m/s^2).
    grf_labels : list of str
    grf : ndarray, shape (n_frames, n_grf)
        Ground reaction force components (N), zero columns when there are no loads.
    load_bodies, load_frames : list of str
        Per ExternalForce: the body it acts on; the frames its force and point are expressed in,
        "<force frame>,<point frame>" (a body's name or "ground").
    loads : ndarray, shape (n_frames, n_loads, 9)
        Per ExternalForce: force (N), point (m) and free moment (N m), xyz each
        (:meth:`opensim_pinn.external_loads.ExternalLoadsData.applied_at`).
    """

    name: str
    time: np.ndarray
    coordinates: list[str]
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    grf_labels: list[str] = field(default_factory=list)
    grf: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    load_bodies: list[str] = field(default_factory=list)
    load_frames: list[str] = field(default_factory=list)
    loads: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 9)))

    def __post_init__(self):
        if self.grf.size == 0:  # no loads: shape (n_frames, 0), indexed by frame like the coordinates
            self.grf = np.zeros((len(self.time), 0))
        if self.loads.size == 0:
            self.loads = np.zeros((len(self.time), 0, 9))


@dataclass
class Trial(Kinematics):
    """Kinematics plus what Static Optimization balances.

    Attributes
    ----------
    tau : ndarray, shape (n_frames, n_coordinates)
        Generalised forces (N m / N) that muscles and actuators must supply.
    actuators : list of str
        Non-muscle actuators (reserves, residuals).
    actuator_map : ndarray, shape (n_frames, n_actuators, n_coordinates)
        Generalised force of each actuator at control 1 (optimal force included).
    """

    tau: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    actuators: list[str] = field(default_factory=list)
    actuator_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    settings: dict = field(default_factory=dict)
    preparation_s: float = 0.0
    """Seconds spent preparing the trial, child interpreter start-up excluded (0 from the cache)."""

    @property
    def n_frames(self) -> int:
        return len(self.time)


def load_kinematics(info: ModelInfo, motion: str | Path, external_loads: str | Path | None = None, *,
                    start: float | None = None, end: float | None = None,
                    lowpass: float | None = DEFAULT_LOWPASS_HZ, step_interval: int = 1,
                    checkpoint: str | Path | None = None) -> Kinematics:
    """Read, check, filter and differentiate a motion for ``info``'s model (no OpenSim run).

    ``checkpoint``: the checkpoint that ``info`` comes from (predict takes no
    model file); messages about the model then name it.

    Raises
    ------
    InputError
        Missing or malformed files, coordinates that do not match the model,
        values that look like degrees in a file marked radians, a time window
        outside the data.
    """
    motion = Path(motion)
    table = read_storage(motion)
    columns = _match_coordinates(table, info, motion, checkpoint)
    q = to_radians(table, info.rotational)[:, columns]
    _check_angles(q, info, motion, table.in_degrees)
    if table.n_frames < MIN_FRAMES:
        raise InputError(f"{motion}: {table.n_frames} rows; at least {MIN_FRAMES} are needed to "
                         "differentiate the coordinates: give a longer motion")
    start, end = _check_window(motion, table.time, start, end)
    if isinstance(step_interval, bool) or not isinstance(step_interval, (int, np.integer)) or step_interval < 1:
        raise InputError(f"--step-interval must be a whole number, 1 or more, got {step_interval!r}")
    loads = read_external_loads(external_loads, info.bodies) if external_loads is not None else None
    time, q, qd, qdd = filtered_kinematics(table.time, q, lowpass)
    rows = frame_indices(time, start, end, step_interval)
    name = motion.stem.removesuffix("_IK").removesuffix("_ik")
    kinematics = Kinematics(name=name, time=time[rows], coordinates=[c.name for c in info.free_coordinates],
                            q=q[rows], qd=qd[rows], qdd=qdd[rows], grf=np.zeros((len(rows), 0)))
    if loads is not None:
        _check_loads_cover(loads, external_loads, kinematics.time, (start, end))
        kinematics.grf_labels, kinematics.grf = loads.labels, loads.forces_at(kinematics.time)
        kinematics.load_bodies = [load.body for load in loads.applied]
        kinematics.load_frames = [",".join(load.frames) for load in loads.applied]
        kinematics.loads = loads.applied_at(kinematics.time)
    return kinematics


def prepare_trial(settings: TrialSettings, *, cache: bool = True, info: ModelInfo | None = None,
                  kinematics: Kinematics | None = None) -> tuple[Trial, ModelInfo]:
    """Kinematics and inverse dynamics of a trial, with OpenSim's help (cached).

    ``info`` and ``kinematics``: the model description and :func:`load_kinematics`
    of these settings, when the caller has read them already (they are not read
    again; :attr:`Trial.preparation_s` then leaves out their reading).

    Returns the trial and the model's description (reserves included).
    """
    began = time.perf_counter()
    stored = cache_folder() / "trials" / f"{_cache_key(settings)}.npz" if cache else None
    if stored is not None and stored.is_file():
        reused(stored, "inverse dynamics")
        trial, info = _load(stored)
        trial.preparation_s = time.perf_counter() - began
        return trial, info
    if info is None:
        info = load_model_info(settings.model, settings.reserves)
    if kinematics is None:
        kinematics = load_kinematics(info, settings.motion, settings.external_loads, start=settings.start,
                                     end=settings.end, lowpass=settings.lowpass,
                                     step_interval=settings.step_interval)
    arguments = _dynamics_arguments(settings, info, kinematics)
    before_child = time.perf_counter()
    forces, child_seconds = run_in_child_timed("inverse dynamics", generalized_forces, *arguments)
    child_startup = time.perf_counter() - before_child - child_seconds
    trial = _with_dynamics(kinematics, settings, arguments, forces, time.perf_counter() - began - child_startup)
    if stored is not None:
        _save(stored, trial, info)
    return trial, info


def start_inverse_dynamics(child, settings: TrialSettings, info: ModelInfo, kinematics: Kinematics
                           ) -> Callable[[], Trial]:
    """:func:`prepare_trial` without the cache, its OpenSim work sent now to ``child`` (a started
    :class:`~opensim_pinn.child.Child`); returns a function that waits for the trial, so that the caller
    works meanwhile. :attr:`Trial.preparation_s` leaves out the child's start-up and the caller's work."""
    began = time.perf_counter()
    arguments = _dynamics_arguments(settings, info, kinematics)
    child.send(generalized_forces, *arguments)
    sending = time.perf_counter() - began

    def wait() -> Trial:
        forces, child_seconds = child.result()
        receiving = time.perf_counter()
        trial = _with_dynamics(kinematics, settings, arguments, forces, 0.0)
        trial.preparation_s = sending + child_seconds + time.perf_counter() - receiving
        return trial
    return wait


def prepare_trials(settings: list[TrialSettings], info: ModelInfo, kinematics: list[Kinematics], *,
                   cache: bool = True) -> list[Trial]:
    """:func:`prepare_trial` of many trials of one model: the inverse dynamics of those not cached come
    from one child process (one interpreter start). :attr:`Trial.preparation_s`: this call's time per trial."""
    began = time.perf_counter()
    stored = [cache_folder() / "trials" / f"{_cache_key(s)}.npz" if cache else None for s in settings]
    trials: list[Trial | None] = [None] * len(settings)
    missing = []
    for i, path in enumerate(stored):
        if path is not None and path.is_file():
            reused(path, "inverse dynamics")
            trials[i] = _load(path)[0]
        else:
            missing.append(i)
    if missing:
        arguments = [_dynamics_arguments(settings[i], info, kinematics[i]) for i in missing]
        results = run_in_child("inverse dynamics", generalized_forces_of_each, arguments)
        for i, argument, forces in zip(missing, arguments, results):
            trials[i] = _with_dynamics(kinematics[i], settings[i], argument, forces, 0.0)
            if stored[i] is not None:
                _save(stored[i], trials[i], info)
    for trial in trials:
        trial.preparation_s = (time.perf_counter() - began) / len(trials)
    return trials


def generalized_forces_of_each(arguments: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`opensim_pinn.osim.generalized_forces` of each argument tuple (in one child process)."""
    return [generalized_forces(*argument) for argument in arguments]


def _dynamics_arguments(settings: TrialSettings, info: ModelInfo, kinematics: Kinematics) -> tuple:
    """Arguments of :func:`opensim_pinn.osim.generalized_forces` for a trial (locked coordinates included)."""
    all_names, q_all, qd_all, qdd_all = _with_locked(info, kinematics)
    return (settings.model, settings.reserves,
            settings.external_loads and str(Path(settings.external_loads).resolve()),
            all_names, kinematics.time, q_all, qd_all, qdd_all, [a.name for a in info.actuators])


def _with_dynamics(kinematics: Kinematics, settings: TrialSettings, arguments: tuple, forces: tuple,
                   preparation_s: float) -> Trial:
    """The Trial of ``kinematics`` with ``generalized_forces(*arguments)`` = ``forces`` (unlocked coordinates)."""
    tau, actuator_map = forces
    all_names, actuators = arguments[3], arguments[8]
    free = [all_names.index(c) for c in kinematics.coordinates]
    return Trial(**asdict(kinematics), tau=tau[:, free], actuators=list(actuators),
                 actuator_map=actuator_map[:, :, free], settings=asdict(settings), preparation_s=preparation_s)


def load_model_info(model: str | Path, reserves: str | Path | None = None) -> ModelInfo:
    """The model's description (reserves appended), read by OpenSim once and cached per model file.

    The files are checked first (exist, readable, an OpenSim model / ForceSet
    document, reserves on coordinates of the model), so that OpenSim never sees
    a file that is not what it should be; then OpenSim reads the model in a
    child process.

    Raises
    ------
    InputError
        A file is missing, unreadable or not what it should be; the model has no muscles.
    OpenSimCrash
        OpenSim crashed reading the model.
    """
    coordinates = check_model_file(model)
    if reserves is not None and str(reserves) != "auto":
        check_reserves_file(reserves, model, coordinates)
    digest = hashlib.sha256(file_digest(model, None if reserves == "auto" else reserves).encode())
    digest.update(json.dumps([reserves == "auto", __version__, MODEL_INFO_FORMAT]).encode())
    stored = cache_folder() / "models" / f"{digest.hexdigest()[:24]}.json"
    if stored.is_file():
        reused(stored, "model description")
        info = model_info_from_dict(json.loads(stored.read_text()))
        info.path = str(Path(model).resolve())
        return info
    info = run_in_child("reading the model", model_info, str(model), None if reserves is None else str(reserves))
    if not info.muscles:
        raise InputError(f"{model}: the model has no muscles; opensim-pinn estimates muscle forces: "
                         "give a model with muscles")
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(stored, json.dumps(info.to_dict()).encode())
    return info


def check_model_file(model: str | Path) -> set[str]:
    """Check, without OpenSim, that ``model`` is a readable OpenSim model document.

    Returns
    -------
    set of str
        Names of the model's coordinates (as written in the file).
    """
    root = _opensim_document(Path(model), "model file", "Model", "OpenSim model",
                             "give the scaled OpenSim model (.osim)")
    return {element.get("name") for element in root.iter("Coordinate") if element.get("name")}


def check_reserves_file(reserves: str | Path, model: str | Path, coordinates: set[str]) -> None:
    """Check, without OpenSim, that ``reserves`` is a ForceSet whose actuators act on ``coordinates``."""
    hint = "give a ForceSet .xml (like OpenSim's force_set_files) or 'auto'"
    force_set = _opensim_document(Path(reserves), "reserve actuator file", "ForceSet", "OpenSim ForceSet", hint,
                                  bare_root=True)
    for actuator in force_set.findall("objects/CoordinateActuator"):  # not <defaults>
        coordinate = (actuator.findtext("coordinate") or "").strip()
        if coordinates and coordinate not in coordinates:
            raise InputError(f"{reserves}: CoordinateActuator {one_line(actuator.get('name', ''))} acts on "
                             f"coordinate {one_line(coordinate)}, which is not in {model}; give the reserves "
                             "made for this model, or 'auto'")


def _opensim_document(path: Path, what: str, tag: str, kind: str, hint: str, *, bare_root: bool = False):
    """The ``<tag>`` element of an OpenSim XML document, or an InputError naming what the file is."""
    raw = read_input_file(path, what)
    if b"\x00" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: binary file, not an {kind} file; {hint}")
    try:
        root = parse_xml(raw)
    except ValueError as reason:
        raise InputError(f"{path}: not an {kind} file (not valid XML: {reason}); {hint}") from None
    if root.tag == "OpenSimDocument":
        elements = [element for element in root if isinstance(element.tag, str)]
        found = next((element for element in elements if element.tag == tag), None)
        if found is None:
            holds = f"<{str(elements[0].tag)[:60]}>" if elements else "nothing"
            raise InputError(f"{path}: not an {kind} file: the OpenSim document holds {holds}, "
                             f"not <{tag}>; {hint}")
        return found
    if bare_root and root.tag == tag:
        return root
    raise InputError(f"{path}: not an {kind} file: its root element is <{str(root.tag)[:60]}>, "
                     f"not <OpenSimDocument>; {hint}")


def file_digest(*paths: str | Path | None) -> str:
    """SHA-256 over the bytes of the given files (None skipped)."""
    digest = hashlib.sha256()
    for path in paths:
        if path is not None and Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _cache_key(settings: TrialSettings) -> str:
    loads_data = loads_datafile(settings.external_loads) if settings.external_loads else None
    reserves = settings.reserves if settings.reserves != "auto" else None
    digest = hashlib.sha256(file_digest(settings.model, settings.motion, settings.external_loads,
                                        loads_data, reserves).encode())
    digest.update(json.dumps([settings.reserves == "auto", settings.start, settings.end,
                              settings.lowpass, settings.step_interval, __version__, TRIAL_FORMAT]).encode())
    return digest.hexdigest()[:24]


def _with_locked(info: ModelInfo, kinematics: Kinematics):
    """All coordinates (locked ones held at their default value) for OpenSim."""
    names = [c.name for c in info.coordinates]
    n = len(kinematics.time)
    arrays = []
    for values in (kinematics.q, kinematics.qd, kinematics.qdd):
        full = np.zeros((n, len(names)))
        for i, coordinate in enumerate(info.coordinates):
            if coordinate.name in kinematics.coordinates:
                full[:, i] = values[:, kinematics.coordinates.index(coordinate.name)]
            elif values is kinematics.q:
                full[:, i] = coordinate.default_value
        arrays.append(full)
    return (names, *arrays)


def _match_coordinates(table: StorageTable, info: ModelInfo, motion: Path,
                       checkpoint: str | Path | None = None) -> list[int]:
    """Column of each unlocked model coordinate in the motion (plain or ``/jointset/.../value`` labels).

    A coordinate whose label appears more than once, with different values, is refused (ambiguous).
    """
    short = [label.split("/")[-2] if label.endswith("/value") else label for label in table.labels]
    wanted = [c.name for c in info.free_coordinates]
    missing = [name for name in wanted if name not in short]
    if missing:
        known = set(short) & {c.name for c in info.coordinates}
        if checkpoint is None:
            model, question, fix = (f"model {info.name}", "is it the right model?",
                                    "give the inverse-kinematics motion of this model")
        else:
            model = f"model {info.name}, which the checkpoint {checkpoint} was trained on"
            question = "are the motion and the checkpoint of the same model?"
            fix = "give a motion of that model, or the checkpoint trained on this motion's model"
        hint = "" if known else f" (no column matches a coordinate of this model: {question})"
        raise InputError(f"{motion}: no column for coordinate(s) {', '.join(missing[:12])}"
                         f"{' ...' if len(missing) > 12 else ''} of {model}{hint}; {fix}")
    columns = [table.column_index(name, short, needed_for=f"coordinate {name} of model {info.name}")
               for name in wanted]
    extra = [label for label in dict.fromkeys(short) if label not in {c.name for c in info.coordinates}]
    if extra:
        log.warning("%s: ignoring columns that are not coordinates of %s: %s", motion, info.name,
                    ", ".join(extra[:8]))
    return columns


ANGLE_LIMIT = 4 * np.pi
"""Largest plausible joint angle (rad): two turns."""
RANGE_MARGIN = 1.0
"""rad; a coordinate read as radians further than this outside its range, that fits the range
when read as degrees, is taken as degrees in a file marked radians."""


def _check_angles(q: np.ndarray, info: ModelInfo, motion: Path, in_degrees: bool) -> None:
    """Catch degrees in a file whose header says radians.

    Angles beyond two turns, or far outside the coordinate's range when they
    would fit it as degrees, are reported.
    """
    for i, coordinate in enumerate(info.free_coordinates):
        if coordinate.motion_type != "rotational":
            continue
        values = q[:, i]
        peak = float(np.abs(values).max())
        if in_degrees:
            if peak > ANGLE_LIMIT:
                raise InputError(f"{motion}: coordinate {coordinate.name} reaches {np.rad2deg(peak):.1f} degrees "
                                 "(more than two turns); check the values and the units of the file")
            continue
        low, high = coordinate.range
        as_degrees = np.deg2rad(values)
        outside = values.min() < low - RANGE_MARGIN or values.max() > high + RANGE_MARGIN
        fits_as_degrees = as_degrees.min() >= low - 0.1 and as_degrees.max() <= high + 0.1
        if peak > ANGLE_LIMIT or (np.isfinite(low) and np.isfinite(high) and outside and fits_as_degrees):
            raise InputError(f"{motion}: coordinate {coordinate.name} reaches {values[np.argmax(np.abs(values))]:.4g} "
                             f"but its range is {low:.3g} to {high:.3g} rad and the header does not say "
                             "inDegrees=yes: the values look like degrees; set 'inDegrees=yes' in the header")


def _check_window(motion: Path, time: np.ndarray, start: float | None, end: float | None) -> tuple[float, float]:
    """The analysed time window, checked against the motion's time range."""
    first, last = float(time[0]), float(time[-1])
    for option, value in (("--start", start), ("--end", end)):
        if value is not None and not np.isfinite(value):
            raise InputError(f"{option} must be a time in seconds, got {value}")
    start = first if start is None else float(start)
    end = last if end is None else float(end)
    tolerance = 1e-6
    if start < first - tolerance or end > last + tolerance or start > last or end < first:
        raise InputError(f"{motion}: time window {start:g} to {end:g} s is outside the data "
                         f"({first:g} to {last:g} s); choose --start/--end inside it")
    if start >= end:
        raise InputError(f"time window {start:g} to {end:g} s is empty: --start must be before --end "
                         f"(the motion {motion} covers {first:g} to {last:g} s)")
    return start, end


def _check_loads_cover(loads, external_loads, time: np.ndarray, window: tuple[float, float]) -> None:
    """The ground reaction data must span the analysed frames (no extrapolation)."""
    data_time = loads.table.time
    tolerance = 1e-6 + (0.5 * float(np.median(np.diff(data_time))) if len(data_time) > 1 else 0.0)
    if time[0] < data_time[0] - tolerance or time[-1] > data_time[-1] + tolerance:
        raise InputError(f"{external_loads}: its data cover {data_time[0]:g} to {data_time[-1]:g} s but the "
                         f"analysed window is {window[0]:g} to {window[1]:g} s; give loads data over the whole "
                         "window or narrow --start/--end")


def _save(path: Path, trial: Trial, info: ModelInfo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = asdict(trial)
    arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in fields.items() if not isinstance(v, np.ndarray)}
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, meta=json.dumps({"trial": meta, "info": info.to_dict()}), **arrays)
    os.replace(partial, path)


def _load(path: Path) -> tuple[Trial, ModelInfo]:
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        arrays = {k: stored[k] for k in stored.files if k != "meta"}
    return Trial(**meta["trial"], **arrays), model_info_from_dict(meta["info"])
