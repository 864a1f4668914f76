"""Writing results safely: all or nothing, never over a user's file without ``force``.

>>> with OutputFolder("results", ["walk_forces.sto"], force=False) as staging:   # doctest: +SKIP
...     write_storage(staging / "walk_forces.sto", table)

Files are written into a hidden staging folder next to their destination and
moved into place only when the block ends without an error; an error leaves
the destination as it was (a folder created for the outputs is removed again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError


class OutputFolder:
    """Context manager that stages the named output files and commits them together.

    Parameters
    ----------
    folder : path
        Destination folder (created if missing).
    names : list of str
        Every file the block will write (relative names, no sub-folders).
    force : bool
        Replace existing files of the same names. Without it, an existing file is
        an :class:`InputError` raised before anything is written.
    """

    def __init__(self, folder: str | os.PathLike, names: list[str], *, force: bool = False):
        self.folder = Path(folder)
        self.names = list(names)
        self.force = force
        self._created = False
        self._staging: Path | None = None

    def check(self) -> None:
        """Raise if the outputs would overwrite files without ``force`` (call before long work)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder}: exists and is not a folder; choose another --out")
        existing = [n for n in self.names if (self.folder / n).exists()]
        if existing and not self.force:
            raise InputError(f"{self.folder}: already holds {', '.join(existing[:4])}"
                             f"{' ...' if len(existing) > 4 else ''}; use --force to replace, or "
                             "choose another --out")

    def __enter__(self) -> Path:
        self.check()
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created = True
        self._staging = Path(tempfile.mkdtemp(prefix=".opensim-pinn-", dir=self.folder))
        return self._staging

    def __exit__(self, kind, error, trace) -> bool:
        try:
            if kind is None:
                missing = [n for n in self.names if not (self._staging / n).is_file()]
                if missing:
                    raise RuntimeError(f"outputs not written: {', '.join(missing)}")
                for name in self.names:
                    os.replace(self._staging / name, self.folder / name)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
            if kind is not None and self._created and not any(self.folder.iterdir()):
                self.folder.rmdir()
        return False
