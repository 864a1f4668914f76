"""OpenSim ExternalLoads files: which forces act on which bodies, from which columns.

The network takes the ground reaction forces as inputs; OpenSim applies the
same file in inverse dynamics. This module reads the ``.xml`` and its data
file without OpenSim and checks them, so that a missing column or an unknown
body is reported before any long work.

Loads are matched by what they are, not by what they are called: each network
input is one force component on one body, expressed in one frame, labelled
``<applied_to_body>/<force_expressed_in_body>/f<axis>`` (e.g.
``calcn_r/ground/fx``; OpenSim forbids slashes in names, so the label is
unambiguous). The ExternalForces' own names play no part, nor does their order
in the file; forces of several ExternalForces on the same body, in the same
frame, add up (one foot over two force plates). So any ExternalLoads file for
the same bodies serves a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, one_line, parse_xml, read_input_file
from .storage import StorageTable, read_storage


@dataclass
class ExternalLoadsData:
    """Force vectors of every ExternalForce, from the data file.

    Attributes
    ----------
    labels : list of str
        :func:`feature_label` of each force component, sorted; 3 per (body, frame).
    table : StorageTable
        The data file.
    columns : list of list of int
        Columns of ``table.data`` summed into each label (one per ExternalForce on that body and frame).
    applied : list of AppliedLoad
        Each ExternalForce whole: force, point and free moment (:meth:`applied_at`).
    """

    labels: list[str]
    table: StorageTable
    columns: list[list[int]]
    applied: list[AppliedLoad] = field(default_factory=list)

    def forces_at(self, time: np.ndarray) -> np.ndarray:
        """Force components (N) linearly interpolated at ``time``, shape (n_frames, n_labels)."""
        return np.column_stack([sum(np.interp(time, self.table.time, self.table.data[:, c]) for c in columns)
                                for columns in self.columns])


    def applied_at(self, time: np.ndarray) -> np.ndarray:
        """Each ExternalForce's force (N), point (m) and free moment (N m), xyz each, linearly interpolated at
        ``time``: shape (n_frames, n_forces, 9); without a point, the origin of the body it acts on (OpenSim's
        default: :attr:`AppliedLoad.frames` then names that body for the point); without a moment, zero."""
        out = np.zeros((len(time), len(self.applied), 9))
        for k, load in enumerate(self.applied):
            for part, columns in enumerate((load.force, load.point, load.moment)):
                if columns is None:
                    continue
                for axis, c in enumerate(columns):
                    out[:, k, 3 * part + axis] = np.interp(time, self.table.time, self.table.data[:, c])
        return out


@dataclass
class AppliedLoad:
    """One ExternalForce: its body, the data columns (xyz) of its force, point and free moment (None when
    it names none), and the frames its force and point are expressed in (the point's: the body itself when
    it names no point, which OpenSim then applies at the body's origin)."""

    body: str
    force: list[int]
    point: list[int] | None
    moment: list[int] | None
    frames: tuple[str, str]


def feature_label(body: str, frame: str, axis: str) -> str:
    """Label of one force component: ``<body>/<frame>/f<axis>`` (force on ``body``, expressed in ``frame``)."""
    return f"{body}/{frame}/f{axis}"


def loads_description(labels: list[str]) -> str:
    """The bodies and frames of ``labels`` (:func:`feature_label`), for messages:
    ``calcn_r, calcn_l (forces expressed in ground)``."""
    return _describe(_pairs(labels))


def loads_mismatch(labels: list[str], expected: list[str]) -> str | None:
    """Why loads with features ``labels`` cannot stand for ``expected`` (the same features, in any order);
    None when they can."""
    if set(labels) == set(expected):
        return None
    given, wanted = _pairs(labels), _pairs(expected)
    extra = [pair for pair in given if pair not in wanted]
    missing = [pair for pair in wanted if pair not in given]
    reasons = [f"they act on {_describe(extra)}, which the network was not trained with"] if extra else []
    if missing:
        reasons.append(f"they leave out {_describe(missing)}, which the network was trained with")
    return "; ".join(reasons) or f"their force components {labels} are not the network's {expected}"


def _pairs(labels: list[str]) -> list[tuple[str, str]]:
    """(body, frame) of each force in ``labels``, in order, once each."""
    return list(dict.fromkeys(tuple(label.split("/")[:2]) for label in labels))


def _describe(pairs: list[tuple[str, str]]) -> str:
    frames = list(dict.fromkeys(frame for _, frame in pairs))
    if len(frames) == 1:
        return f"{', '.join(body for body, _ in pairs)} (forces expressed in {frames[0]})"
    return ", ".join(f"{body} (force expressed in {frame})" for body, frame in pairs)


def _legacy_feature_labels(path: str | Path) -> dict[str, str]:
    """``<force name>_f<axis>`` (how earlier checkpoints named GRF features) -> :func:`feature_label`,
    from the ExternalLoads file that the features came from."""
    mapping = {}
    for force in _enabled_forces(parse_external_loads(Path(path))):
        body = (force.findtext("applied_to_body") or "").strip()
        frame = (force.findtext("force_expressed_in_body") or "ground").strip() or "ground"
        for axis in "xyz":
            mapping[f"{force.get('name', 'force')}_f{axis}"] = feature_label(body, frame, axis)
    return mapping


def check_same_loads(trials) -> None:
    """Raise :class:`InputError` unless every trial (Kinematics or Trial) has loads on the same bodies and
    frames as the first (or none, like the first)."""
    first = trials[0]
    for trial in trials[1:]:
        if list(trial.grf_labels) != list(first.grf_labels):
            on = [loads_description(t.grf_labels) if t.grf_labels else "no body" for t in (trial, first)]
            raise InputError(f"trial {trial.name}: its external loads act on {on[0]}, trial {first.name}'s on "
                             f"{on[1]}; give every trial loads on the same bodies (or none)")


def labels_by_body(labels: list[str], trials: list[dict], checkpoint: Path) -> list[str]:
    """GRF feature labels by body and frame (:func:`feature_label`) of a checkpoint.

    Checkpoints written before GRF features were matched by body name them
    ``<ExternalForce name>_f<axis>``: their training loads files (named in the
    checkpoint) tell the bodies. Without those files the checkpoint is refused.
    """
    if all("/" in label for label in labels):
        return labels
    mapping, files = {}, []
    for settings in trials:
        loads = settings.get("external_loads")
        if not loads:
            continue
        files.append(str(loads))
        if Path(loads).is_file():
            try:
                mapping.update(_legacy_feature_labels(loads))
            except InputError:  # no longer an ExternalLoads file
                continue
    upgraded = [mapping.get(label) for label in labels]
    if None in upgraded or len(set(upgraded)) != len(upgraded):
        raise InputError(f"{checkpoint}: an older opensim-pinn wrote this checkpoint, naming its ground reaction "
                         f"force inputs after the ExternalForces ({', '.join(labels[:6])}), and its training loads "
                         f"file ({', '.join(dict.fromkeys(files)) or 'none recorded'}) is not there to tell their "
                         "bodies: train it again with 'opensim-pinn train'")
    return upgraded


def loads_datafile(path: str | Path, loads=None) -> Path:
    """The data file named by an ExternalLoads xml (resolved next to the xml).

    ``loads``: the file's <ExternalLoads> element (:func:`parse_external_loads`), if already parsed.
    """
    if loads is None:
        loads = parse_external_loads(Path(path))
    datafile = (loads.findtext("datafile") or "").strip()
    if not datafile:
        raise InputError(f"{path}: the ExternalLoads file names no <datafile>; add <datafile> with the "
                         "ground reaction data file (.mot/.sto)")
    datafile = Path(datafile)
    return datafile if datafile.is_absolute() else Path(path).parent / datafile


def read_external_loads(path: str | Path, bodies: list[str]) -> ExternalLoadsData:
    """Read and check an ExternalLoads xml and its data file.

    ``bodies``: the model's bodies. The forces are labelled by body and frame
    (:func:`feature_label`), those on the same body and frame summed.

    Raises
    ------
    InputError
        The xml is missing or malformed, its data file is missing or malformed,
        a force/point/torque column is missing or ambiguous (its label twice,
        with different values), or a body is not in the model.
    """
    path = Path(path)
    loads = parse_external_loads(path)
    datafile = loads_datafile(path, loads)
    if not datafile.is_file():
        raise InputError(f"{path}: its data file {datafile} does not exist; fix <datafile> (a path relative "
                         "to the .xml's folder, or absolute)")
    table = read_storage(datafile)
    summed: dict[str, list[int]] = {}
    applied: list[AppliedLoad] = []
    if not loads.findall("objects/ExternalForce"):
        raise InputError(f"{path}: no ExternalForce in the ExternalLoads file; add one per foot (or "
                         "leave out --external-loads)")
    for force in _enabled_forces(loads):
        name = force.get("name", "force")
        body = (force.findtext("applied_to_body") or "").strip()
        if body not in bodies:
            raise InputError(f"{path}: ExternalForce {one_line(name)} is applied to body {one_line(body)}, which "
                             f"is not in the model (bodies: {', '.join(bodies[:12])}); fix <applied_to_body>")
        expressed = {}
        for tag in ("force_expressed_in_body", "point_expressed_in_body"):
            expressed[tag] = (force.findtext(tag) or "ground").strip() or "ground"
            if expressed[tag] != "ground" and expressed[tag] not in bodies:
                raise InputError(f"{path}: ExternalForce {one_line(name)} has <{tag}> {one_line(expressed[tag])}, "
                                 "which is not a body of the model; use 'ground' or a body of the model")
        frame, point_frame = expressed["force_expressed_in_body"], expressed["point_expressed_in_body"]
        parts: dict[str, list[int] | None] = {}
        if not (force.findtext("force_identifier") or "").strip():
            raise InputError(f"{path}: ExternalForce {one_line(name)} names no <force_identifier>; give the "
                             "prefix of its force columns (e.g. ground_force_v)")
        for tag in ("force_identifier", "point_identifier", "torque_identifier"):
            identifier = (force.findtext(tag) or "").strip()
            parts[tag] = [] if identifier else None
            if not identifier:
                continue
            for axis in "xyz":
                try:  # OpenSim applies the point and torque too: every column used must be unambiguous
                    column = table.column_index(identifier + axis,
                                                needed_for=f"ExternalForce {one_line(name)} of {path}")
                except KeyError:
                    if tag == "torque_identifier":
                        parts[tag] = None
                        continue  # OpenSim treats a missing torque as zero
                    raise InputError(f"{datafile}: column {one_line(identifier + axis)} (ExternalForce "
                                     f"{one_line(name)}, {tag} in {path}) is missing from the data file; "
                                     "fix the identifier or give the matching data file") from None
                if parts[tag] is not None:
                    parts[tag].append(column)
                if tag == "force_identifier":
                    summed.setdefault(feature_label(body, frame, axis), []).append(column)
        applied.append(AppliedLoad(body, parts["force_identifier"], parts["point_identifier"],
                                   parts["torque_identifier"],
                                   (frame, point_frame if parts["point_identifier"] is not None else body)))
    labels = sorted(summed, key=lambda label: tuple(label.split("/")))
    return ExternalLoadsData(labels=labels, table=table, columns=[summed[label] for label in labels],
                             applied=applied)


def _enabled_forces(loads) -> list:
    """The ExternalForce elements of an <ExternalLoads> element that apply a force."""
    forces = []
    for force in loads.findall("objects/ExternalForce"):
        applies = (force.findtext("appliesForce") or "true").strip().lower() != "false"
        disabled = (force.findtext("isDisabled") or "false").strip().lower() == "true"
        if applies and not disabled:
            forces.append(force)
    return forces


def parse_external_loads(path: Path):
    """The <ExternalLoads> element of the file."""
    raw = read_input_file(path, "external loads file")
    try:
        root = parse_xml(raw)
    except ValueError as reason:
        raise InputError(f"{path}: not a valid XML file ({reason}); give the ExternalLoads .xml") from None
    loads = root if root.tag == "ExternalLoads" else root.find(".//ExternalLoads")
    if loads is None:
        raise InputError(f"{path}: not an OpenSim ExternalLoads file (no <ExternalLoads> element); "
                         "give the ExternalLoads .xml that names the ground reaction data")
    return loads
