"""Training on several processes, on one machine or several: ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node N -m opensim_pinn train ...`` starts N processes
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` in
their environment); ``train`` sees them (or is told so by ``--distributed``) and
joins a process group: gloo on CPUs, NCCL on GPUs (process ``LOCAL_RANK`` on
GPU ``LOCAL_RANK``). Then:

- process 0 prepares the trials (OpenSim inverse dynamics into the cache) and
  fits the muscle paths; the others wait, then read the cache
  (:meth:`Distributed.first_on_main`);
- every optimiser step's batch of ``--batch-windows`` windows is shared among the
  processes (:func:`opensim_pinn.windows.window_batches`, a DistributedSampler),
  and DistributedDataParallel averages their gradients, scaled so that the step
  is the one a single process takes on the whole batch;
- process 0 alone validates, writes the snapshots, ``checkpoint.pt`` and
  ``history.csv`` and prints the summary.

>>> with session("cpu") as ranks:        # None outside torchrun   # doctest: +SKIP
...     trainer.fit(trials, info, muscles, distributed=ranks)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .errors import InputError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What ``torchrun`` puts in each process's environment."""


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its environment variables are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


@dataclass
class Distributed:
    """This process's place in the process group.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Process number, number of processes, process number on this machine.
    backend : str
        ``"gloo"`` (CPU) or ``"nccl"`` (GPU).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        """Process 0: the one that writes."""
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """This process's device: its own GPU (``cuda:LOCAL_RANK``) for CUDA, else ``device``."""
        if device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel (its gradients are averaged over the processes)."""
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the processes (a new tensor, on ``tensor``'s device)."""
        import torch.distributed as dist

        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        total = tensor.detach().to(device).clone()
        dist.all_reduce(total)
        return total.to(tensor.device)

    def share(self, work):
        """``work()``'s result, computed by process 0 and sent to the others (its error raised in all)."""
        return self._from_main(work, send=True)

    def first_on_main(self, work):
        """``work()`` in process 0, then, once it succeeded, in the others: fill a cache, then read it."""
        result = self._from_main(work, send=False)
        return result if self.main else work()

    def _from_main(self, work, *, send: bool):
        import torch.distributed as dist

        message, result = [None, None], None  # what the others receive: result (if sent), error
        if self.main:
            try:
                result = work()
            except BaseException as error:
                message[1] = str(error) or type(error).__name__
                dist.broadcast_object_list(message, 0)
                raise
            message[0] = result if send else None
        dist.broadcast_object_list(message, 0)
        if self.main:
            return result
        if message[1] is not None:
            raise InputError(f"process 0 stopped: {message[1]}")
        return message[0]


@contextlib.contextmanager
def session(device: str, requested: bool = False):
    """Join the ``torchrun`` process group for the block; yields a :class:`Distributed`, or None outside torchrun.

    Raises
    ------
    InputError
        ``requested`` (``--distributed``) without the torchrun environment.
    """
    if not launched():
        if requested:
            raise InputError("--distributed: this process was not started by torchrun (no "
                             f"{', '.join(TORCHRUN_VARIABLES)}); start it with 'torchrun --nproc_per_node N "
                             "-m opensim_pinn train ...'")
        yield None
        return
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    try:
        yield Distributed(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    finally:
        dist.destroy_process_group()
