"""Benchmark: whole-dataset prediction throughput (``opensim-pinn predict --manifest``), frames per second.

For each shared case, a manifest lists the case's trial ``--copies`` times (each copy a trial
of its own, with its own files), and ``predict --manifest`` runs it:

- in this process, on one CPU thread (``predict_manifest``, the API the CLI calls);
- as two processes started the way torchrun starts them (``RANK``, ``WORLD_SIZE`` set, one
  thread each), each predicting its half into the same folder: the 2-core figure.

Counted: the analysed frames over the wall time from the first file read to the last file
written (reading and filtering motions and loads, network, muscle module, writing the three
files per trial); checkpoint loading is reported apart. For the two processes, the frames of
both over the slower one's time, and also over the whole command's wall time (interpreter
start, imports and checkpoint loading included). The machine is shared: the load average
before and after is saved with the figures, and each run is appended to the JSON file.

Checkpoints: given with ``--checkpoint NAME=PATH``, or trained for a few epochs (throughput
does not depend on the weights) as benchmarks/latency.py does.

Usage: python benchmarks/batch_predict.py [--data ../shared/data] [--out benchmarks/results]
       [--checkpoint gait2392=run/checkpoint.pt ...] [--copies 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA  # noqa: E402
from latency import CASES, checkpoint_for  # noqa: E402  (the same cases and timing checkpoints)

from opensim_pinn.batch import predict_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_manifest(path: Path, folder: Path, case: dict, copies: int) -> Path:
    rows = ["name,motion,external_loads"]
    rows += [f"trial{i:03d},{folder / case['motion']},{folder / case['external_loads']}" for i in range(copies)]
    path.write_text("\n".join(rows) + "\n")
    return path


def two_processes(checkpoint: Path, manifest: Path, out: Path) -> dict:
    began = time.perf_counter()
    processes = [subprocess.Popen(
        [sys.executable, "-m", "opensim_pinn.cli", "-q", "predict", "--checkpoint", str(checkpoint), "--manifest",
         str(manifest), "--out", str(out), "--threads", "1"],
        env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, text=True) for rank in (0, 1)]
    summaries = [json.loads(p.communicate()[0]) for p in processes]
    wall = time.perf_counter() - began
    frames = sum(s["throughput"]["frames"] for s in summaries)
    slowest = max(s["throughput"]["wall_s"] for s in summaries)
    return {"frames": frames, "wall_s": slowest, "frames_per_s": frames / slowest,
            "command_wall_s": wall, "frames_per_s_command": frames / wall,
            "per_rank": [s["throughput"] for s in summaries]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--copies", type=int, default=20, help="copies of the trial in the manifest (default 20)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    given = dict(item.split("=", 1) for item in args.checkpoint)
    results = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name in args.cases:
            folder = Path(args.data) / name
            checkpoint = Path(given[name]) if name in given else checkpoint_for(name, folder, CASES[name], work)
            manifest = write_manifest(work / f"{name}.csv", folder, CASES[name], args.copies)
            load = os.getloadavg()[0]
            one = predict_manifest(checkpoint, manifest, out=work / f"{name}_one", threads=1)
            two = two_processes(checkpoint, manifest, work / f"{name}_two")
            results[name] = {
                "trials": args.copies, "frames_per_trial": one["throughput"]["frames"] // args.copies,
                "one_process": {**one["throughput"], "checkpoint_loading_s": one["preparation_s"]},
                "two_processes": two, "threads_per_process": 1,
                "load_average_before": load, "load_average_after": os.getloadavg()[0],
                "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                "manifest": f"the {name} trial (all its frames) listed {args.copies} times"}
            r = results[name]
            print(f"{name:16} {r['trials']} x {r['frames_per_trial']} frames | 1 process "
                  f"{r['one_process']['frames_per_s']:8.0f} frames/s (steps {r['one_process']['steps_s']}) | "
                  f"2 processes {two['frames_per_s']:8.0f} frames/s ({two['frames_per_s_command']:.0f} with "
                  f"start-up) | load {load:.1f} -> {r['load_average_after']:.1f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "batch_predict.json"
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    runs = previous.get("runs", [previous] if previous else [])  # earlier runs are kept: the machine is shared
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    saved.write_text(json.dumps({"runs": runs + [{"when": stamp, **results}]}, indent=2) + "\n")
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
