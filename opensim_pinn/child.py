"""Run OpenSim work in a child process, so that a crash becomes a clear error.

OpenSim can end the interpreter (segmentation fault, abort) on some inputs. Every
OpenSim step (model reading, inverse dynamics, path fitting, Static
Optimization) runs through :func:`run_in_child`: a fresh ``python -m
opensim_pinn.child`` process runs the function; its result or its
:class:`InputError` comes back through a pickle file; a dead child becomes an
:class:`OpenSimCrash` naming the step. Unlike ``multiprocessing``, this never
re-imports the caller's script, so it works from any script or notebook.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, OpenSimCrash

log = logging.getLogger(__name__)


def run_in_child(step: str, function: Callable[..., Any], *args, **kwargs) -> Any:
    """Call ``function(*args, **kwargs)`` in a fresh Python process and return its result.

    See :func:`run_in_child_timed`, which also returns the time spent in ``function``.
    """
    return run_in_child_timed(step, function, *args, **kwargs)[0]


def run_in_child_timed(step: str, function: Callable[..., Any], *args, **kwargs) -> tuple[Any, float]:
    """Call ``function(*args, **kwargs)`` in a fresh Python process.

    Returns
    -------
    result
        What ``function`` returned.
    seconds : float
        Wall time spent inside ``function`` (the child's interpreter start-up excluded).

    Parameters
    ----------
    step : str
        What the work is, for error messages ("inverse dynamics", ...).
    function : callable
        A module-level function of an importable module; its arguments and
        result must be picklable.

    Raises
    ------
    InputError
        Raised by ``function`` in the child (bad input it detected).
    OpenSimCrash
        The child died without an answer (crash) or raised another error.
    """
    with tempfile.TemporaryDirectory(prefix="opensim_pinn_child_") as folder:
        job, answer = Path(folder) / "job.pickle", Path(folder) / "answer.pickle"
        job.write_bytes(pickle.dumps((function, args, kwargs, logging.getLogger().getEffectiveLevel())))
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
            str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))}
        completed = subprocess.run([sys.executable, "-m", "opensim_pinn.child", str(job), str(answer)],
                                   cwd=folder, env=environment, stdin=subprocess.DEVNULL)
        if not answer.is_file():
            raise OpenSimCrash(f"OpenSim crashed during {step} (child process exit code "
                               f"{completed.returncode}); check the model and input files")
        status, payload, seconds = pickle.loads(answer.read_bytes())
    if status == "ok":
        return payload, seconds
    if status == "input":
        raise InputError(payload)
    log.debug(payload)
    raise OpenSimCrash(f"OpenSim failed during {step}: {payload.splitlines()[0]}")


def _main(job: str, answer: str) -> None:
    function, args, kwargs, level = pickle.loads(Path(job).read_bytes())
    logging.basicConfig(level=level, format="%(message)s")
    import opensim  # noqa: F401 - part of the child's start-up, not of the timed work

    began = time.perf_counter()
    try:
        result = ("ok", function(*args, **kwargs))
    except InputError as error:
        result = ("input", str(error))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        result = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
    partial = Path(answer).with_suffix(".partial")
    partial.write_bytes(pickle.dumps((*result, time.perf_counter() - began)))
    os.replace(partial, answer)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
