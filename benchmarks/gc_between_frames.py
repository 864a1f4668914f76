"""Benchmark: the streaming step's latency with Python's automatic garbage collection against collection
between frames (:class:`opensim_pinn.live.CollectBetweenFrames`, what ``opensim-pinn stream`` does).

gait2392 (92 muscles), lookahead 0, PyTorch and ONNX Runtime, one thread, the process pinned to one core:
the two ways alternate in one process, ``--rounds`` times each, every round one stream of the trial played
forwards and backwards (``--passes`` passes after a warm-up pass, as benchmarks/latency.py streams). Per round:
median and 99th percentile of the pushes that finish a frame, and how many pushes are more than 0.1 ms
above the round's median (with automatic collection, one in about 30 pushes runs a collection). Each run
is appended to the results file, with the medians over its rounds.

Usage: python benchmarks/gc_between_frames.py [--data ../shared/data] [--out benchmarks/results] [--rounds 6]
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import save_results
from latency import case_trainers, pin_to_cpu, ping_pong, timing_parser
from opensim_pinn.live import CollectBetweenFrames
from opensim_pinn.streaming import StreamingPredictor
from opensim_pinn.timebase import resample_trial
from opensim_pinn.trial import load_kinematics


def one_stream(trainer, raw, backend: str, passes: int, between: bool) -> dict:
    stream = StreamingPredictor(trainer, lookahead=0.0, backend=backend)
    n, step = len(raw.time), float(np.diff(raw.time).mean())
    collector = CollectBetweenFrames()
    with collector if between else contextlib.nullcontext():
        for k, i in enumerate(ping_pong(n, passes + 1)):
            stream.push(float(raw.time[0] + k * step), raw.q[i], raw.grf[i])
            if between:
                collector.collect()
    times = np.array(stream._compute[n:]) * 1e3  # after the warm-up pass
    median = float(np.median(times))
    return {"median_ms": round(median, 4), "p99_ms": round(float(np.percentile(times, 99)), 4),
            "pushes": len(times), "slow_pushes": int((times > median + 0.1).sum()),
            **({"collection_max_ms": round(collector.stats()["max_s"] * 1e3, 4)} if between else {})}


def main() -> None:
    parser = timing_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    args.cases = ["gait2392"]
    torch.set_num_threads(1)
    results = {"threads": 1, "cores": pin_to_cpu(args.cpu), "load_average_at_start": list(os.getloadavg()),
               "rounds": args.rounds, "passes": args.passes, "rows": []}
    with tempfile.TemporaryDirectory() as work:
        for name, folder, spec, trainer in case_trainers(args, Path(work)):
            raw = load_kinematics(trainer.info, folder / spec["motion"], folder / spec["external_loads"],
                                  start=spec["start"], end=spec["end"], lowpass=None,
                                  step_interval=spec["step_interval"])
            raw = resample_trial(raw, trainer.config.rate)
            for backend in ("torch", "onnxruntime"):
                for round_ in range(args.rounds):
                    for between in (False, True):
                        row = {"backend": backend, "round": round_, "garbage_collection": "between" if between
                               else "auto", **one_stream(trainer, raw, backend, args.passes, between)}
                        results["rows"].append(row)
                        print(f"{backend:12} round {round_} gc {row['garbage_collection']:8} median "
                              f"{row['median_ms']:.3f} ms p99 {row['p99_ms']:.3f} ms, {row['slow_pushes']} of "
                              f"{row['pushes']} pushes > median + 0.1 ms", flush=True)
    summary = {}
    for backend in ("torch", "onnxruntime"):
        for mode in ("auto", "between"):
            rows = [r for r in results["rows"] if r["backend"] == backend and r["garbage_collection"] == mode]
            summary[f"{backend}/{mode}"] = {k: round(float(np.median([r[k] for r in rows])), 4)
                                            for k in ("median_ms", "p99_ms", "slow_pushes")}
            print(f"{backend:12} gc {mode:8} medians over rounds: {summary[f'{backend}/{mode}']}")
    results["summary_median_over_rounds"] = summary
    results["load_average_at_end"] = list(os.getloadavg())
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    saved = Path(args.out) / "gc_between_frames.json"  # each run appended: the machine is shared and noisy
    runs = json.loads(saved.read_text())["runs"] if saved.is_file() else []
    save_results({"runs": runs + [results]}, args.out, "gc_between_frames")


if __name__ == "__main__":
    main()
