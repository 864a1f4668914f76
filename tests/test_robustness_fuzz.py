"""Property-based fuzzing of the Storage reader (thousands of generated files, bounded in time).

Properties:

- every valid table written by :func:`write_storage` reads back exactly (same
  float64 bits, labels, name, degrees flag, comments);
- the same file saved the Windows way (CRLF, byte-order mark, UTF-16), with
  old-Mac CR line endings, trailing whitespace or blank lines between rows
  still reads back exactly;
- any corruption of a valid file (truncation, garbage bytes, no ``endheader``,
  a wrong ``nRows``, tabs swapped for spaces, non-numeric/NaN/inf cells,
  duplicated times, unicode, empty lines, CRLF) and any random bytes either
  read as a table or raise :class:`InputError` with a one-line message naming
  the file: no other exception, ever;
- reading writes nothing next to the input.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opensim_pinn.errors import InputError
from opensim_pinn import storage
from opensim_pinn.storage import StorageTable, read_storage, write_storage

FUZZ = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
WRITTEN_HEADER_LINES = 4  # version, nRows, nColumns, inDegrees: read back as comments

# Text a user's file may hold: any printable character, no line breaks, no NUL.
printable = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
label = st.text(printable, min_size=1, max_size=10).filter(
    lambda s: s == s.strip() and s.lower() != "time" and "\t" not in s)
name = st.text(printable, max_size=16).filter(
    lambda s: s == s.strip() and "=" not in s and s.lower() != "endheader" and not s.startswith("name "))
comment = st.text(printable, min_size=1, max_size=24).filter(
    lambda s: s == s.strip() and s.lower() != "endheader"
    and not (s.split() and s.split()[0].split("=")[0].lower() in
             {"version", "nrows", "ncolumns", "indegrees", "datarows", "datacolumns"}))
value = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw) -> StorageTable:
    n_frames = draw(st.integers(1, 8))
    labels = draw(st.lists(label, max_size=5, unique=True))
    times = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n_frames, max_size=n_frames,
                          unique=True))
    data = draw(st.lists(st.lists(value, min_size=len(labels), max_size=len(labels)),
                         min_size=n_frames, max_size=n_frames))
    return StorageTable(name=draw(name), labels=labels, time=np.array(sorted(times), dtype=float),
                        data=np.array(data, dtype=float).reshape(n_frames, len(labels)),
                        in_degrees=draw(st.booleans()), comments=draw(st.lists(comment, max_size=3)))


def assert_same(read: StorageTable, table: StorageTable) -> None:
    assert read.labels == table.labels
    assert read.name == table.name
    assert read.in_degrees is table.in_degrees
    assert read.comments[WRITTEN_HEADER_LINES:] == table.comments
    # Exact: the same float64 bits (the sign of zero included).
    np.testing.assert_array_equal(read.time.view(np.int64), table.time.view(np.int64))
    np.testing.assert_array_equal(read.data.view(np.int64), np.asarray(table.data, float).view(np.int64))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for the whole module (hypothesis runs many examples per test call); every example
    leaves it empty."""
    return tmp_path_factory.mktemp("fuzz")


def read_back(folder: Path, content: bytes):
    """Read ``content`` as a .sto; return the table or the InputError; check nothing else was written."""
    path = folder / "trial.sto"
    path.write_bytes(content)
    try:
        try:
            result = read_storage(path)
        except InputError as error:
            message = str(error)
            assert message.startswith(str(path)), message
            assert "\n" not in message and "\r" not in message, message
            result = error
        assert os.listdir(folder) == ["trial.sto"], "the reader wrote next to its input"
        assert path.read_bytes() == content
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
    return result


def written(folder: Path, table: StorageTable, *, fsync: bool = True) -> bytes:
    """The bytes :func:`write_storage` writes for ``table`` (``fsync=False``: skip the disk flush, the
    slowest part, where only the content matters)."""
    path = folder / "written.sto"
    if fsync:
        write_storage(path, table)
    else:
        with mock.patch.object(storage.os, "fsync", lambda descriptor: None):
            write_storage(path, table)
    assert os.listdir(folder) == ["written.sto"], "no temporary file left behind"
    content = path.read_bytes()
    path.unlink()
    return content


# ---- valid files round-trip --------------------------------------------------------------

@settings(max_examples=600, **FUZZ)
@given(table=tables())
def test_valid_tables_round_trip_exactly(folder, table):
    read = read_back(folder, written(folder, table, fsync=False))
    assert not isinstance(read, InputError), str(read)
    assert_same(read, table)


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def _trailing_whitespace(text: str) -> bytes:
    return "\n".join(line + (" \t " if line else "") for line in text.split("\n")).encode("utf-8")


def _blank_lines_between_rows(text: str) -> bytes:
    head, body = text.split("\nendheader\n")
    return (head + "\nendheader\n" + body.replace("\n", "\n\n  \n")).encode("utf-8")


SAME_CONTENT = {
    "crlf": _crlf,
    "cr": lambda text: text.replace("\n", "\r").encode("utf-8"),
    "utf8_bom": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "utf8_bom_crlf": lambda text: b"\xef\xbb\xbf" + _crlf(text),
    "utf16": lambda text: text.replace("\n", "\r\n").encode("utf-16"),
    "trailing_whitespace": _trailing_whitespace,
    "blank_lines_between_rows": _blank_lines_between_rows,
    "no_final_newline": lambda text: text.rstrip("\n").encode("utf-8"),
}


@settings(max_examples=600, **FUZZ)
@given(table=tables(), saved_as=st.sampled_from(sorted(SAME_CONTENT)))
def test_windows_and_other_savings_read_the_same(folder, table, saved_as):
    content = SAME_CONTENT[saved_as](written(folder, table, fsync=False).decode("utf-8"))
    read = read_back(folder, content)
    assert not isinstance(read, InputError), f"{saved_as}: {read}"
    assert_same(read, table)


# ---- corrupted files: a table or InputError, nothing else --------------------------------

BAD_TOKENS = ["abc", "1_000", "0x10", "\u0661\u0662", "\uff11\uff12", "1e", "--1", ".", "+", "e5", "1.2.3",
              "NaN", "nan", "-inf", "Infinity", "1.#QNAN", "-nan(ind)", "1e999", "-1e400", "\u00e9",
              "\x00", "\x7f", "\u2028", "\x85", "\x1c", "\ufeff", "\t", " ", '"1"', "1,5", "１"]


@st.composite
def mutation(draw):
    kind = draw(st.sampled_from(["truncate", "insert_bytes", "drop_endheader", "n_rows", "n_columns",
                                 "tab_to_space", "space_to_tab", "bad_token", "duplicate_row", "swap_rows",
                                 "unicode_line", "empty_lines", "crlf", "delete_line", "duplicate_header",
                                 "replace_byte"]))
    return kind, draw(st.integers(0, 10_000)), draw(st.sampled_from(BAD_TOKENS)), draw(st.binary(max_size=12)), \
        draw(st.text(max_size=12))


def corrupt(content: bytes, kind: str, position: int, token: str, garbage: bytes, text: str) -> bytes:
    lines = content.split(b"\n")
    line = position % len(lines)
    header_end = lines.index(b"endheader") if b"endheader" in lines else len(lines) - 1
    data_lines = list(range(header_end + 2, len(lines) - 1)) or [len(lines) - 1]
    data_line = data_lines[position % len(data_lines)]
    if kind == "truncate":
        return content[:position % (len(content) + 1)]
    if kind == "insert_bytes":
        at = position % (len(content) + 1)
        return content[:at] + garbage + content[at:]
    if kind == "replace_byte":
        if not content:
            return garbage
        at = position % len(content)
        return content[:at] + (garbage[:1] or b"\xff") + content[at + 1:]
    if kind == "drop_endheader":
        return b"\n".join(l for l in lines if l != b"endheader")
    if kind in ("n_rows", "n_columns"):
        key = b"nRows=" if kind == "n_rows" else b"nColumns="
        return b"\n".join(key + str(position - 5).encode() if l.startswith(key) else l for l in lines)
    if kind == "tab_to_space":
        lines[line] = lines[line].replace(b"\t", b" ")
        return b"\n".join(lines)
    if kind == "space_to_tab":
        return content.replace(b" ", b"\t")
    if kind == "bad_token":
        cells = lines[data_line].split(b"\t")
        cells[position % len(cells)] = token.encode("utf-8")
        lines[data_line] = b"\t".join(cells)
        return b"\n".join(lines)
    if kind == "duplicate_row":
        lines.insert(data_line, lines[data_line])
        return b"\n".join(lines)
    if kind == "swap_rows":
        other = data_lines[(position // 7) % len(data_lines)]
        lines[data_line], lines[other] = lines[other], lines[data_line]
        return b"\n".join(lines)
    if kind == "unicode_line":
        lines.insert(line, text.encode("utf-8", "surrogatepass"))
        return b"\n".join(lines)
    if kind == "empty_lines":
        lines.insert(line, b"")
        lines.insert(line, b"  \t")
        return b"\n".join(lines)
    if kind == "crlf":
        return content.replace(b"\n", b"\r\n")
    if kind == "delete_line":
        del lines[line]
        return b"\n".join(lines)
    if kind == "duplicate_header":
        lines.insert(0, b"\n".join(lines[:header_end + 1]))
        return b"\n".join(lines)
    raise AssertionError(kind)


@settings(max_examples=2000, **FUZZ)
@given(table=tables(), mutations=st.lists(mutation(), min_size=1, max_size=3))
def test_corrupted_files_give_a_table_or_input_error(folder, table, mutations):
    content = written(folder, table, fsync=False)
    for kind, position, token, garbage, text in mutations:
        content = corrupt(content, kind, position, token, garbage, text)
    result = read_back(folder, content)
    event("read as a table" if isinstance(result, StorageTable) else "InputError: " + str(result).split(": ")[1][:20])
    if isinstance(result, StorageTable):  # whatever was read is a consistent table
        assert result.data.shape == (result.n_frames, len(result.labels))
        assert np.all(np.isfinite(result.data)) and np.all(np.diff(result.time) > 0)


@settings(max_examples=800, **FUZZ)
@given(prefix=st.sampled_from([b"", b"walk\nversion=1\nendheader\n", b"endheader\ntime\ta\n",
                               b"\xff\xfe", b"\xef\xbb\xbf", b"nRows=2\nendheader\ntime a b\n"]),
       content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda s: s.encode("utf-8", "replace"))))
def test_random_bytes_give_a_table_or_input_error(folder, prefix, content):
    read_back(folder, prefix + content)
