"""Label-free training data from the trials a user has: mirrored, slower/faster and perturbed versions.

The physics loss needs kinematics and loads only, so every physically meaningful
variation of a trial is more training data (GUIDE, "Generalisation"). Each
augmented trial is written as an ordinary motion (``.mot``) and ExternalLoads
pair into the cache folder and prepared like a user's trial
(:func:`opensim_pinn.trial.prepare_trial`): it gets its own OpenSim inverse
dynamics.

- ``"mirror"``: left/right mirroring of a bilateral model about ground's x-y
  plane (OpenSim's convention: x forward, y up, z to the right). ``_r``/``_l``
  coordinates swap; every coordinate's sign comes from the model itself
  (:func:`mirror_map`: the directions of the ``_r`` and ``_l`` coordinates'
  motions in ground at the neutral pose, :func:`opensim_pinn.osim.coordinate_directions`),
  so ``pelvis_list`` changes sign and ``pelvis_tilt`` does not, with no list of
  names. Loads move to the mirrored bodies (``calcn_r`` to ``calcn_l``), with
  their z components (force, point) and x, y components (torque, an axial
  vector) negated.
- ``"timescale"``: the same motion and loads played slower and faster
  (:data:`TIME_SCALES`): velocities scale by ``1/s``, accelerations by ``1/s^2``;
  the forces are the recorded ones, inverse dynamics computes what the muscles
  then have to add.
- ``"perturb"``: :data:`PERTURBED_COPIES` versions with constant offsets
  (:data:`POSE_NOISE_RAD`, seeded) added to the rotational coordinates.

Examples
--------
>>> settings = augmented_settings(TrialSettings(model, motion, loads), ["mirror"], info)   # doctest: +SKIP
>>> trials = [prepare_trial(s, info=info)[0] for s in settings]                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .cache import cache_folder
from .child import run_in_child
from .errors import InputError
from .external_loads import loads_datafile, parse_external_loads
from .osim import ModelInfo, coordinate_directions
from .storage import StorageTable, read_storage, write_storage

AUGMENTATIONS = ("mirror", "timescale", "perturb")
"""Names accepted by :func:`augmented_settings` (and ``train --augment``)."""

TIME_SCALES = (0.85, 1.15)
"""Duration factors of the ``"timescale"`` versions (0.85: 15 % faster)."""

POSE_NOISE_RAD = np.deg2rad(2.0)
"""Standard deviation of the ``"perturb"`` offsets of rotational coordinates (rad)."""

PERTURBED_COPIES = 1
"""Versions of each trial that ``"perturb"`` makes (each with its own offsets)."""

SYMMETRY_TOLERANCE = 0.9
"""Smallest |cosine| between a coordinate's mirrored direction and its partner's for a bilateral model."""

_SIDE = re.compile(r"^(?P<stem>.+)_(?P<side>[rlRL])$")


def check_augmentations(names) -> None:
    """:class:`InputError` unless every name is one of :data:`AUGMENTATIONS`."""
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise InputError(f"--augment {','.join(unknown)}: choose from {', '.join(AUGMENTATIONS)}")


def partner_name(name: str) -> str:
    """The other side's name: ``hip_flexion_r`` -> ``hip_flexion_l`` (names without a side: unchanged)."""
    match = _SIDE.match(name)
    if match is None:
        return name
    other = {"r": "l", "l": "r", "R": "L", "L": "R"}[match["side"]]
    return f"{match['stem']}_{other}"


@dataclass
class MirrorMap:
    """How a bilateral model mirrors: per coordinate, its partner and the sign of its value.

    Attributes
    ----------
    partner : dict
        Coordinate, body and muscle names to their mirror images (themselves when unpaired).
    sign : dict
        Coordinate name to +1 or -1: the mirrored trial's ``partner[c]`` is ``sign[c] * q[c]``.
    """

    partner: dict[str, str]
    sign: dict[str, float]


def mirror_map(info: ModelInfo) -> MirrorMap:
    """The mirror map of ``info``'s model, from its joint definitions (OpenSim in a child process).

    A rotation about axis ``w`` mirrors to a rotation about ``-M w`` (``M`` the
    reflection z -> -z; angular velocity is an axial vector), a translation
    along ``v`` to one along ``M v``; each coordinate's sign is the cosine of
    that mirrored direction with its partner's direction.

    Raises
    ------
    InputError
        A coordinate, muscle or body has a ``_r``/``_l`` name without a partner,
        or the sides' joints do not mirror each other.
    """
    names = [c.name for c in info.coordinates] + [m.name for m in info.muscles] + list(info.bodies)
    known = set(names)
    partner = {name: partner_name(name) for name in names}
    unpaired = [name for name, other in partner.items() if other not in known]
    if unpaired:
        raise InputError(f"model {info.name} is not bilateral: {', '.join(unpaired[:6])} "
                         "has no mirror partner (names ending _r/_l); leave out mirroring")
    directions = run_in_child("reading the joint axes", coordinate_directions, info.path)
    reflect = np.array([1.0, 1.0, -1.0])
    sign = {}
    for coordinate in info.coordinates:
        mine, theirs = directions[coordinate.name], directions[partner[coordinate.name]]
        if coordinate.motion_type == "rotational":
            mirrored, target = -reflect * mine[:3], theirs[:3]
        else:
            mirrored, target = reflect * mine[3:], theirs[3:]
        cosine = float(mirrored @ target / max(np.linalg.norm(mirrored) * np.linalg.norm(target), 1e-12))
        if abs(cosine) < SYMMETRY_TOLERANCE:
            raise InputError(f"model {info.name}: coordinate {coordinate.name} does not mirror onto "
                             f"{partner[coordinate.name]} (cosine {cosine:.2f} between their axes); the model "
                             "is not left/right symmetric: leave out mirroring")
        sign[coordinate.name] = float(np.sign(cosine))
    return MirrorMap(partner=partner, sign=sign)


def mirror_motion(table: StorageTable, mirror: MirrorMap) -> StorageTable:
    """The mirrored motion: coordinate columns swapped with their partners' and signed (other columns dropped)."""
    short = [label.split("/")[-2] if label.endswith("/value") else label for label in table.labels]
    columns = {name: table.column(label) for name, label in zip(short, table.labels) if name in mirror.sign}
    labels = [name for name in columns if mirror.partner[name] in columns]
    data = np.column_stack([mirror.sign[mirror.partner[name]] * columns[mirror.partner[name]] for name in labels])
    return replace(table, labels=labels, data=data, comments=[], source=None)


def mirror_loads(external_loads: str | Path, mirror: MirrorMap, folder: Path, name: str) -> Path:
    """Write the mirrored ExternalLoads (``folder/<name>.xml`` and its data ``.mot``); returns the xml.

    Each force moves to the mirrored body; its data columns are reflected: z of
    force and point, x and y of torque, negated.

    Raises
    ------
    InputError
        A force or point expressed in a body frame (only ground is mirrored here).
    """
    external_loads = Path(external_loads)
    loads = parse_external_loads(external_loads)
    table = read_storage(loads_datafile(external_loads, loads))
    flip = {}
    for force in loads.findall("objects/ExternalForce"):
        for tag in ("force_expressed_in_body", "point_expressed_in_body"):
            if ((force.findtext(tag) or "ground").strip() or "ground") != "ground":
                raise InputError(f"{external_loads}: ExternalForce {force.get('name')} has <{tag}> other than "
                                 "ground; mirroring handles loads expressed in ground only: leave out mirroring")
        body = force.find("applied_to_body")
        body.text = mirror.partner.get(body.text.strip(), body.text.strip())
        for tag, axes in (("force_identifier", "z"), ("point_identifier", "z"), ("torque_identifier", "xy")):
            identifier = (force.findtext(tag) or "").strip()
            if identifier:
                flip.update({identifier + axis: -1.0 for axis in axes})
    data = table.data * np.array([flip.get(label, 1.0) for label in table.labels])
    write_storage(folder / f"{name}.mot", replace(table, data=data, source=None))
    loads.find("datafile").text = str((folder / f"{name}.mot").resolve())
    loads.getroottree().write(str(folder / f"{name}.xml"))
    return folder / f"{name}.xml"


def time_scaled(table: StorageTable, scale: float, origin: float) -> StorageTable:
    """``table`` played ``scale`` times as long: time ``origin + (t - origin) * scale``, same values."""
    return replace(table, time=origin + (table.time - origin) * scale, source=None)


def perturbed_motion(table: StorageTable, info: ModelInfo, seed: int) -> StorageTable:
    """The motion with a constant offset (normal, :data:`POSE_NOISE_RAD`) on each rotational coordinate."""
    generator = np.random.default_rng(seed)
    rotational = info.rotational
    unit = np.rad2deg(POSE_NOISE_RAD) if table.in_degrees else POSE_NOISE_RAD
    short = [label.split("/")[-2] if label.endswith("/value") else label for label in table.labels]
    noise = np.array([unit * generator.standard_normal() if name in rotational else 0.0 for name in short])
    return replace(table, data=table.data + noise, source=None)


def augmented_settings(settings, augmentations, info: ModelInfo, *, seed: int = 0) -> list:
    """Trial settings of the augmented versions of one trial (files written to the cache folder).

    Parameters
    ----------
    settings : TrialSettings
        The user's trial.
    augmentations : list of str
        Names from :data:`AUGMENTATIONS`; ``"mirror"`` and ``"timescale"``
        together also give the mirrored trial's slower and faster versions.
    info : ModelInfo
    seed : int
        Seeds ``"perturb"``.

    Returns
    -------
    list of TrialSettings
        One per augmented trial (the original is not included).
    """
    check_augmentations(augmentations)
    motion = read_storage(settings.motion)
    loads = settings.external_loads
    origin = float(motion.time[0])
    key = hashlib.sha256(json.dumps([str(Path(settings.motion).resolve()), str(loads), sorted(augmentations),
                                     seed, list(TIME_SCALES), float(POSE_NOISE_RAD), PERTURBED_COPIES]).encode())
    key.update(Path(settings.motion).read_bytes())
    folder = cache_folder() / "augmented" / key.hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(settings.motion).stem
    bases = [("", motion, loads)]
    if "mirror" in augmentations:
        mirror = mirror_map(info)
        mirrored_loads = None if loads is None else mirror_loads(loads, mirror, folder, f"{stem}_mirror_loads")
        bases.append(("_mirror", mirror_motion(motion, mirror), mirrored_loads))
    made = []
    for suffix, table, base_loads in bases:
        versions = [(suffix, table, base_loads, 1.0)] if suffix else []
        if "timescale" in augmentations:
            versions += [(f"{suffix}_time{scale:g}", time_scaled(table, scale, origin),
                          _time_scaled_loads(base_loads, scale, origin, folder, f"{stem}{suffix}_time{scale:g}"),
                          scale) for scale in TIME_SCALES]
        if "perturb" in augmentations:
            versions += [(f"{suffix}_perturb{k}", perturbed_motion(table, info, seed + 1000 * k + len(versions)),
                          base_loads, 1.0) for k in range(PERTURBED_COPIES)]
        for name, version, version_loads, scale in versions:
            path = folder / f"{stem}{name}.mot"
            write_storage(path, version)
            made.append(replace(settings, motion=str(path), external_loads=version_loads and str(version_loads),
                                start=_scaled(settings.start, scale, origin),
                                end=_scaled(settings.end, scale, origin)))
    return made


def _scaled(value, scale: float, origin: float):
    return None if value is None else origin + (value - origin) * scale


def _time_scaled_loads(external_loads, scale: float, origin: float, folder: Path, name: str) -> Path | None:
    """The ExternalLoads with its data file's time stretched like the motion's; None without loads."""
    if external_loads is None:
        return None
    loads = parse_external_loads(Path(external_loads))
    table = read_storage(loads_datafile(external_loads, loads))
    write_storage(folder / f"{name}_loads.mot", time_scaled(table, scale, origin))
    loads.find("datafile").text = str((folder / f"{name}_loads.mot").resolve())
    loads.getroottree().write(str(folder / f"{name}_loads.xml"))
    return folder / f"{name}_loads.xml"
