"""Read and write OpenSim Storage files (``.mot``, ``.sto``).

A Storage file is a header that ends with a line ``endheader``, a line of
tab-separated column labels starting with ``time``, and rows of numbers.
OpenSim 4 writes ``version=1``, ``nRows=``, ``nColumns=`` and ``inDegrees=``
in the header; older files (OpenSim 2/3) write ``datacolumns``/``datarows``.
Both are read. Values are returned exactly as stored: :func:`to_radians`
converts rotational columns when the header says ``inDegrees=yes``.

Every file that OpenSim's own readers read is read, with the numbers OpenSim's
tools see (checked against ``opensim.Storage`` on the quirky files of OpenSim's
model collection):

- header counts (``nRows``, ``nColumns``, ``datarows``, ``datacolumns``) that
  disagree with the data: the data are read, as ``opensim.TimeSeriesTable``
  does, with a warning;
- repeated time stamps (RRA's adjusted kinematics repeat the last one): the last
  row of each repeated time is kept, as ``opensim.Storage`` (which AnalyzeTool,
  inverse dynamics and ExternalLoads read with) keeps it, with a warning;
- a label that appears more than once: read; :meth:`StorageTable.column_index`
  refuses it where the column is needed and its copies differ.

Still refused, as OpenSim's tools cannot use them: ragged rows, non-numbers,
NaN/inf, and time going backwards.

Examples
--------
>>> table = read_storage("subject01_walk_IK.mot")            # doctest: +SKIP
>>> table.data.shape, table.labels[:2], table.in_degrees     # doctest: +SKIP
((151, 10), ['pelvis_tilt', 'pelvis_tx'], True)
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, one_line, read_input_file
from .number_text import format_columns

_MAX_HEADER_LINES = 10_000
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PLAIN_NUMBER_BYTES = b"0123456789eE+-. \t\n\x0b\x0c"  # digits, signs, point, ASCII whitespace
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity|1\.#(?:qnan|snan|ind|inf)\d*)(?:\(\w*\))?", re.IGNORECASE)
_WRITTEN_KEYS = {"version", "nrows", "ncolumns", "indegrees", "datarows", "datacolumns"}
_SHOWN_TIMES = 5

log = logging.getLogger(__name__)


@dataclass
class StorageTable:
    """One Storage file in memory.

    Attributes
    ----------
    name : str
        First header line (OpenSim's table name).
    labels : list of str
        Column labels, without ``time``; shape ``(n_columns,)``. A label may
        appear twice in a file read (use :meth:`column_index`).
    time : ndarray, shape (n_frames,)
        Time in seconds, strictly increasing.
    data : ndarray, shape (n_frames, n_columns)
        Values as stored in the file.
    in_degrees : bool
        Rotational values are in degrees: header ``inDegrees=yes``, or an OpenSim 3
        header (no ``version`` line), which OpenSim always reads as degrees.
    comments : list of str
        Other header lines, kept for information.
    source : str or None
        The file it was read from (named in messages); not written.
    """

    name: str
    labels: list[str]
    time: np.ndarray
    data: np.ndarray
    in_degrees: bool = False
    comments: list[str] = field(default_factory=list)
    source: str | None = field(default=None, compare=False)

    @property
    def n_frames(self) -> int:
        return len(self.time)

    def column(self, label: str) -> np.ndarray:
        """Values of one column, shape ``(n_frames,)`` (see :meth:`column_index`)."""
        return self.data[:, self.column_index(label)]

    def column_index(self, label: str, names: list[str] | None = None, *, needed_for: str = "") -> int:
        """Column of :attr:`data` labelled ``label``.

        ``names``: the labels to look ``label`` up in, one per column (default
        :attr:`labels`; e.g. coordinate names of ``/jointset/.../value`` labels).
        A label that appears more than once is fine when its columns hold the
        same numbers (the first is used).

        Raises
        ------
        KeyError
            No column has that label.
        InputError
            The label appears more than once with different numbers: the column
            is ambiguous (``needed_for`` says what needs it, in the message).
        """
        names = self.labels if names is None else names
        where = [i for i, name in enumerate(names) if name == label]
        if not where:
            raise KeyError(label)
        first = where[0]
        if any(not np.array_equal(self.data[:, first], self.data[:, i]) for i in where[1:]):
            numbers = ", ".join(str(i + 2) for i in where)  # file columns, time is column 1
            need = f" {needed_for} needs it," if needed_for else ""
            raise InputError(f"{self.source or self.name}: column {one_line(label)} appears {len(where)} times "
                             f"(columns {numbers}, time is column 1) with different values;{need} so it is "
                             "ambiguous: rename or remove the copies that are not meant")
        return first


def read_storage(path: str | os.PathLike) -> StorageTable:
    """Read an OpenSim Storage file (``.sto``/``.mot``), checking it thoroughly.

    Line endings may be LF, CRLF (Windows) or CR; the text may be UTF-8 (with or
    without a byte-order mark), UTF-16 with a byte-order mark, or Latin-1.
    Header counts that disagree with the data and repeated time stamps are read
    as OpenSim reads them, with one warning each (see the module docstring);
    repeated labels are read (debug message).

    Raises
    ------
    InputError
        With a one-line message naming the file, when it is missing, unreadable,
        not a Storage file, ragged, non-numeric, has NaN/inf values, or time goes
        backwards. No other exception comes out of this function for any file content.
    """
    path = Path(path)
    text = _decode(path, read_input_file(path, "Storage file"))
    lines = text.split("\n") if "\r" not in text else _LINE_BREAK.split(text)
    end = next((i for i, line in enumerate(lines[:_MAX_HEADER_LINES])
                if line.strip().lower() == "endheader"), None)
    if end is None:
        raise InputError(f"{path}: no 'endheader' line; not an OpenSim Storage file (.sto/.mot): "
                         "its header must end with a line 'endheader'")
    header = [line.strip() for line in lines[:end]]
    keys = _header_keys(header)
    body = [(number, line) for number, line in enumerate(lines[end + 1:], start=end + 2) if line.strip()]
    if not body:
        raise InputError(f"{path}: no column labels after 'endheader'; the file is empty or truncated")
    labels = [label.strip() for label in body[0][1].strip().split("\t")]
    if len(labels) == 1:  # some writers separate labels with spaces
        labels = body[0][1].split()
    if labels[0].lower() != "time":
        raise InputError(f"{path}: the first column after 'endheader' must be 'time', "
                         f"found {one_line(labels[0])} (line {body[0][0]}); is the line of column labels missing?")
    if "" in labels:
        raise InputError(f"{path}: column {labels.index('') + 1} has no label (line {body[0][0]}); "
                         "fix the line of column labels")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:  # OpenSim reads them; a column that is needed is checked where it is used
        log.debug("%s: column labels appearing more than once: %s", path, ", ".join(repeated))
    values = _parse_rows(path, body[1:], labels)
    if values.shape[0] == 0:
        raise InputError(f"{path}: the file has no data rows; it is empty or truncated")
    counts = _count_notes(keys, values.shape)
    if counts:
        log.warning("%s: %s", path, "; ".join(counts))
    if not np.all(np.isfinite(values)):
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(f"{path}: column {one_line(labels[col])} has a NaN or infinite value at row "
                         f"{row + 1} (line {body[row + 1][0]}); fill the gap or cut the time range")
    values = _without_repeated_times(path, values, [number for number, _ in body[1:]])
    # OpenSim reads a file without a 'version' line (OpenSim 3 / SIMM) as degrees, whatever it says.
    in_degrees = "version" not in keys or keys.get("indegrees", "no").lower() in ("yes", "true", "1")
    name = header[0] if header and "=" not in header[0] else path.stem
    name = name[5:].strip() if name.startswith("name ") else name
    return StorageTable(name=name, labels=labels[1:], time=values[:, 0], data=values[:, 1:],
                        in_degrees=in_degrees, comments=[h for h in header[1:] if h], source=str(path))


def _without_repeated_times(path: Path, values: np.ndarray, line_numbers: list[int]) -> np.ndarray:
    """The rows of ``values`` (n_rows, 1 + n_columns) with the last row of each repeated time only.

    That is what ``opensim.Storage`` keeps (a row at the time of the previous one
    replaces it), and so what OpenSim's tools analyse; one warning names the times.
    Time going backwards is refused (OpenSim's tools cannot use such a file).
    """
    time = values[:, 0]
    steps = np.diff(time)
    if np.any(steps < 0):
        row = int(np.argmax(steps < 0)) + 1
        raise InputError(f"{path}: time is not strictly increasing at row {row + 1} "
                         f"(t = {time[row]:.10g} after {time[row - 1]:.10g}, line {line_numbers[row]}): it goes "
                         "back; sort the file by time or remove the rows out of order")
    if not np.any(steps == 0):
        return values
    keep = np.append(steps != 0, True)  # the last row of each run of equal times
    times = np.unique(time[:-1][steps == 0])
    shown = ", ".join(f"{t:.10g}" for t in times[:_SHOWN_TIMES]) + (" ..." if len(times) > _SHOWN_TIMES else "")
    log.warning("%s: time stamps repeated at t = %s s (%d row(s) dropped); kept the last row at each repeated "
                "time, as OpenSim's Storage (and so its tools) does", path, shown, int(np.sum(~keep)))
    return values[keep]


FLOAT32_DIGITS = 9
"""Significant digits that hold every digit of a float32 number (values computed in float32, such as the
network's outputs, written with ``digits=FLOAT32_DIGITS``: the file is half as long and twice as fast to write)."""


def write_storage(path: str | os.PathLike, table: StorageTable, *, digits: int | list[int] = 17) -> None:
    """Write ``table`` as an OpenSim 4 Storage file: :func:`storage_bytes` written with :func:`write_atomically`.

    ``digits``: significant digits of the data columns (one number, or one per column); the time column
    always has 17.

    The file is written under a temporary name in the same folder and renamed
    into place, so a failure never leaves half a file (an existing file of
    that name stays as it was). The header holds ``version=1``, ``nRows``,
    ``nColumns`` (time included) and ``inDegrees``, then ``table.comments``
    (comment lines that would contradict those keys, such as the ``nRows`` of
    the file the table was read from, are left out). Values are printed with
    17 significant digits by default: :func:`read_storage` gets back the same float64
    numbers.

    Raises
    ------
    ValueError
        The data do not match the labels, or a label cannot be written
        (empty, with tabs or line breaks, duplicated, or ``time``).
    """
    write_atomically(Path(path), storage_bytes(table, digits=digits))


def storage_bytes(table: StorageTable, *, digits: int | list[int] = 17) -> bytes:
    """The content of the Storage file :func:`write_storage` writes for ``table`` (same arguments and errors)."""
    data = np.asarray(table.data, dtype=float)
    time = np.asarray(table.time, dtype=float).reshape(-1)
    labels = [str(label) for label in table.labels]
    if data.shape != (len(time), len(labels)):
        raise ValueError(f"data shape {data.shape} does not match "
                         f"{len(time)} times x {len(labels)} labels")
    for label in labels:
        if not label or label != label.strip() or _LINE_BREAK.search(label) or "\t" in label \
                or label.lower() == "time":
            raise ValueError(f"column label {label!r} cannot be written to a Storage file")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate column labels: {labels}")
    name = _header_text(str(table.name)).replace("=", "_")
    if name.lower() == "endheader":
        name = "table"
    if name.startswith("name "):  # read_storage drops an OpenSim 3 'name ' prefix
        name = "name " + name
    comments = []
    for comment in table.comments:
        for line in _LINE_BREAK.split(str(comment)):
            line = _header_text(line)
            key = _header_keys([line])
            if line.lower() == "endheader" or set(key) & _WRITTEN_KEYS:
                continue
            comments.append(line)
    header = [name, "version=1", f"nRows={len(time)}",
              f"nColumns={len(labels) + 1}",
              f"inDegrees={'yes' if table.in_degrees else 'no'}",
              *comments, "endheader",
              "\t".join(["time", *labels])]
    rows = np.column_stack([time, data]) if data.size else time[:, None]
    digits = [digits] * len(labels) if isinstance(digits, int) else list(digits)
    if len(digits) != len(labels):
        raise ValueError(f"{len(digits)} digits for {len(labels)} columns")
    body = format_columns(rows, [17, *digits][:rows.shape[1]])  # 17: exact float64; the bytes of '%.17g'
    return ("\n".join(header) + "\n").encode("utf-8") + body


def to_radians(table: StorageTable, rotational: set[str]) -> np.ndarray:
    """Data with the ``rotational`` columns in radians, shape ``(n_frames, n_columns)``."""
    data = table.data.copy()
    if table.in_degrees:
        for i, label in enumerate(table.labels):
            if label in rotational:
                data[:, i] = np.deg2rad(data[:, i])
    return data


def _decode(path: Path, raw: bytes) -> str:
    """Text of a Storage file's bytes, or an InputError for a binary file."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark (Windows "Unicode")
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif b"\x00" not in raw:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    raise InputError(f"{path}: binary file, not an OpenSim Storage file (.sto/.mot); give the text file")


def _parse_rows(path: Path, rows: list[tuple[int, str]], labels: list[str]) -> np.ndarray:
    """Numbers of the data rows, shape (n_rows, n_columns); a precise error for a bad row.

    ``rows`` holds (line number, text) pairs. A cell is a decimal number
    (``12``, ``-1.5e-3``, ``.5``), or ``nan``/``inf`` which is read so that the
    caller reports it; anything else (``1_000``, ``0x10``, other digit scripts,
    which Python's ``float`` would accept but OpenSim would not) is an error.
    """
    n_columns = len(labels)
    lines = [line for _, line in rows]
    text = "\n".join(lines)
    if rows and text.isascii() and not text.encode("ascii").translate(None, _PLAIN_NUMBER_BYTES):
        try:  # fast path: every cell at once, parsed as float() parses (numpy's C reader, given the lines: a
            # fifth faster than from one text); any doubt below
            values = np.loadtxt(lines, dtype=float, comments=None, ndmin=2, encoding=None)
            if values.shape == (len(rows), n_columns):
                return values
        except ValueError:
            pass
    values = np.empty((len(rows), n_columns))
    for index, (number, line) in enumerate(rows):
        cells = line.split()
        if len(cells) != n_columns:
            raise InputError(f"{path}: row {index + 1} has {len(cells)} values but there are "
                             f"{n_columns} columns (line {number}); the file is ragged or truncated")
        for column, cell in enumerate(cells):
            if _NUMBER.fullmatch(cell):
                values[index, column] = float(cell)
            elif _NOT_FINITE.fullmatch(cell):
                raise InputError(f"{path}: column {one_line(labels[column])} has a NaN or infinite value "
                                 f"{one_line(cell)} at row {index + 1} (line {number}); fill the gap or "
                                 "cut the time range")
            else:
                raise InputError(f"{path}: row {index + 1} has a non-numeric value {one_line(cell)} in "
                                 f"column {one_line(labels[column])} (line {number}); every cell after the "
                                 "labels must be a number")
    return values


def write_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file next to ``path``, then rename it into place.

    A reader never sees half a file, and an error or a kill leaves the previous file as it was.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _header_text(line: str) -> str:
    """One header line as :func:`read_storage` will read it back: single line, stripped."""
    return " ".join(_LINE_BREAK.split(line)).strip()


def _header_keys(header: list[str]) -> dict[str, str]:
    keys = {}
    for line in header:
        match = re.match(r"^\s*(\w+)\s*(?:=|\s)\s*(\S+)\s*$", line)
        if match:
            keys[match.group(1).lower()] = match.group(2)
    return keys


def _count_notes(keys: dict[str, str], shape: tuple[int, int]) -> list[str]:
    """What the header's row/column counts get wrong about the data (``shape``: rows, columns with time).

    The data win, as in ``opensim.TimeSeriesTable`` (``opensim.Storage`` would stop
    after ``nRows`` rows, or split the rows by ``nColumns``).
    """
    n_rows, n_columns = shape
    notes = []
    for key, actual in (("nrows", n_rows), ("datarows", n_rows),
                        ("ncolumns", n_columns), ("datacolumns", n_columns)):
        if key not in keys:
            continue
        rows = key.endswith("rows")
        what = f"{actual} data rows" if rows else f"{actual} columns (time included)"
        try:
            stated = int(keys[key])
        except ValueError:
            notes.append(f"header {key}={one_line(keys[key])} is not a whole number; ignored, read {what}")
            continue
        if stated != actual:
            note = (f"header says {key}={stated} but the file has {what}; read them all, as OpenSim's "
                    "TimeSeriesTable does")
            if rows and stated < actual:
                note += f" (OpenSim's Storage reads only the first {max(stated, 0)})"
            notes.append(note)
    return notes


__all__ = ["StorageTable", "read_storage", "write_storage", "storage_bytes", "write_atomically", "to_radians"]
