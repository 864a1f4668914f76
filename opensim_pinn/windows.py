"""Overlapping windows of a trial's frames: the BiGRU's time windows, minibatches of them, and blending.

A trial of ``n_frames`` frames (ticks of the network's internal rate) is covered by
windows of ``window`` frames that overlap by half; per-frame outputs of the
windows are blended back with triangular weights.

>>> window_index(10, 4).tolist()
[[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
"""

from __future__ import annotations

import torch


def windows(n_frames: int, window: int | None) -> list[tuple[int, int]]:
    """(start, stop) frame ranges covering ``n_frames`` in windows that overlap by half."""
    if window is None or n_frames <= window:
        return [(0, n_frames)]
    stride = max(1, window // 2)
    starts = list(range(0, n_frames - window, stride)) + [n_frames - window]
    return [(s, s + window) for s in starts]


def window_index(n_frames: int, window: int | None, *, device=None) -> torch.Tensor:
    """Frame indices of :func:`windows`, shape (n_windows, frames per window)."""
    spans = windows(n_frames, window)
    starts = torch.tensor([start for start, _ in spans], device=device)
    return starts[:, None] + torch.arange(spans[0][1] - spans[0][0], device=device)


def window_batches(counts: list[int], batch_windows: int | None, seed: int, epoch: int, *, rank: int = 0,
                   world: int = 1) -> list[list[tuple[int, int]]]:
    """This process's batches of an epoch: lists of (trial, window) pairs, ``batch_windows / world`` each.

    ``counts`` are the trials' numbers of windows. The windows of all trials are
    shuffled by a :class:`~torch.utils.data.DistributedSampler` (seeded by
    ``seed`` and ``epoch``, the same order in every process) and dealt out to the
    ``world`` processes; the ``k``-th batches of all processes together are the
    ``k``-th batch of one process with ``world = 1`` (when the windows divide
    evenly among the processes; else the sampler repeats a few to even them
    out). ``None``: one batch of all windows.
    """
    from torch.utils.data import DistributedSampler

    pairs = [(trial, window) for trial, count in enumerate(counts) for window in range(count)]
    sampler = DistributedSampler(pairs, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    mine = [pairs[i] for i in sampler]
    size = len(mine) if batch_windows is None else max(1, batch_windows // world)
    return [mine[i:i + size] for i in range(0, len(mine), size)]


def blend(pieces: torch.Tensor, index: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Per-frame outputs (n_frames, n) from overlapping windows' (n_windows, window, n), triangular weights."""
    if index.shape[0] == 1:
        return pieces[0]
    length = index.shape[1]
    ramp = torch.minimum(torch.arange(1, length + 1), torch.arange(length, 0, -1)).to(pieces)
    flat = index.reshape(-1)
    out = pieces.new_zeros(n_frames, pieces.shape[-1]).index_add_(
        0, flat, (pieces * ramp[:, None]).reshape(-1, pieces.shape[-1]))
    weight = pieces.new_zeros(n_frames).index_add_(0, flat, ramp.repeat(index.shape[0]))
    return out / weight[:, None]
