"""Run OpenSim work in a child process, so that a crash becomes a clear error.

OpenSim can end the interpreter (segmentation fault, abort) on some inputs. Every
OpenSim step (model reading, inverse dynamics, path fitting, Static
Optimization) runs through :func:`run_in_child`: a fresh ``python -m
opensim_pinn.child`` process (:class:`Child`, which may be started before its
work is known, so that its start-up overlaps the caller's work) receives the
function and its arguments through a pickle file; its result or its
:class:`InputError` comes back through a pickle file; a dead child becomes an
:class:`OpenSimCrash` naming the step. Unlike ``multiprocessing``, this never
re-imports the caller's script, so it works from any script or notebook.

The child starts in a temporary folder (so that nothing in the caller's folder
can shadow a module), then works in the caller's current folder, so relative
paths mean what they mean to the caller. OpenSim's log file sink is removed
before any OpenSim call, so no ``opensim.log`` lands there, and OpenSim's
console messages (which it prints on standard output) go to standard error,
so that the caller's standard output (``--json``) stays clean.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, OpenSimCrash, first_line

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
    with Child(step) as child:
        child.send(function, *args, **kwargs)
        return child.result()


class Child:
    """A fresh ``python -m opensim_pinn.child`` process, started at once, that waits for its work.

    Its start-up (interpreter, imports, OpenSim) overlaps the caller's own work
    until :meth:`send`; :meth:`result` waits for the answer (see
    :func:`run_in_child_timed`). Use it as a context manager: leaving it ends
    the child (killed if no answer was waited for) and removes its folder.

    Parameters
    ----------
    step : str
        What the work is, for error messages.
    """

    def __init__(self, step: str):
        self.step = step
        self._folder = tempfile.TemporaryDirectory(prefix="opensim_pinn_child_")
        self._answer = Path(self._folder.name) / "answer.pickle"
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
            str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen([sys.executable, "-m", "opensim_pinn.child", str(self._answer)],
                                         cwd=self._folder.name, env=environment, stdin=subprocess.PIPE)

    def send(self, function: Callable[..., Any], *args, **kwargs) -> None:
        """Give the child ``function(*args, **kwargs)`` to run (a module-level function; picklable
        arguments); it works while the caller goes on."""
        try:
            caller_folder = os.getcwd()
        except OSError:  # the current folder was deleted
            caller_folder = None
        job = (function, args, kwargs, logging.getLogger().getEffectiveLevel(), caller_folder)
        (Path(self._folder.name) / "job.pickle").write_bytes(pickle.dumps(job))
        try:  # a file, then one byte: a job larger than the pipe would wait for the child's start-up
            self._process.stdin.write(b"\n")
            self._process.stdin.close()
        except BrokenPipeError:  # the child died starting: result() says so
            pass

    def result(self) -> tuple[Any, float]:
        """Wait for the answer: ``function``'s result and the seconds spent in it (see
        :func:`run_in_child_timed`, which raises the same errors)."""
        returncode = _wait(self._process, self.step)
        if not self._answer.is_file():
            raise OpenSimCrash(f"OpenSim crashed during {self.step} ({_describe_exit(returncode)}); "
                               "check the model and input files (-v shows OpenSim's messages)")
        try:
            status, payload, seconds = pickle.loads(self._answer.read_bytes())
        except Exception as error:  # noqa: BLE001 - a half-written or foreign answer
            raise OpenSimCrash(f"OpenSim crashed during {self.step} (unreadable answer from the child "
                               f"process: {type(error).__name__})") from None
        if status == "ok":
            return payload, seconds
        if status == "input":
            raise InputError(payload)
        log.debug(payload)
        first = first_line(payload, "unknown error")
        raise OpenSimCrash(f"OpenSim failed during {self.step}: {first} (-v shows the details)")

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        if self._process.poll() is None:  # not waited for (an error in the caller): no longer needed
            self._process.kill()
            self._process.wait()
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        self._folder.cleanup()


def _wait(process: subprocess.Popen, step: str) -> int:
    """Wait for the child; on a terminal, show the step and the time elapsed while it runs."""
    if not (sys.stderr.isatty() and log.getEffectiveLevel() <= logging.INFO):
        return process.wait()
    from tqdm import tqdm

    with tqdm(desc=f"OpenSim: {step}", bar_format="{desc} ({elapsed})", leave=False) as progress:
        while True:
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                progress.refresh()
            except KeyboardInterrupt:
                process.kill()
                raise


def _describe_exit(code: int) -> str:
    """``child process killed by SIGSEGV (segmentation fault)`` or ``... exit code 3``."""
    if code < 0:
        try:
            number = signal.Signals(-code)
            meaning = signal.strsignal(number) or ""
            return f"child process killed by {number.name}" + (f" ({meaning.lower()})" if meaning else "")
        except ValueError:
            return f"child process killed by signal {-code}"
    return f"child process ended with exit code {code} without an answer"


def _main(answer: str) -> None:
    try:  # a crash must not leave a core file in the caller's folder
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, ValueError, OSError):
        pass
    os.dup2(2, 1)  # OpenSim prints its log on stdout: keep the caller's stdout for results
    sys.stdout = sys.stderr
    import opensim  # part of the child's start-up, not of the timed work

    opensim.Logger.removeFileSink()  # before any OpenSim message: no opensim.log anywhere
    opensim.Logger.setLevelString("error")
    if not sys.stdin.buffer.read(1):  # waits for Child.send; none came
        return
    function, args, kwargs, level, caller_folder = pickle.loads((Path(answer).parent / "job.pickle").read_bytes())
    logging.basicConfig(level=level, format="%(message)s")
    if level <= logging.DEBUG:
        opensim.Logger.setLevelString("info")
    if caller_folder is not None and os.path.isdir(caller_folder):
        start_folder = os.getcwd()
        sys.path[:] = [p for p in sys.path if p not in ("", ".", start_folder)]
        os.chdir(caller_folder)

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
    _main(sys.argv[1])
