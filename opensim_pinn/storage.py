"""Read and write OpenSim Storage files (``.mot``, ``.sto``).

A Storage file is a header that ends with a line ``endheader``, a line of
tab-separated column labels starting with ``time``, and rows of numbers.
OpenSim 4 writes ``version=1``, ``nRows=``, ``nColumns=`` and ``inDegrees=``
in the header; older files (OpenSim 2/3) write ``datacolumns``/``datarows``.
Both are read. Values are returned exactly as stored: :func:`to_radians`
converts rotational columns when the header says ``inDegrees=yes``.

Examples
--------
>>> table = read_storage("subject01_walk_IK.mot")            # doctest: +SKIP
>>> table.data.shape, table.labels[:2], table.in_degrees     # doctest: +SKIP
((151, 10), ['pelvis_tilt', 'pelvis_tx'], True)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

_MAX_HEADER_LINES = 10_000


@dataclass
class StorageTable:
    """One Storage file in memory.

    Attributes
    ----------
    name : str
        First header line (OpenSim's table name).
    labels : list of str
        Column labels, without ``time``; shape ``(n_columns,)``.
    time : ndarray, shape (n_frames,)
        Time in seconds, strictly increasing.
    data : ndarray, shape (n_frames, n_columns)
        Values as stored in the file.
    in_degrees : bool
        Rotational values are in degrees: header ``inDegrees=yes``, or an OpenSim 3
        header (no ``version`` line), which OpenSim always reads as degrees.
    comments : list of str
        Other header lines, kept for information.
    """

    name: str
    labels: list[str]
    time: np.ndarray
    data: np.ndarray
    in_degrees: bool = False
    comments: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.time)

    def column(self, label: str) -> np.ndarray:
        """Values of one column, shape ``(n_frames,)``."""
        return self.data[:, self.labels.index(label)]


def read_storage(path: str | os.PathLike) -> StorageTable:
    """Read an OpenSim Storage file (``.sto``/``.mot``), checking it thoroughly.

    Raises
    ------
    InputError
        With a one-line message naming the file, when it is missing, unreadable,
        not a Storage file, ragged, non-numeric, has NaN/inf values, disagrees
        with its own ``nRows``/``nColumns``, or has non-increasing times.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; check the path")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror})") from None
    if b"\x00" in raw:
        raise InputError(f"{path}: binary file, not an OpenSim Storage file (.sto/.mot)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines[:_MAX_HEADER_LINES])
                if line.strip().lower() == "endheader"), None)
    if end is None:
        raise InputError(f"{path}: no 'endheader' line; not an OpenSim Storage file (.sto/.mot)")
    header = [line.strip() for line in lines[:end]]
    keys = _header_keys(header)
    body = [line for line in lines[end + 1:] if line.strip()]
    if not body:
        raise InputError(f"{path}: no column labels after 'endheader'")
    labels = [label.strip() for label in re.split(r"\t", body[0].strip())]
    if len(labels) == 1:  # some writers separate labels with spaces
        labels = body[0].split()
    if not labels or labels[0].lower() != "time":
        raise InputError(f"{path}: the first column after 'endheader' must be 'time', "
                         f"found {labels[0]!r}")
    if len(set(labels)) != len(labels):
        duplicate = next(label for label in labels if labels.count(label) > 1)
        raise InputError(f"{path}: column {duplicate!r} appears twice")
    values = _parse_rows(path, body[1:], len(labels))
    _check_counts(path, keys, values.shape)
    if values.shape[0] == 0:
        raise InputError(f"{path}: the file has no data rows")
    if not np.all(np.isfinite(values)):
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(f"{path}: column {labels[col]!r} has a NaN or infinite value at row "
                         f"{row + 1} (time {values[row, 0]:g}); fill the gap or cut the time range")
    time = values[:, 0]
    steps = np.diff(time)
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 1
        raise InputError(f"{path}: time is not strictly increasing at row {row + 1} "
                         f"(t = {time[row]:g} after {time[row - 1]:g})")
    # OpenSim reads a file without a 'version' line (OpenSim 3 / SIMM) as degrees, whatever it says.
    in_degrees = "version" not in keys or keys.get("indegrees", "no").lower() in ("yes", "true", "1")
    name = header[0] if header and "=" not in header[0] else path.stem
    name = name[5:].strip() if name.startswith("name ") else name
    return StorageTable(name=name, labels=labels[1:], time=time, data=values[:, 1:],
                        in_degrees=in_degrees, comments=[h for h in header[1:] if h])


def write_storage(path: str | os.PathLike, table: StorageTable) -> None:
    """Write ``table`` as an OpenSim 4 Storage file.

    The file is written under a temporary name and renamed into place, so a
    failure never leaves half a file. The header holds ``version=1``,
    ``nRows``, ``nColumns`` (time included) and ``inDegrees``, then
    ``table.comments``.
    """
    path = Path(path)
    data = np.asarray(table.data, dtype=float)
    time = np.asarray(table.time, dtype=float)
    if data.shape != (len(time), len(table.labels)):
        raise ValueError(f"data shape {data.shape} does not match "
                         f"{len(time)} times x {len(table.labels)} labels")
    header = [table.name, "version=1", f"nRows={len(time)}",
              f"nColumns={len(table.labels) + 1}",
              f"inDegrees={'yes' if table.in_degrees else 'no'}",
              *table.comments, "endheader",
              "\t".join(["time", *table.labels])]
    rows = np.column_stack([time, data])
    body = "\n".join("\t".join(f"{v:.17g}" for v in row) for row in rows)  # exact float64 round trip
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text("\n".join(header) + "\n" + body + "\n")
    os.replace(temporary, path)


def to_radians(table: StorageTable, rotational: set[str]) -> np.ndarray:
    """Data with the ``rotational`` columns in radians, shape ``(n_frames, n_columns)``."""
    data = table.data.copy()
    if table.in_degrees:
        for i, label in enumerate(table.labels):
            if label in rotational:
                data[:, i] = np.deg2rad(data[:, i])
    return data


def _parse_rows(path: Path, rows: list[str], n_columns: int) -> np.ndarray:
    """Numbers of the data rows, shape (n_rows, n_columns); a precise error for a bad row."""
    try:  # fast path: every cell at once
        values = np.array(" ".join(rows).split(), dtype=float)
        if values.size == len(rows) * n_columns:
            values = values.reshape(len(rows), n_columns)
            if all(len(row.split()) == n_columns for row in rows):
                return values
    except ValueError:
        pass
    for number, row in enumerate(rows, start=1):
        cells = row.split()
        if len(cells) != n_columns:
            raise InputError(f"{path}: row {number} has {len(cells)} values but there are "
                             f"{n_columns} columns")
        bad = next((c for c in cells if not _is_float(c)), None)
        if bad is not None:
            raise InputError(f"{path}: row {number} has a non-numeric value {bad!r}")
    raise AssertionError("unreachable: rows parsed one by one but not together")


def _header_keys(header: list[str]) -> dict[str, str]:
    keys = {}
    for line in header:
        match = re.match(r"^\s*(\w+)\s*(?:=|\s)\s*(\S+)\s*$", line)
        if match:
            keys[match.group(1).lower()] = match.group(2)
    return keys


def _check_counts(path: Path, keys: dict[str, str], shape: tuple[int, int]) -> None:
    n_rows, n_columns = shape
    for key, actual in (("nrows", n_rows), ("datarows", n_rows),
                        ("ncolumns", n_columns), ("datacolumns", n_columns)):
        if key in keys:
            try:
                stated = int(keys[key])
            except ValueError:
                raise InputError(f"{path}: header {key}={keys[key]!r} is not a whole number") from None
            if stated != actual:
                raise InputError(f"{path}: header says {key}={stated} but the file has {actual}; "
                                 "the file is truncated or was edited by hand")


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


__all__ = ["StorageTable", "read_storage", "write_storage", "to_radians"]
