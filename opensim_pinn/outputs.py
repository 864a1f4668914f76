"""Writing results safely: all or nothing, never over a user's file without ``force``.

>>> with OutputFolder("results", ["walk_forces.sto"], force=False) as staging:   # doctest: +SKIP
...     write_storage(staging / "walk_forces.sto", table)

Files are written into a hidden staging folder next to their destination and
moved into place only when the block ends without an error; an error (or
Ctrl-C) leaves the destination as it was: no new file, existing files
byte-identical, and a folder created for the outputs removed again. Call
:meth:`OutputFolder.check` before long work, so that a refusal comes first.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".opensim-pinn-"
"""Name prefix of the hidden staging folders (left behind only if the process is killed)."""


class OutputFolder:
    """Context manager that stages the named output files and commits them together.

    Parameters
    ----------
    folder : path
        Destination folder (created, with its parents, if missing).
    names : list of str
        Every file the block will write (relative names, no sub-folders).
    force : bool
        Replace existing files of the same names. Without it, an existing file is
        an :class:`InputError`, raised before anything is written.

    Notes
    -----
    Replacing is transactional: existing files are moved aside, the new ones
    moved in, and if any move fails every file is put back.
    """

    def __init__(self, folder: str | os.PathLike, names: list[str], *, force: bool = False):
        self.folder = Path(folder)
        self.names = list(names)
        self.force = force
        self._created: list[Path] = []
        self._staging: Path | None = None
        self._keep_staging = False
        for name in self.names:
            if not name or Path(name).name != name or name in (".", ".."):
                raise ValueError(f"output names must be plain file names, got {name!r}")

    def check(self) -> None:
        """Raise if the outputs cannot be written, or would overwrite files without ``force``.

        Writes nothing and creates nothing: call it before long work.
        """
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder}: exists and is not a folder; choose another --out")
        nearest = self.folder
        while not nearest.exists() and nearest.parent != nearest:
            nearest = nearest.parent
        if not nearest.is_dir():
            raise InputError(f"{self.folder}: {nearest} is a file, not a folder; choose another --out")
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise InputError(f"{self.folder}: cannot write in {nearest} (permission denied); choose another --out")
        folders = [n for n in self.names if (self.folder / n).is_dir()]
        if folders:
            raise InputError(f"{self.folder / folders[0]}: is a folder where an output file goes; "
                             "move it away or choose another --out")
        existing = [n for n in self.names if (self.folder / n).exists() or (self.folder / n).is_symlink()]
        if existing and not self.force:
            raise InputError(f"{self.folder}: already holds {', '.join(existing[:4])}"
                             f"{' ...' if len(existing) > 4 else ''}; use --force to replace, or "
                             "choose another --out")

    def __enter__(self) -> Path:
        self.check()
        missing = []
        parent = self.folder
        while not parent.exists():
            missing.append(parent)
            if parent.parent == parent:
                break
            parent = parent.parent
        try:
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                    self._created.append(folder)
                except FileExistsError:  # made meanwhile by another process (torchrun ranks share --out)
                    if not folder.is_dir():
                        raise
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        except OSError as error:
            self._remove_created()
            raise InputError(f"{self.folder}: cannot write the outputs there "
                             f"({error.strerror or type(error).__name__}); choose another --out") from None
        return self._staging

    def __exit__(self, kind, error, trace) -> bool:
        try:
            if kind is None:
                self._commit()
        except BaseException:
            kind = kind or Exception
            raise
        finally:
            if not self._keep_staging:
                shutil.rmtree(self._staging, ignore_errors=True)
            if kind is not None:
                self._remove_created()
        return False

    def _commit(self) -> None:
        missing = [n for n in self.names if not (self._staging / n).is_file()]
        if missing:
            raise RuntimeError(f"outputs not written: {', '.join(missing)}")
        self.check()  # files may have appeared since the first check
        backup = self._staging / ".replaced"
        backup.mkdir()
        moved_aside, placed = [], []
        try:
            for name in self.names:
                target = self.folder / name
                if target.exists() or target.is_symlink():
                    os.replace(target, backup / name)
                    moved_aside.append(name)
                os.replace(self._staging / name, target)
                placed.append(name)
        except BaseException:
            for name in placed:
                (self.folder / name).unlink(missing_ok=True)
            for name in moved_aside:
                try:
                    os.replace(backup / name, self.folder / name)
                except OSError:  # pragma: no cover - the folder vanished under us
                    self._keep_staging = True
                    log.error("could not restore %s; the previous file is kept in %s", self.folder / name, backup)
            raise

    def _remove_created(self) -> None:
        """Remove the folders this object created, if they are empty (innermost first)."""
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []
