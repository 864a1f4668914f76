"""The on-disk cache: model descriptions, prepared trials (inverse dynamics) and muscle path fits.

Where it lives (:func:`cache_folder`): ``$OPENSIM_PINN_CACHE`` if set, else
``$XDG_CACHE_HOME/opensim-pinn``, else ``~/.cache/opensim-pinn``. Every entry is
keyed by a hash of the input files' bytes, the settings and the package
version, so an entry is reused only for the very same inputs. :func:`cache_info`
lists it (``opensim-pinn cache info``) and :func:`clear_cache` removes its entries
(``opensim-pinn cache clear``), and only them: files this package did not write
are left where they are.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = {
    "models": ("model descriptions", re.compile(r"[0-9a-f]{24}\.json")),
    "trials": ("prepared trials (inverse dynamics)", re.compile(r"[0-9a-f]{24}\.npz")),
    "paths": ("muscle path fits", re.compile(r"[0-9a-f]{20}\.json")),
}
"""Sub-folder -> (what its entries are, the names of the entries this package writes)."""
_PARTIAL = re.compile(r"\.[0-9a-f]{20,24}\.(json|npz)\.\d+\.[0-9a-f]{8}\.partial")
"""A temporary file of :func:`opensim_pinn.storage.write_atomically` left by a killed process."""


def cache_folder() -> Path:
    """The cache folder: ``$OPENSIM_PINN_CACHE``, else ``$XDG_CACHE_HOME/opensim-pinn``, else ``~/.cache/opensim-pinn``.

    Empty variables count as unset (as the XDG specification says).
    """
    override = os.environ.get("OPENSIM_PINN_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the specification ignores relative paths
        return Path(xdg) / "opensim-pinn"
    return Path.home() / ".cache" / "opensim-pinn"


def reused(entry: Path, what: str) -> None:
    """Log that a cached ``what`` (``entry``) is reused: the folder once (INFO), each entry at DEBUG."""
    _announce(str(entry.parent.parent))
    log.debug("cache: using cached %s %s", what, entry.name)


@functools.lru_cache(maxsize=None)
def _announce(folder: str) -> None:
    log.info("cache: reusing results computed earlier, from %s ('opensim-pinn cache clear' empties it)", folder)


def _entries(folder: Path) -> dict[str, list[Path]]:
    """The package's own files in the cache, by kind (left-over partial writes under ``partial``)."""
    found: dict[str, list[Path]] = {kind: [] for kind in (*KINDS, "partial")}
    for kind, (_, pattern) in KINDS.items():
        sub = folder / kind
        if not sub.is_dir() or sub.is_symlink():
            continue
        for path in sorted(sub.iterdir()):
            if path.is_file() and not path.is_symlink():
                if pattern.fullmatch(path.name):
                    found[kind].append(path)
                elif _PARTIAL.fullmatch(path.name):
                    found["partial"].append(path)
    return found


def cache_info(folder: str | os.PathLike | None = None) -> dict:
    """What the cache holds.

    Returns
    -------
    dict
        ``folder``, ``exists``, ``kinds`` (per kind: ``what``, ``entries``, ``bytes``),
        ``entries`` and ``bytes`` in total, and ``other_files``: files in the folder
        this package did not write (never removed by :func:`clear_cache`).
    """
    folder = Path(folder) if folder is not None else cache_folder()
    entries = _entries(folder)
    kinds = {kind: {"what": KINDS[kind][0] if kind in KINDS else "unfinished writes of killed processes",
                    "entries": len(paths), "bytes": sum(p.stat().st_size for p in paths)}
             for kind, paths in entries.items()}
    ours = {p for paths in entries.values() for p in paths}
    other = sum(1 for p in folder.rglob("*") if p.is_file() and p not in ours) if folder.is_dir() else 0
    return {"folder": str(folder), "exists": folder.is_dir(), "kinds": kinds,
            "entries": sum(k["entries"] for k in kinds.values()), "bytes": sum(k["bytes"] for k in kinds.values()),
            "other_files": other}


def clear_cache(folder: str | os.PathLike | None = None) -> dict:
    """Remove the package's cache entries (and then its emptied sub-folders and folder); nothing else.

    Returns
    -------
    dict
        ``folder``, ``removed`` (entries), ``bytes`` freed, ``kept``: other files left in place.
    """
    folder = Path(folder) if folder is not None else cache_folder()
    info = cache_info(folder)
    removed = 0
    for paths in _entries(folder).values():
        for path in paths:
            path.unlink(missing_ok=True)
            removed += 1
    for sub in [folder / kind for kind in KINDS] + [folder]:
        try:
            sub.rmdir()  # only when empty: a foreign file keeps its folder
        except OSError:
            pass
    return {"folder": str(folder), "removed": removed, "bytes": info["bytes"], "kept": info["other_files"]}


def format_size(n_bytes: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    size, unit = n_bytes / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"


__all__ = ["cache_folder", "cache_info", "clear_cache", "reused", "format_size", "KINDS"]
