"""How many CPU threads torch uses, per job: a policy that never loses badly.

PyTorch's default spreads every op over all cores. Tiny ops (small models, small batches)
gain nothing from a second thread, and on a loaded machine every op waits for its
descheduled sibling threads: ``underfire demo`` took 141 s with two threads and 56 s with
one beside three busy processes on two cores. Big convolutions do gain from threads on an
idle machine. So:

* a job whose forward pass is small (:data:`SMALL_MACS` multiply-adds per batch) gets one
  thread;
* otherwise the cores that the machine's load leaves idle (at least one);
* ``--threads N`` (:func:`set_override`) wins over both, and an ``OMP_NUM_THREADS`` set in
  the environment (a positive integer: the budget the user or the job runner declared)
  wins over the policy, as it would over torch's default.

A different thread count changes the order of floating-point sums, so the same seed gives
the same weights only at the same count: a run that must be reproducible bit for bit pins
it (``--threads``, ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from underfire.core.state import model_state

__all__ = [
    "SMALL_MACS",
    "busy_cores",
    "choose_threads",
    "cpu_cores",
    "forward_macs",
    "job_threads",
    "other_load",
    "override",
    "set_override",
]

#: Below this many multiply-adds per forward batch a second thread does not pay for its
#: synchronization (a digits Ross CNN on 128 8×8 images: ~10⁸; a Ross CNN on 256 MNIST images:
#: ~4·10⁹; ResNet-50 on 8 ImageNet images: ~3·10¹⁰).
SMALL_MACS = 2e8

_override: int | None = None
_start = (time.monotonic(), time.process_time())


def set_override(threads: int | None) -> None:
    """Fix the thread count of every later job (None: back to the policy)."""
    global _override
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be an integer ≥ 1, got {threads!r}")
    _override = threads


def override() -> int | None:
    """The fixed thread count, if any: ``--threads`` (:func:`set_override`), else a positive
    integer ``OMP_NUM_THREADS`` in the environment."""
    if _override is not None:
        return _override
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


#: How long :func:`other_load` watches the CPUs to see how busy other processes keep them.
SAMPLE_SECONDS = 0.2


def _cpu_jiffies(cpus: set[int], stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(total, idle) CPU time of ``cpus`` so far, from /proc/stat (Linux; None elsewhere)."""
    total = idle = 0
    try:
        with open(stat, encoding="ascii") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if not name[3:].isdigit():
                    break
                if int(name[3:]) in cpus:
                    values = [int(v) for v in fields[:8]]
                    total += sum(values)
                    idle += values[3] + values[4]  # idle and iowait
    except (OSError, ValueError, IndexError):
        return None
    return (total, idle) if total else None


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores other processes keep busy right now: their busy time
    over a short window (/proc/stat) less this process's own. None where /proc/stat is not
    readable. Unlike the load average, it does not lag a minute behind a job that has just
    ended or started."""
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:
        return None
    before, own_before, wall_before = _cpu_jiffies(cpus), time.process_time(), time.monotonic()
    if before is None:
        return None
    time.sleep(seconds)
    after, own_after, wall_after = _cpu_jiffies(cpus), time.process_time(), time.monotonic()
    if after is None:
        return None
    own = (own_after - own_before) / max(wall_after - wall_before, 1e-9)
    return _others_busy(before, after, len(cpus), own)


def _others_busy(
    before: tuple[int, int], after: tuple[int, int], cores: int, own: float
) -> float | None:
    """Cores busy between two (total, idle) readings of ``cores`` CPUs, less ``own`` (the
    cores this process used meanwhile)."""
    total, idle = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return None
    return max(cores * (total - idle) / total - own, 0.0)


def other_load() -> float:
    """How many cores other processes keep busy: measured now (:func:`busy_cores`), or, where
    that cannot be measured, the larger of the 1-minute load average less this process's own
    share (its CPU time over its lifetime) and the threads runnable at this instant less this
    one (/proc/loadavg; that count includes this process's own worker threads, which spin for
    a while after each parallel op, so it is only the fallback)."""
    busy = busy_cores()
    if busy is not None:
        return busy
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    wall = time.monotonic() - _start[0]
    own = (time.process_time() - _start[1]) / wall if wall > 5 else 0.0
    now = 0.0
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            now = float(f.read().split()[3].split("/")[0]) - 1
    except (OSError, IndexError, ValueError):
        pass
    return max(load - min(own, float(cpu_cores())), now, 0.0)


def choose_threads(macs: float | None = None, *, load: float | None = None) -> int:
    """Threads for a job whose forward pass costs ``macs`` multiply-adds per batch (None:
    unknown, decided by the load alone). ``load``: the competing load (default measured; 0:
    by size alone)."""
    fixed = override()
    if fixed is not None:
        return fixed
    if macs is not None and macs < SMALL_MACS:
        return 1
    cores = cpu_cores()
    busy = other_load() if load is None else load
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextmanager
def job_threads(macs: float | None = None) -> Iterator[int]:
    """torch's intra-op threads set by :func:`choose_threads` for the block, then restored."""
    before = torch.get_num_threads()
    threads = choose_threads(macs)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def forward_macs(model: nn.Module, x: torch.Tensor, batch: int | None = None) -> float:
    """Multiply-adds of the convolutions and linear layers of one forward pass on the first
    sample of ``x``, times ``batch`` (default: x's batch). Other ops are left out: they are
    memory-bound and rarely decide whether threads pay."""
    total = 0.0

    def count(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            per_out = module.in_channels // module.groups
            for k in module.kernel_size:
                per_out *= k
            total += float(out.numel()) * per_out
        elif isinstance(module, nn.Linear):
            total += float(out.numel()) * module.in_features

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with model_state(model):  # eval mode: BatchNorm takes a batch of one
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total * (x.shape[0] if batch is None else batch)
