"""Several processes (``torchrun``) working as one: rank helpers, sharding and gathering.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the
rendezvous address), :func:`init` joins the process group: NCCL when the run computes on
CUDA, gloo otherwise. Outside ``torchrun`` every helper answers as the only process
(rank 0 of 1), so library code calls them unconditionally.

Sharding is by contiguous blocks: rank ``r`` of ``n`` takes the ``r``-th of ``n`` blocks whose
sizes differ by at most one (:func:`shard`); :func:`gather` puts the blocks back in order, so a
per-sample result is computed exactly once and returned in the original order on every rank.
With ``batch_size`` the blocks are of whole batches of the one-process run, so a computation
that depends on its batch (a random start seeded per call, a first-batch check) sees on some
rank exactly the batch it would see in one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_sum",
    "barrier",
    "from_main",
    "gather",
    "gather_blocks",
    "gather_objects",
    "init",
    "is_main",
    "launched",
    "local_device",
    "my_batches",
    "rank",
    "shard",
    "shard_sizes",
    "sync_buffers",
    "teardown",
    "world_size",
]

T = TypeVar("T")

#: Seconds a collective waits for the other ranks before the job fails (a dead rank must not
#: hang the others for torch's default 10 or 30 minutes). ``UNDERFIRE_DIST_TIMEOUT`` overrides.
DEFAULT_TIMEOUT = 300


def launched() -> bool:
    """True in a process started by ``torchrun`` (or any launcher setting ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def active() -> bool:
    """True when this process belongs to an initialized group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the one process that writes files and prints progress."""
    return rank() == 0


def local_device(device: str | torch.device) -> torch.device:
    """``device`` for this process: under ``torchrun``, a bare ``cuda`` becomes this rank's GPU
    (``cuda:LOCAL_RANK``)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init(device: str | torch.device = "cpu", *, timeout: float | None = None) -> bool:
    """Join the ``torchrun`` process group (once); returns whether one is active.

    The backend follows ``device``: NCCL for CUDA, gloo for the CPU.
    """
    if not launched() or not dist.is_available():
        return False
    if dist.is_initialized():
        return active()
    device = local_device(device)
    seconds = timeout if timeout is not None else _timeout_from_env()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store, rank_, ranks = next(dist.rendezvous("env://", timeout=timedelta(seconds=seconds)))
    # the keys of this attempt only: after a restart (torchrun --max-restarts) the store
    # still held the dead attempt's addresses, and the new processes, reading them, failed
    # to connect ("Connection refused", torch 2.14)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        store=dist.PrefixStore(f"underfire/attempt-{attempt}", store),
        rank=rank_,
        world_size=ranks,
        timeout=timedelta(seconds=seconds),
    )
    return active()


def _timeout_from_env() -> float:
    raw = os.environ.get("UNDERFIRE_DIST_TIMEOUT", str(DEFAULT_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"UNDERFIRE_DIST_TIMEOUT must be a positive number of seconds, got {raw!r}"
        )
    return seconds


def teardown(*, wait: bool = True) -> None:
    """Leave the process group (a no-op outside one). ``wait``: first wait until every rank
    got here: a rank that destroyed its group while another still talked to it aborted under
    load (gloo's "terminate called without an active exception"). Not after an error, when
    another rank may never arrive."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def check_global_batch(batch_size: int) -> None:
    """Refuse a global batch the ranks cannot share equally."""
    ranks = world_size()
    if batch_size % ranks:
        error = ValueError(
            f"the batch size {batch_size} is the global batch, shared by the {ranks} "
            f"processes, and must be divisible by {ranks}; pick a multiple of {ranks}"
        )
        error.raised_on_rank_0 = not is_main()  # type: ignore[attr-defined]  # said once
        raise error


def shard_sizes(n: int, parts: int | None = None, *, batch_size: int | None = None) -> list[int]:
    """Sizes of the ``parts`` contiguous blocks of ``n`` items (differing by at most one).

    With ``batch_size``, the blocks are of whole batches: the ``ceil(n / batch_size)`` batches
    of one process are shared out (their counts differing by at most one), so every rank's
    batches are exactly batches of the one-process run (only the last one may be short).
    """
    parts = parts or world_size()
    if batch_size is None:
        base, extra = divmod(n, parts)
        return [base + (1 if r < extra else 0) for r in range(parts)]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int ≥ 1, got {batch_size!r}")
    sizes, start = [], 0
    for batches in shard_sizes(-(-n // batch_size), parts):
        stop = min(start + batches * batch_size, n)
        sizes.append(stop - start)
        start = stop
    return sizes


def shard(
    n: int, *, batch_size: int | None = None, rank_: int | None = None, parts: int | None = None
) -> slice:
    """This rank's block of ``range(n)`` (all of it in a single process); with ``batch_size``,
    a block of whole batches (:func:`shard_sizes`)."""
    sizes = shard_sizes(n, parts, batch_size=batch_size)
    r = rank() if rank_ is None else rank_
    start = sum(sizes[:r])
    return slice(start, start + sizes[r])


def my_batches(n: int, batch_size: int) -> list[slice]:
    """This rank's batches of ``range(n)``: those of the one-process run (slices of
    ``batch_size``, the last one short) that lie in its :func:`shard` block of whole batches;
    all of them in a single process."""
    block = shard(n, batch_size=batch_size)
    step = range(block.start, block.stop, batch_size)
    return [slice(i, min(i + batch_size, block.stop)) for i in step]


def _wire(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` where the backend can send it (NCCL: this rank's GPU)."""
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor


def gather(local: torch.Tensor, n: int, *, batch_size: int | None = None) -> torch.Tensor:
    """The blocks of all ranks (each rank's :func:`shard` of ``n`` items, with the same
    ``batch_size``, first dimension) concatenated in rank order: the ``n`` results in their
    original order, on every rank."""
    if not active():
        return local
    sizes = shard_sizes(n, batch_size=batch_size)
    if local.shape[0] != sizes[rank()]:
        raise ValueError(
            f"rank {rank()} gathers {local.shape[0]} results, but its shard of {n} holds "
            f"{sizes[rank()]}; compute exactly the items of shard({n})"
        )
    return gather_blocks(local, sizes)


def gather_blocks(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's ``local`` (``sizes[r]`` rows on rank ``r``, known to all) concatenated in
    rank order, on every rank (``local`` itself in a single process)."""
    if not active():
        return local
    if len(sizes) != world_size() or local.shape[0] != sizes[rank()]:
        raise ValueError(
            f"rank {rank()} holds {local.shape[0]} rows but the block sizes say {sizes} for "
            f"{world_size()} ranks; pass one size per rank, this rank's being its row count"
        )
    # all_gather needs equal shapes: pad every block to the largest, then cut the padding
    largest = max(sizes)
    wire = _wire(local)
    padded = torch.zeros((largest, *local.shape[1:]), dtype=local.dtype, device=wire.device)
    padded[: local.shape[0]] = wire
    blocks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(blocks, padded)
    return torch.cat([b[:size] for b, size in zip(blocks, sizes, strict=True)]).to(local.device)


def gather_objects(value: T) -> list[T]:
    """``value`` of every rank, in rank order (``[value]`` in a single process); for small
    picklable things such as the warnings a rank saw."""
    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks (a copy; ``values`` itself in a single process)."""
    if not active():
        return values
    total = _wire(values).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(values.device)


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its value (or its exception) sent to every rank.

    For what rank 0 alone may read (a checkpoint before a resume): every rank continues from
    the same thing, or every rank raises the same error, none waits forever.
    """
    if not active():
        return compute()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("value", compute())
        except Exception as err:  # sent to the other ranks, then raised here too
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "error":
        if not is_main():
            # rank 0 raised it too: the command line prints it there only
            payload.raised_on_rank_0 = True
        raise payload
    return payload


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
    if not active():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def say_main(message: str) -> None:
    """Print a progress line on rank 0 only (stderr)."""
    if is_main():
        print(message, file=sys.stderr, flush=True)


class Replicas:
    """A model trained by every rank: wrapped in ``DistributedDataParallel``, with the loss
    scaling that makes the averaged gradient the one of the whole global batch.

    DDP averages the ranks' gradients; a rank whose loss is the mean over its ``b_r`` of the
    ``B`` examples scales it by ``W·b_r/B`` (1 when the shares are equal), so the average is
    the gradient of the mean over all ``B``, as in one process. Set :attr:`batch` (the global
    batch size) before each step. :attr:`interrupt` (an object with a ``requested`` flag) is
    shared: a Ctrl-C seen by any rank sets it on all, so all stop after the same step.
    """

    def __init__(
        self, model: nn.Module, device: torch.device, *, sync_batch_norm: bool = False
    ) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.model = model
        self._replaced: list[tuple[nn.Module, str, nn.Module]] = []
        if sync_batch_norm:
            if device.type == "cpu":
                raise ValueError(
                    "sync_batch_norm needs GPUs (torch's SyncBatchNorm has no CPU version); "
                    "on the CPU leave it off: each process normalizes with its own share"
                )
            self._use_sync_batch_norm(model)
        self.module: nn.Module = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        self.batch = 0
        self.interrupt: Any = None

    def share(self, loss: torch.Tensor, local: int) -> tuple[torch.Tensor, float]:
        """This rank's loss to backpropagate, and the global batch's loss (same on all ranks)."""
        sums = all_sum(
            torch.tensor(
                [float(loss.detach()) * local / self.batch, float(self._requested())],
                dtype=torch.float64,
            )
        )
        if sums[1].item() > 0 and self.interrupt is not None:
            self.interrupt.requested = True
        return loss * (world_size() * local / self.batch), float(sums[0].item())

    def _requested(self) -> bool:
        return bool(getattr(self.interrupt, "requested", False))

    def _use_sync_batch_norm(self, model: nn.Module) -> None:
        # swapped back by close(): the caller's model keeps its own classes; the parameters
        # and buffers are the same tensors, so what was trained stays
        for parent in model.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, nn.SyncBatchNorm
                ):
                    synced = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                    setattr(parent, name, synced)
                    self._replaced.append((parent, name, child))

    def close(self) -> None:
        """Give the model back with its own batch-norm classes (after SyncBatchNorm)."""
        for parent, name, original in self._replaced:
            setattr(parent, name, original)
        self._replaced.clear()
