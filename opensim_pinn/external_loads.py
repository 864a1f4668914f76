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
from lxml import etree

from .errors import InputError
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


def loads_datafile(path: str | Path) -> Path:
    """The data file named by an ExternalLoads xml (resolved next to the xml)."""
    datafile = (_parse(Path(path)).findtext("datafile") or "").strip()
    if not datafile:
        raise InputError(f"{path}: the ExternalLoads file names no <datafile>")
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
    loads = _parse(path)
    datafile = loads_datafile(path)
    if not datafile.is_file():
        raise InputError(f"{path}: its data file {datafile} does not exist; fix <datafile>")
    table = read_storage(datafile)
    labels, columns = [], []
    forces = loads.findall("objects/ExternalForce")
    if not forces:
        raise InputError(f"{path}: no ExternalForce in the ExternalLoads file")
    for force in forces:
        name = force.get("name", "force")
        applies = (force.findtext("appliesForce") or "true").strip().lower() != "false"
        disabled = (force.findtext("isDisabled") or "false").strip().lower() == "true"
        if disabled or not applies:
            continue
        body = (force.findtext("applied_to_body") or "").strip()
        if body not in bodies:
            raise InputError(f"{path}: ExternalForce {name!r} is applied to body {body!r}, which is "
                             f"not in the model (bodies: {', '.join(bodies[:12])})")
        for tag in ("force_identifier", "point_identifier", "torque_identifier"):
            identifier = (force.findtext(tag) or "").strip()
            if not identifier:
                continue
            for axis in "xyz":
                if identifier + axis not in table.labels:
                    if tag == "torque_identifier":
                        continue  # OpenSim treats a missing torque as zero
                    raise InputError(f"{datafile}: column {identifier + axis!r} (ExternalForce "
                                     f"{name!r}, {tag}) is missing from the data file")
                if tag == "force_identifier":
                    labels.append(f"{name}_f{axis}")
                    columns.append(table.labels.index(identifier + axis))
    return ExternalLoadsData(labels=labels, table=table, columns=columns)


def _parse(path: Path):
    """The <ExternalLoads> element of the file."""
    if not path.is_file():
        raise InputError(f"{path}: external loads file not found; check the path")
    try:
        root = etree.parse(str(path)).getroot()
    except etree.XMLSyntaxError as error:
        raise InputError(f"{path}: not a valid XML file ({error.msg})") from None
    loads = root if root.tag == "ExternalLoads" else root.find(".//ExternalLoads")
    if loads is None:
        raise InputError(f"{path}: not an OpenSim ExternalLoads file (no <ExternalLoads> element)")
    return loads
