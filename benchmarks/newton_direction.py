"""Benchmark: the damped Newton direction of training (newton.newton_direction), before and after
building its system in place and solving with two triangular solves (issue #10 item 1).

The system ``S H S + damping diag H`` used to be built as four (frames, M, M)
tensors (two products, a diagonal matrix, a sum); it is now one, scaled and its
diagonal raised in place; ``cholesky_solve`` is replaced by two ``solve_triangular``:
the same numbers, bit for bit (checked here). Shapes are
those of a training epoch, the windows (16 frames, overlapping by half) of
gait10dof18musc's walk (151 frames, 18 muscles: 18 windows) and of gait2392's
1500-frame walk (92 muscles: 187 windows); curvatures are random symmetric positive
definite matrices of those sizes, slopes uniform in [0, 0.25], damping 1e-3. One
thread; median of --repeats calls of each, interleaved, in the same run.

Usage: python benchmarks/newton_direction.py [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from common import RESULTS, save_results
from opensim_pinn.newton import newton_direction

SHAPES = {"gait10dof18musc": (18, 16, 18), "gait2392_1500_frames": (187, 16, 92)}


def before(gradient, slope, hessian, damping):
    """The direction as it was computed before (the same arithmetic, four temporaries)."""
    scaled = slope.unsqueeze(-1) * hessian * slope.unsqueeze(-2)
    diagonal = hessian.diagonal(dim1=-2, dim2=-1)
    system = scaled + torch.diag_embed(damping * diagonal + 1e-12 * diagonal.mean(-1, keepdim=True))
    factor, info = torch.linalg.cholesky_ex(system)
    rhs = (slope * gradient).unsqueeze(-1)
    if bool((info != 0).any()):
        return torch.linalg.solve(system, rhs).squeeze(-1)
    return torch.cholesky_solve(rhs, factor).squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {"threads": 1, "repeats": args.repeats, "torch": torch.__version__, "machine": platform.machine(),
               "note": "2 CPU cores shared with other work: absolute times are noisy, the ratio less so",
               "cases": {}}
    for case, (windows, frames, muscles) in SHAPES.items():
        matrix = torch.randn(windows, frames, muscles, muscles)
        hessian = matrix @ matrix.transpose(-1, -2) / muscles + torch.eye(muscles)
        slope = torch.rand(windows, frames, muscles) * 0.25
        gradient = torch.randn(windows, frames, muscles)
        times = {"before": [], "after": []}
        for _ in range(args.repeats):
            for name, direction in (("before", before), ("after", newton_direction)):
                began = time.perf_counter()
                direction(gradient, slope, hessian, 1e-3)
                times[name].append(time.perf_counter() - began)
        median = {name: sorted(t)[len(t) // 2] * 1e3 for name, t in times.items()}
        results["cases"][case] = {
            "windows": windows, "frames_per_window": frames, "muscles": muscles,
            "before_ms": round(median["before"], 2), "after_ms": round(median["after"], 2),
            "speedup": round(median["before"] / median["after"], 2),
            "bitwise_equal": torch.equal(before(gradient, slope, hessian, 1e-3),
                                         newton_direction(gradient, slope, hessian, 1e-3))}
        print(case, json.dumps(results["cases"][case]))
    save_results(results, args.out, "newton_direction")


if __name__ == "__main__":
    main()
