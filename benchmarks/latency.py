"""Benchmark: per-frame latency of streaming predictions, on one CPU thread.

For each shared case, a checkpoint (given, or trained for a few epochs: latency does
not depend on the weights) streams the trial's raw coordinates frame by frame through
:class:`opensim_pinn.streaming.StreamingPredictor` with each backend of the frame step
(PyTorch, TorchScript, ONNX Runtime) and each lookahead, as one long stream (the
trial played forwards, then backwards, then forwards..., so that the motion stays
continuous). The time of one ``push`` that finishes a frame is measured: kinematics
estimation, bookkeeping, encoder, one forward GRU step per window, the backward GRU
over the lookahead, head, activation bounds and muscle forces.
``torch.set_num_threads(1)``, ONNX Runtime with one intra-op thread, the process
pinned to one core (``--cpu``, default the last); ``--repeats`` passes are timed after
one warm-up pass (the stream's first frames: reported apart, median and maximum);
minimum, median and 99th percentile over all timed pushes (the minimum is the least
disturbed by other work on a shared machine; the load average is saved). Before the
streams, one second of a busy loop on the same core measures how often and for how long
the machine interrupts it (``machine_jitter``): a push that such an interruption hits is
slower by about that much, which sets a floor under the p99. Python's garbage collector runs
after each push, outside the timed part, as ``opensim-pinn stream`` runs it
(:class:`opensim_pinn.live.CollectBetweenFrames`; its times are saved); ``--gc auto`` measures with the
interpreter's automatic collection instead, which lands inside every ~30th push.

Usage: python benchmarks/latency.py [--data ../shared/data] [--out benchmarks/results]
       [--checkpoint gait2392=run/checkpoint.pt ...] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import FILE_KEYS, RESULTS, SHARED_DATA, case, save_results
from opensim_pinn.live import CollectBetweenFrames
from opensim_pinn.streaming import StreamingPredictor
from opensim_pinn.trainer import Trainer
from opensim_pinn.timebase import resample_trial
from opensim_pinn.trial import load_kinematics

CASES = {
    "gait10dof18musc": case("gait10dof18musc", start=0.0, end=2.5, step_interval=1),
    "gait2392": case("gait2392", start=0.5, end=1.999, step_interval=10),  # the 1000 Hz file at 100 Hz
}
LOOKAHEADS_S = (0.0, 0.05, 0.1)
BACKENDS = ("torch", "torchscript", "onnxruntime")
TRAIN_EPOCHS = 5  # a checkpoint for timing only


def checkpoint_for(name: str, folder: Path, spec: dict, work: Path, outputs: str = "activations") -> Path:
    """A checkpoint of ``TRAIN_EPOCHS`` epochs on the case's trial, in ``work``, with the network's ``outputs``."""
    from opensim_pinn.train import train_network

    out = work / (name if outputs == "activations" else f"{name}_{outputs}")
    files = {k: str(folder / spec[k]) for k in FILE_KEYS}
    train_network(files["model"], [files["motion"]], [files["external_loads"]], reserves=files["reserves"],
                  start=spec["start"], end=spec["end"], lowpass=-1.0, step_interval=10, epochs=TRAIN_EPOCHS,
                  outputs=outputs, out=out, progress=False)
    return out / "checkpoint.pt"


def timing_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """Options of the timing benchmarks (this one and step_profile.py): data, out, cases, checkpoints, repeats."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--checkpoint", nargs="*", default=[], metavar="CASE=PATH",
                        help="checkpoints to time (default: a 5-epoch one trained per case)")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--cpu", type=int, default=os.cpu_count() - 1,
                        help="the core to pin this process to (default: the last one; -1: not pinned)")
    return parser


def pin_to_cpu(cpu: int) -> list[int]:
    """Run this process on core ``cpu`` only (-1: leave it as it is); the cores it may run on."""
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    return sorted(os.sched_getaffinity(0))


def case_trainers(args, work: Path):
    """(name, folder, case, Trainer) of each of ``args.cases``: the given checkpoint, or one trained in ``work``."""
    given = dict(item.split("=", 1) for item in args.checkpoint)
    for name in args.cases:
        folder, spec = Path(args.data) / name, CASES[name]
        checkpoint = Path(given[name]) if name in given else checkpoint_for(name, folder, spec, work)
        yield name, folder, spec, Trainer.load(checkpoint)


def measure(trainer, raw, lookahead: float, backend: str, repeats: int, gc_mode: str = "between") -> dict:
    """Latency of one long stream: the trial played forwards, backwards, forwards... (a continuous motion,
    times increasing), ``repeats + 1`` passes; the first pass warms up and is reported apart. ``gc_mode``
    "between": garbage collected after each push, outside it, as ``opensim-pinn stream`` does
    (:class:`opensim_pinn.live.CollectBetweenFrames`, its times saved); "auto": the interpreter's own."""
    stream = StreamingPredictor(trainer, lookahead=lookahead, backend=backend)
    n, step = len(raw.time), float(np.diff(raw.time).mean())
    collector = CollectBetweenFrames()
    with collector if gc_mode == "between" else contextlib.nullcontext():
        for k, i in enumerate(ping_pong(n, repeats + 1)):
            stream.push(float(raw.time[0] + k * step), raw.q[i], raw.grf[i])
            if gc_mode == "between":
                collector.collect()
    stream.finish()
    warm_up = np.array(stream._compute[:n - stream.lookahead_frames]) * 1e3
    times = np.array(stream._compute[n - stream.lookahead_frames:]) * 1e3
    return {"lookahead_s": lookahead, "lookahead_frames": stream.lookahead_frames, "pushes": len(times),
            "min_ms": round(float(times.min()), 4), "median_ms": round(float(np.median(times)), 4),
            "p99_ms": round(float(np.percentile(times, 99)), 4), "max_ms": round(float(times.max()), 4),
            "warm_up_median_ms": round(float(np.median(warm_up)), 4), "warm_up_max_ms": round(float(warm_up.max()), 4),
            "garbage_collection": gc_mode, **({"collection_between_frames_ms": {
                k: round(v * 1e3, 4) for k, v in collector.stats().items() if k != "collections"}}
                if gc_mode == "between" else {})}


def machine_jitter(seconds: float = 1.0, threshold_s: float = 10e-6) -> dict:
    """Interruptions of a busy loop on this core: how often and how long the machine takes it away (timer
    ticks, the host of a virtual machine), the floor under any p99 measured here."""
    began = last = time.perf_counter()
    gaps, at = [], []
    while last - began < seconds:
        now = time.perf_counter()
        if now - last > threshold_s:
            gaps.append(now - last)
            at.append(now)
        last = now
    gaps_us = np.array(gaps) * 1e6
    return {"seconds": seconds, "threshold_us": threshold_s * 1e6, "interruptions": len(gaps),
            "median_interval_ms": round(float(np.median(np.diff(at))) * 1e3, 3) if len(at) > 1 else None,
            "median_us": round(float(np.median(gaps_us)), 1) if len(gaps) else None,
            "max_us": round(float(gaps_us.max()), 1) if len(gaps) else None}


def ping_pong(n: int, passes: int) -> list[int]:
    """Frame indices of ``passes`` passes over ``n`` frames, every other one backwards (no jump between them)."""
    forwards = list(range(n))
    order = forwards[:]
    for p in range(1, passes):
        order += (forwards[::-1] if p % 2 else forwards)[1:]
    return order


def main() -> None:
    parser = timing_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument("--gc", choices=("between", "auto"), default="between",
                        help="garbage collection: after each push, outside it, as 'opensim-pinn stream' does "
                             "(default), or the interpreter's automatic one (saved as latency_gc_auto.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cores = pin_to_cpu(args.cpu)
    jitter = machine_jitter()
    print(f"this core: a busy loop is interrupted every {jitter['median_interval_ms']} ms (median) for "
          f"{jitter['median_us']} us (median, max {jitter['max_us']} us)", flush=True)
    results = {"threads": 1, "cores": cores, "machine_jitter": jitter,
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "load_average_at_start": list(os.getloadavg()), "repeats": args.repeats,
               "garbage_collection": args.gc, "cases": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, folder, spec, trainer in case_trainers(args, Path(work)):
            raw = load_kinematics(trainer.info, folder / spec["motion"], folder / spec["external_loads"],
                                  start=spec["start"], end=spec["end"], lowpass=None,
                                  step_interval=spec["step_interval"])
            raw = resample_trial(raw, trainer.config.rate)  # streams arrive at the network's rate
            rows = []
            for backend in BACKENDS:
                for lookahead in LOOKAHEADS_S:
                    row = {"backend": backend, **measure(trainer, raw, lookahead, backend, args.repeats, args.gc)}
                    rows.append(row)
                    print(f"{name:16} {len(trainer.muscles):3d} muscles {backend:12} lookahead {lookahead * 1e3:4.0f} ms "
                          f"({row['lookahead_frames']} frames): min {row['min_ms']:.3f} ms, median {row['median_ms']:.3f} ms, "
                          f"p99 {row['p99_ms']:.3f} ms", flush=True)
            results["cases"][name] = {"muscles": len(trainer.muscles), "coordinates": len(trainer.coordinates),
                                      "frames": len(raw.time), "rate_hz": round(1 / float(np.diff(raw.time).mean()), 2),
                                      "results": rows}
    results["load_average_at_end"] = list(os.getloadavg())
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save_results(results, args.out, "latency" if args.gc == "between" else "latency_gc_auto")


if __name__ == "__main__":
    main()
