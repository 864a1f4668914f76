"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import os
from pathlib import Path


class InputError(Exception):
    """Bad user input (file, option, model/motion mismatch).

    The message is one line that names the problem and what to do about it.
    """


class OpenSimCrash(RuntimeError):
    """An OpenSim step ended its child process abnormally (crash or hard error)."""


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Check that a user's input file exists and can be opened; return it as a Path.

    Raises
    ------
    InputError
        The path does not exist, is a folder, or cannot be opened for reading.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: {what} not found (this is a folder); give the file itself")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; check the path")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"{path}: cannot read the {what} ({reason}); check its permissions") from None
    return path


def read_input_file(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a user's input file, or an :class:`InputError` that says why not.

    Parameters
    ----------
    path : path
        The file.
    what : str
        What the file is, for the message ("model file", "motion file", ...).

    Raises
    ------
    InputError
        The path does not exist, is a folder, or cannot be read.
    """
    path = require_file(path, what)
    try:
        return path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"{path}: cannot read the {what} ({reason}); check its permissions") from None


def first_line(text: object, default: str) -> str:
    """The first non-empty line of ``str(text)`` (an error's message), or ``default``."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else default


def parse_xml(raw: bytes):
    """The root element of a user's XML file; no entity expansion, no network access, comments dropped.

    Raises
    ------
    ValueError
        Malformed XML; the message is the parser's first line, for the caller's InputError.
    """
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)
    try:
        return etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as error:
        raise ValueError(first_line(error.msg or error, "syntax error")) from None


def one_line(text: str, limit: int = 60) -> str:
    """``repr`` of a piece of a user's file, shortened and safe to print on one line."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 4] + "...'"


__all__ = ["InputError", "OpenSimCrash", "require_file", "read_input_file", "first_line", "parse_xml", "one_line"]
