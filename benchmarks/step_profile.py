"""Benchmark: where the streaming frame step's time goes, per part and backend, on one CPU thread.

For each shared case (checkpoints as in ``latency.py``), the fused frame step
(:class:`opensim_pinn.streaming.FrameStep`) and two of its parts, the encoder of the K
frames and the muscle forces of one frame, are run alone (no Python bookkeeping of the
stream) with PyTorch, TorchScript (traced, frozen) and ONNX Runtime (one thread), at
lookaheads of 0 and 100 ms (K = 1 and K = 0.1 s x rate + 1 frames), on fixed inputs:
``--repeats`` calls after 30 warm-up calls; minimum and median. The rest of the step
(both GRU directions, heads, blending) is the step minus the two parts.

Usage: python benchmarks/step_profile.py [--data ../shared/data] [--checkpoint gait2392=run/checkpoint.pt ...]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import save_results
from latency import case_trainers, pin_to_cpu, timing_parser  # benchmarks/latency.py
from opensim_pinn.export import _onnx_bytes, _trace, graph_inputs
from opensim_pinn.streaming import FrameStep

LOOKAHEADS_S = (0.0, 0.1)


def timed(call, args, repeats: int) -> dict:
    for _ in range(30):
        call(*args)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - began)
    times = np.array(times) * 1e6
    return {"min_us": round(float(times.min()), 1), "median_us": round(float(np.median(times)), 1)}


def runners(module: torch.nn.Module, inputs: tuple[np.ndarray, ...], names: list[str]) -> dict:
    """Callables on numpy inputs: PyTorch, TorchScript and ONNX Runtime."""
    import onnxruntime

    example = tuple(torch.from_numpy(x) for x in inputs)
    with torch.no_grad():
        n_outputs = len(module(*example)) if isinstance(module(*example), tuple) else 1
    script = torch.jit.freeze(_trace(module, example).eval())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(_onnx_bytes(module, example, names, [f"out{i}" for i in range(n_outputs)],
                                                       {}, {}), options, providers=["CPUExecutionProvider"])
    feed = {names[i]: inputs[i] for i in graph_inputs(session, names)}

    def with_torch(model):
        def call(*arrays):
            with torch.inference_mode():
                return model(*(torch.from_numpy(a) for a in arrays))
        return call

    return {"torch": with_torch(module), "torchscript": with_torch(script),
            "onnxruntime": lambda *arrays: session.run(None, feed)}


def main() -> None:
    args = timing_parser(__doc__.splitlines()[0], repeats=300).parse_args()
    torch.set_num_threads(1)
    results = {"threads": 1, "cores": pin_to_cpu(args.cpu), "repeats": args.repeats,
               "load_average_at_start": list(os.getloadavg()), "cases": {}}
    generator = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        for name, _, _, trainer in case_trainers(args, Path(work)):
            rate = trainer.config.rate or (100.0 if name == "gait2392" else 60.0)  # the frames the step sees
            rows = []
            for lookahead in LOOKAHEADS_S:
                step = FrameStep(trainer, int(round(lookahead * rate)))
                parts, k = step.parts, step.n_frames
                features = (trainer.feature_mean + trainer.feature_std * generator.standard_normal(
                    (k, parts.n_features))).astype(np.float32)
                hidden = (0.3 * generator.standard_normal((step.n_windows, step.hidden_size))).astype(np.float32)
                lengths = np.array([k, max(1, k // 2)], np.int64)[:step.n_windows]
                weights = np.array([3.0, 5.0], np.float32)[:step.n_windows]
                c = parts.n_coordinates
                muscles = (features[0, :c].copy(), features[0, c:2 * c].copy(),
                           np.full(parts.n_muscles, 0.5, np.float32))
                pieces = {"step": (step, (features, hidden, lengths, weights), ["features", "hidden", "lengths",
                                                                                 "weights"]),
                          "encoder": (parts.encoder, (features,), ["features"]),
                          "muscle_forces": (parts.muscle_forces, muscles, ["q", "qd", "activations"])}
                for piece, (module, inputs, names) in pieces.items():
                    for backend, call in runners(module, inputs, names).items():
                        row = {"lookahead_s": lookahead, "frames_in_step": k, "part": piece, "backend": backend,
                               **timed(call, inputs, args.repeats)}
                        rows.append(row)
                        print(f"{name:16} K={k:2d} {piece:13} {backend:12} min {row['min_us']:7.1f} us, "
                              f"median {row['median_us']:7.1f} us", flush=True)
            results["cases"][name] = {"muscles": len(trainer.muscles), "coordinates": len(trainer.coordinates),
                                      "results": rows}
    results["load_average_at_end"] = list(os.getloadavg())
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save_results(results, args.out, "step_profile")


if __name__ == "__main__":
    main()
