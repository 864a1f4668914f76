"""Manifests: many trials of one model in one file (CSV or TOML).

A manifest lists trials: a motion, optionally its external loads, and
optionally a time window. Relative paths are relative to the manifest's folder.

CSV (a header row; ``external_loads``, ``start``, ``end`` and ``name`` are optional
columns, and empty cells mean "none")::

    motion,external_loads,start,end
    walk1_IK.mot,walk1_grf.xml,0.5,1.7
    walk2_IK.mot,walk2_grf.xml,,

TOML (one ``[[trial]]`` table per trial, same keys)::

    [[trial]]
    motion = "walk1_IK.mot"
    external_loads = "walk1_grf.xml"
    start = 0.5
    end = 1.7

>>> trials = read_manifest("trials.csv")            # doctest: +SKIP
>>> trials[0].motion, trials[0].start                # doctest: +SKIP
(PosixPath('/data/walk1_IK.mot'), 0.5)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, read_input_file, require_file

MANIFEST_KEYS = ("motion", "external_loads", "start", "end", "name")
"""Keys of a manifest row; only ``motion`` is required."""


@dataclass(frozen=True)
class ManifestTrial:
    """One trial of a manifest, with absolute paths.

    Attributes
    ----------
    name : str
        Unique within the manifest: the ``name`` column, or the motion's file stem
        (with ``_2``, ``_3``, ... appended where stems repeat).
    motion : Path
    external_loads : Path or None
    start, end : float or None
        Time window (s); None: the motion's first or last time.
    """

    name: str
    motion: Path
    external_loads: Path | None = None
    start: float | None = None
    end: float | None = None


def read_manifest(path: str | Path) -> list[ManifestTrial]:
    """The trials of a CSV or TOML manifest, in file order.

    Raises
    ------
    InputError
        Missing or unreadable manifest, unknown keys, a row without a motion, a
        time that is not a number or ``start >= end``, a listed file that does
        not exist, or no trials at all.
    """
    path = Path(path)
    raw = read_input_file(path, "manifest")
    rows = _toml_rows(path, raw) if path.suffix.lower() == ".toml" else _csv_rows(path, raw)
    if not rows:
        raise InputError(f"{path}: the manifest lists no trials; give one row per trial (see 'train --help')")
    trials, names = [], {}
    for where, row in rows:
        trials.append(_trial(path, where, row, names))
    return trials


def _csv_rows(path: Path, raw: bytes) -> list[tuple[str, dict]]:
    text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "motion" not in header:
        raise InputError(f"{path}: a CSV manifest needs a header row with a 'motion' column "
                         f"(and optionally {', '.join(MANIFEST_KEYS[1:])})")
    unknown = [h for h in header if h not in MANIFEST_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown manifest column(s) {', '.join(unknown)}; "
                         f"use {', '.join(MANIFEST_KEYS)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue  # a blank line
        rows.append((f"line {number}", {k: v for k, v in cells.items() if v != ""}))
    return rows


def _toml_rows(path: Path, raw: bytes) -> list[tuple[str, dict]]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
        import tomli as tomllib

    try:
        document = tomllib.loads(raw.decode("utf-8-sig", errors="replace"))
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not a valid TOML manifest ({error}); see 'train --help'") from None
    tables = document.get("trial", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise InputError(f"{path}: a TOML manifest holds [[trial]] tables; see 'train --help'")
    rows = []
    for number, table in enumerate(tables, start=1):
        unknown = [k for k in table if k not in MANIFEST_KEYS]
        if unknown:
            raise InputError(f"{path}: trial {number}: unknown key(s) {', '.join(unknown)}; "
                             f"use {', '.join(MANIFEST_KEYS)}")
        rows.append((f"trial {number}", dict(table)))
    return rows


def _trial(path: Path, where: str, row: dict, names: dict) -> ManifestTrial:
    if "motion" not in row:
        raise InputError(f"{path}: {where}: no motion; every trial needs one")
    folder = path.resolve().parent
    motion = require_file(folder / str(row["motion"]), f"motion file of {where} of the manifest").resolve()
    loads = row.get("external_loads")
    if loads is not None:
        loads = require_file(folder / str(loads), f"external loads file of {where} of the manifest").resolve()
    start, end = (_time(path, where, row, key) for key in ("start", "end"))
    if start is not None and end is not None and start >= end:
        raise InputError(f"{path}: {where}: start {start:g} s is not before end {end:g} s")
    name = str(row.get("name") or motion.stem)
    count = names.get(name, 0) + 1
    names[name] = count
    if count > 1:
        if "name" in row:
            raise InputError(f"{path}: {where}: the name {name!r} is used twice; give each trial its own")
        name = f"{name}_{count}"
    return ManifestTrial(name, motion, loads, start, end)


def _time(path: Path, where: str, row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {where}: {key} {value!r} is not a time in seconds") from None
