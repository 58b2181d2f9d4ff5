"""Data-parallel training on torch.distributed: the only place that reads torchrun's environment.

`torchrun --nproc_per_node=N -m ganforge train ...` (multi-node: torchrun's --nnodes and
--rdzv-endpoint) starts N processes running the same code as a single process:

- `batch_size` is the global batch. Every rank draws the same global batch of data indices and
  latents from the same generators and keeps its own slice, so the run sees exactly the data and
  z a single process would, and the shards of a batch never overlap.
- After each backward pass the gradients are averaged over the ranks (one all-reduce of a flat
  buffer), so every rank applies the same update and G, D, G_ema and the optimizers stay equal.
  `check_in_sync` verifies that at every checkpoint.
- Batch norm is per rank: each rank normalises with its own slice's statistics (as
  torch.nn.BatchNorm does under DDP without SyncBatchNorm). With BN in D, N ranks of B/N images
  therefore differ slightly from one process of B; models without BN match one process exactly.
- Rank 0 alone writes files and shows progress. nccl on GPUs, gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where tensors for collectives live (nccl needs them on the GPU)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch."""
        per_rank = len(batch) // self.world
        return batch[self.rank * per_rank:(self.rank + 1) * per_rank]

    def average_gradients(self, module: torch.nn.Module, extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """Average `module`'s gradients (and the `extra` tensor) over the ranks; returns the averaged extra."""
        if self.world == 1:
            return extra
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + ([extra.detach().reshape(-1).float()] if extra is not None else []))
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:].view_as(extra) if extra is not None else None

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the ranks (for logged numbers)."""
        if self.world > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values

    def broadcast_float(self, value: float) -> float:
        """Rank 0's value, on every rank."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return float(t)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def check_in_sync(self, *modules: torch.nn.Module) -> None:
        """Raise if any rank's weights differ from rank 0's (they never should)."""
        if self.world == 1:
            return
        mine = torch.stack([torch.cat([t.detach().reshape(-1).double() for t in m.state_dict().values()]).sum()
                            for m in modules])
        theirs = mine.clone()
        dist.broadcast(theirs, src=0)
        if not torch.equal(mine, theirs):
            raise RuntimeError(f"rank {self.rank}'s weights drifted from rank 0's: {mine.tolist()} vs {theirs.tolist()}")


def init(device_name: str) -> tuple[Dist, str]:
    """(Dist, device name) from torchrun's environment; a single process without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        device_name = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device_name = device_name if use_cuda else "cpu"
    return Dist(rank, world, local_rank, device_name), device_name


def close(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
