"""OpenSim ExternalLoads files: which forces act on which bodies, from which columns.

The network takes the ground reaction forces as inputs; OpenSim applies the
same file in inverse dynamics. This module reads the ``.xml`` and its data
file without OpenSim and checks them, so that a missing column or an unknown
body is reported before any long work.
"""

from __future__ import annotations

from dataclasses import dataclass
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
        ``<force name>_f{x,y,z}``, 3 per ExternalForce.
    table : StorageTable
        The data file.
    columns : list of int
        Column of ``table.data`` behind each label.
    """

    labels: list[str]
    table: StorageTable
    columns: list[int]

    def forces_at(self, time: np.ndarray) -> np.ndarray:
        """Force components (N) linearly interpolated at ``time``, shape (n_frames, n_labels)."""
        return np.column_stack([np.interp(time, self.table.time, self.table.data[:, c])
                                for c in self.columns])


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

    Raises
    ------
    InputError
        The xml is missing or malformed, its data file is missing or malformed,
        a force/point/torque column is missing, or a body is not in the model.
    """
    path = Path(path)
    loads = parse_external_loads(path)
    datafile = loads_datafile(path, loads)
    if not datafile.is_file():
        raise InputError(f"{path}: its data file {datafile} does not exist; fix <datafile> (a path relative "
                         "to the .xml's folder, or absolute)")
    table = read_storage(datafile)
    labels, columns = [], []
    forces = loads.findall("objects/ExternalForce")
    if not forces:
        raise InputError(f"{path}: no ExternalForce in the ExternalLoads file; add one per foot (or "
                         "leave out --external-loads)")
    for force in forces:
        name = force.get("name", "force")
        applies = (force.findtext("appliesForce") or "true").strip().lower() != "false"
        disabled = (force.findtext("isDisabled") or "false").strip().lower() == "true"
        if disabled or not applies:
            continue
        body = (force.findtext("applied_to_body") or "").strip()
        if body not in bodies:
            raise InputError(f"{path}: ExternalForce {one_line(name)} is applied to body {one_line(body)}, which "
                             f"is not in the model (bodies: {', '.join(bodies[:12])}); fix <applied_to_body>")
        for tag in ("force_expressed_in_body", "point_expressed_in_body"):
            frame = (force.findtext(tag) or "ground").strip() or "ground"
            if frame != "ground" and frame not in bodies:
                raise InputError(f"{path}: ExternalForce {one_line(name)} has <{tag}> {one_line(frame)}, which is "
                                 "not a body of the model; use 'ground' or a body of the model")
        if not (force.findtext("force_identifier") or "").strip():
            raise InputError(f"{path}: ExternalForce {one_line(name)} names no <force_identifier>; give the "
                             "prefix of its force columns (e.g. ground_force_v)")
        for tag in ("force_identifier", "point_identifier", "torque_identifier"):
            identifier = (force.findtext(tag) or "").strip()
            if not identifier:
                continue
            for axis in "xyz":
                if identifier + axis not in table.labels:
                    if tag == "torque_identifier":
                        continue  # OpenSim treats a missing torque as zero
                    raise InputError(f"{datafile}: column {one_line(identifier + axis)} (ExternalForce "
                                     f"{one_line(name)}, {tag} in {path}) is missing from the data file; "
                                     "fix the identifier or give the matching data file")
                if tag == "force_identifier":
                    labels.append(f"{name}_f{axis}")
                    columns.append(table.labels.index(identifier + axis))
    return ExternalLoadsData(labels=labels, table=table, columns=columns)


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
