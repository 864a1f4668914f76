"""The ``stream`` command: frames from a motion file (at real-time pace) or from stdin, through a
:class:`~opensim_pinn.streaming.StreamingPredictor`.

Each finished frame is written as one tab-separated line on ``output`` (after a header
line): ``time``, the activation of each muscle, then each muscle's force (N), then each
reserve/residual actuator's force (N or N m; checkpoints with an actuator head). At the end
of the stream the results go into ``<name>_stream_forces.sto`` and
``<name>_stream_activations.sto`` (the layout of ``predict``'s files) when ``out`` is given,
and :func:`stream` returns the latency statistics.

Python's garbage collector is kept out of the pushes (:class:`CollectBetweenFrames`): with
automatic collection, a collection of the youngest generation lands inside every ~30th push
and sets the 99th percentile of the compute time.

Lines on stdin: ``time q_1 ... q_C [grf_1 ... grf_G]``, tab or space separated, the
coordinates in radians (metres) in the checkpoint's order and the GRF components (N)
in its ``grf_labels`` order; or a first line of labels starting with ``time`` that
names those columns in any order (other columns are ignored).
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import time as clock
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)


class CollectBetweenFrames:
    """Python's garbage collection between frames instead of inside them, for a stream's steadiest latency.

    Inside the ``with`` block automatic collection is off (what exists is collected once and frozen first);
    call :meth:`collect` after each push, in the time before the next frame arrives: it collects the
    youngest generation, the middle one every 10th call and all every 100th (the interpreter's own ratios),
    and times itself (:meth:`stats`). At the end the interpreter's setting is restored.

    Examples
    --------
    >>> with CollectBetweenFrames() as collector:            # doctest: +SKIP
    ...     for time, q, grf in frames:
    ...         send(stream.push(time, q, grf))
    ...         collector.collect()
    """

    def __init__(self):
        self.times: list[float] = []
        self._enabled = gc.isenabled()

    def __enter__(self) -> "CollectBetweenFrames":
        self._enabled = gc.isenabled()
        gc.collect()
        gc.freeze()  # what exists before the stream is not scanned again
        gc.disable()
        return self

    def __exit__(self, *exc) -> None:
        gc.unfreeze()
        if self._enabled:
            gc.enable()

    def collect(self) -> None:
        """One collection (see the class docstring), timed."""
        n = len(self.times) + 1
        began = clock.perf_counter()
        gc.collect(2 if n % 100 == 0 else 1 if n % 10 == 0 else 0)
        self.times.append(clock.perf_counter() - began)

    def stats(self) -> dict:
        """Collections made and their time between frames (median and max, s)."""
        return {"collections": len(self.times),
                **({"median_s": statistics.median(self.times), "max_s": max(self.times)} if self.times else {})}


def stream_files(name: str) -> list[str]:
    """The .sto files :func:`stream` writes for a stream named ``name``."""
    return [f"{name}_stream_forces.sto", f"{name}_stream_activations.sto"]


def stream(checkpoint: str | Path, motion: str | Path, external_loads: str | Path | None = None, *,
           lookahead: float = 0.0, realtime: bool = True, out: str | Path | None = None, force: bool = False,
           start: float | None = None, end: float | None = None, backend: str = "torch", input=None,
           output=None) -> dict:
    """Stream ``motion`` (a .mot/.sto file, or ``"-"``: lines on ``input``, default stdin) through the checkpoint.

    Parameters
    ----------
    checkpoint : path
    motion : path or "-"
    external_loads : path, optional
        With a motion file: its ExternalLoads file (stdin lines carry the GRF themselves).
    lookahead : float
        Seconds (see :class:`~opensim_pinn.streaming.StreamingPredictor`).
    realtime : bool
        Replay a motion file at the pace of its time column (stdin is read as it comes).
    out : path, optional
        Folder for the .sto files written at the end.
    start, end : float, optional
        Time window of a motion file (s).
    backend : "torch", "torchscript" or "onnxruntime"
        What computes each frame (see :class:`~opensim_pinn.streaming.StreamingPredictor`).

    Returns
    -------
    dict
        ``frames``, ``files``, ``latency`` (lookahead and compute time per push, and the garbage
        collections between frames, s).
    """
    from .outputs import OutputFolder
    from .static_opt import StaticOptimizationResult, activation_table, force_table
    from .storage import write_storage
    from .streaming import StreamingPredictor
    from .trainer import torch_threads

    predictor = StreamingPredictor(checkpoint, lookahead=lookahead, backend=backend)
    output = sys.stdout if output is None else output
    from_stdin = str(motion) == "-"
    if from_stdin and external_loads is not None:
        raise InputError("--external-loads goes with a motion file; stdin lines carry the GRF columns themselves")
    name = "stdin" if from_stdin else Path(motion).stem.removesuffix("_IK").removesuffix("_ik")
    folder = OutputFolder(out, stream_files(name), force=force) if out is not None else None
    if folder is not None:
        folder.check()
    frames = _stdin_frames(predictor, sys.stdin if input is None else input) if from_stdin else \
        _file_frames(predictor, checkpoint, motion, external_loads, start, end, realtime)
    muscles = predictor.muscles
    actuators = predictor.actuators  # none when the checkpoint has no actuator head
    output.write("\t".join(["time", *(f"{m}_activation" for m in muscles), *(f"{m}_force" for m in muscles),
                            *(f"{a}_force" for a in actuators)]) + "\n")
    results = []

    def write(finished):
        for frame in finished:
            values = (frame.time, *frame.activations, *frame.forces, *(frame.actuator_forces if actuators else ()))
            output.write("\t".join(f"{v:.6g}" for v in values) + "\n")
        output.flush()
        results.extend(finished)

    # one frame's operations are small: one thread has the steadiest latency; garbage collected between frames
    with torch_threads(1), CollectBetweenFrames() as collector:
        for time, q, grf in frames:
            write(predictor.push(time, q, grf))
            collector.collect()
        write(predictor.finish())
    files = []
    if folder is not None and results:
        controls = [f.actuator_controls if actuators else () for f in results]
        actuator_forces = [f.actuator_forces if actuators else () for f in results]
        result = StaticOptimizationResult(time=np.array([f.time for f in results]), labels=muscles + actuators,
                                          activations=np.array([np.hstack([f.activations, u])
                                                                for f, u in zip(results, controls)]),
                                          forces=np.array([np.hstack([f.forces, a])
                                                           for f, a in zip(results, actuator_forces)]),
                                          converged=np.ones(len(results), bool))
        names = stream_files(name)
        with folder as staging:
            write_storage(staging / names[0], force_table(result, name))
            write_storage(staging / names[1], activation_table(result, name))
        files = [str(Path(out) / n) for n in names]
    return {"frames": len(results), "files": files,
            "latency": {**predictor.latency, "garbage_collection_between_frames": collector.stats()}}


def _file_frames(predictor, checkpoint, motion, external_loads, start, end, realtime):
    """(time, raw q, grf) of a motion file's frames, resampled to the checkpoint's internal rate if it has one
    (:mod:`opensim_pinn.timebase`), paced by their times when ``realtime``."""
    from .timebase import resample_trial
    from .trial import load_kinematics

    trainer = predictor.trainer
    raw = load_kinematics(trainer.info, motion, external_loads, start=start, end=end, lowpass=None,
                          checkpoint=checkpoint)  # no filtering: the stream sees the coordinates as recorded
    trainer.check_kinematics(raw)
    raw = resample_trial(raw, trainer.config.rate)  # a recording replayed at the network's rate (its ticks)
    began = clock.perf_counter()
    for i, time in enumerate(raw.time):
        if realtime:
            wait = (time - raw.time[0]) - (clock.perf_counter() - began)
            if wait > 0:
                clock.sleep(wait)
        yield float(time), raw.q[i], raw.grf[i]


def _stdin_frames(predictor, lines):
    """(time, q, grf) of tab- or space-separated lines (see the module docstring)."""
    wanted = ["time", *predictor.coordinates, *predictor.grf_labels]
    columns = None
    for number, line in enumerate(lines, start=1):
        cells = line.split()
        if not cells:
            continue
        if columns is None and cells[0].lower() == "time":
            missing = [w for w in wanted if w not in cells]
            if missing:
                raise InputError(f"stdin line {number}: the labels lack {', '.join(missing[:8])}")
            columns = [cells.index(w) for w in wanted]
            continue
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            raise InputError(f"stdin line {number}: not a line of numbers") from None
        if columns is None and len(values) != len(wanted):
            raise InputError(f"stdin line {number}: {len(values)} values; expected {len(wanted)} (time, "
                             f"{len(predictor.coordinates)} coordinates, {len(predictor.grf_labels)} GRF components)")
        if columns is not None:
            if len(values) <= max(columns):
                raise InputError(f"stdin line {number}: {len(values)} values, fewer than the labels")
            values = values[columns]
        c = len(predictor.coordinates)
        yield float(values[0]), values[1:1 + c], values[1 + c:]


__all__ = ["stream", "stream_files"]
