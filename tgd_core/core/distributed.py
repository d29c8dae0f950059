"""Data-parallel training under ``torchrun`` (PyTorch DDP: NCCL on GPUs, gloo on CPUs).

``torchrun --nproc-per-node N -m tgd_core train|distill|experiment ...`` starts N processes;
:func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins
the process group. A run with N processes computes what one process computes with the same
(global) ``batch_size``:

- every step's global batch (a function of seed, epoch and step, see
  :mod:`tgd_core.training.data`) is split into N contiguous shards, one per rank — the
  distributed sampler; augmentation parameters are drawn for the global batch, then sharded;
- per-sample loss terms are local means scaled by ``n_rank · N / n_global``, so DDP's gradient
  average is the gradient of the global mean, uneven last batches included;
- batch-level terms (the b × b similarity maps of TGD and SP) gather the features of all ranks
  (:func:`gather_rows`, differentiable), so the maps are the global batch's;
- BatchNorm statistics are the global batch's (``sync_batchnorm``): ``nn.SyncBatchNorm`` on
  GPUs, :class:`GlobalBatchNorm2d` (a differentiable all-gather of each rank's moments) on
  CPUs, where PyTorch's SyncBatchNorm does not run;
- losses, accuracy counts and the stop request are summed over ranks every step; rank 0 alone
  writes checkpoints, metrics and results, and any rank can resume any run (checkpoints do not
  depend on the number of processes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tgd_core.core.devices import select_device
from tgd_core.core.errors import TGDError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank ``rank`` of ``world`` (1: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. filling a cache on disk), the others after it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (float64 on the CPU, exact for counts)."""
        if not self.enabled:
            return values
        out = values.detach().to(torch.float64)
        if dist.get_backend() == "nccl":
            out = out.cuda()
        dist.all_reduce(out)
        return out.cpu()


SINGLE = DistContext()
_current = SINGLE


def current() -> DistContext:
    """The context of this process (single-process unless :func:`setup` joined a group)."""
    return _current


def setup(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Join torchrun's process group if this process was started by it (``WORLD_SIZE`` > 1);
    returns the context and this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    global _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, select_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name)
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise TGDError(f"rank {rank}: local rank {local_rank} but only "
                           f"{torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise TGDError(f"distributed training runs on CUDA (NCCL) or CPUs (gloo), not "
                       f"{device.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _current = DistContext(rank, world, local_rank)
    return _current, device


class _AllGatherRows(torch.autograd.Function):
    """Concatenation of every rank's rows (padded to the longest for the collective); the
    gradient of a rank's rows is the sum over ranks of the gradient of its slice."""

    @staticmethod
    def forward(ctx, x, sizes):
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        pad = max(sizes) - x.shape[0]
        padded = F.pad(x.contiguous(), (0, 0) * (x.dim() - 1) + (0, pad)) if pad else x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The global batch's rows of ``x`` (this rank's rows are its shard); differentiable.
    The identity when the run is not distributed."""
    ctx = current()
    if not ctx.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world)]
    dist.all_gather(sizes, n)
    return _AllGatherRows.apply(x, [int(s) for s in sizes])


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across ranks: each
    rank's per-channel count, mean and biased variance (``torch.var_mean``) are all-gathered
    (differentiably) and combined exactly (Chan et al.'s parallel formula), as
    ``nn.SyncBatchNorm`` does on GPUs; the running estimates use the unbiased variance, as
    BatchNorm's do. Same parameters and buffers as BatchNorm2d: state dicts interchange."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().enabled):
            return super().forward(x)
        xf = x.float()
        c, shape = x.shape[1], (1, x.shape[1], 1, 1)
        var_r, mean_r = torch.var_mean(xf, dim=(0, 2, 3), unbiased=False)
        local = torch.cat([mean_r, var_r, mean_r.new_full((1,), x.numel() / c)])
        ranks = _AllGatherRows.apply(local[None], [1] * current().world)
        means, variances, counts = ranks[:, :c], ranks[:, c:2 * c], ranks[:, 2 * c:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (counts * (variances + (means - mean).pow(2))).sum(0) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1),
                                                  alpha=m)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return torch.addcmul(shift.view(shape), xf, scale.view(shape)).to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with global-batch BatchNorm statistics: ``nn.SyncBatchNorm`` on CUDA,
    :class:`GlobalBatchNorm2d` elsewhere (parameters and buffers are kept, not copied)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d
    return model


def data_parallel(module: nn.Module, dist_ctx: DistContext, device: torch.device, *,
                  buffers_synced: bool) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel in a distributed run (itself otherwise).
    With synchronised BatchNorm the ranks' buffers agree, so they are not re-broadcast."""
    if not dist_ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=not buffers_synced)


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun process)."""
    global _current
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _current = SINGLE

