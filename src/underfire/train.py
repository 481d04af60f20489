"""Training with a pluggable objective, seeded, checkpointed and resumable.

An objective is any callable ``objective(model, x, y) -> scalar loss``; the defenses in
:mod:`underfire.defenses` are objectives. The trainer owns everything else: batching,
optimizer, evaluation, checkpoints with metadata, and resuming after an interruption.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from underfire.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from underfire.core import distributed
from underfire.core.errors import NonFiniteError
from underfire.core.interrupt import DeferredInterrupt as _DeferredInterrupt
from underfire.core.seed import seed_everything
from underfire.core.state import model_state
from underfire.core.validation import check_float, check_int, check_seed
from underfire.data.augment import check_augment, epoch_augmentation

#: Largest learning rate accepted: above it any optimizer here diverges at once.
MAX_LR = 10.0

#: Learning-rate schedules of :class:`TrainConfig` (see :func:`scheduled_lr`).
LR_SCHEDULES = ("constant", "cosine", "onecycle")

#: Share of a one-cycle run spent warming up, and its starting fraction of the peak rate
#: (the defaults of PyTorch's ``OneCycleLR``).
ONECYCLE_WARMUP, ONECYCLE_START = 0.3, 1 / 25


class Objective(Protocol):
    """A training loss: ``objective(model, x, y) -> scalar``. ``model`` is in train mode."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class CrossEntropy:
    """Plain training: mean cross-entropy of the logits."""

    name = "cross-entropy"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass
class TrainConfig:
    """Hyperparameters of a training run.

    ``steps`` (optimizer updates) overrides ``epochs`` when given, as papers often count
    batches (Ross & Doshi-Velez: 15,000 batches of 256). ``lr_schedule="cosine"`` decays the
    learning rate to 0 over the run; it is a function of the step alone, so resuming is exact.
    """

    epochs: int = 10
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 500
    lr_schedule: str = "constant"
    augment: str = "none"

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}, "
                f"got {self.lr_schedule!r}"
            )
        check_augment(self.augment)
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "checkpoint_every"):
            check_int(getattr(self, name), name, minimum=1)
        if self.steps is not None:
            check_int(self.steps, "steps", minimum=1)
        check_seed(self.seed)
        # Every float finite and in range: a NaN or infinite rate trains a NaN model.
        self.lr = check_float(self.lr, "lr", low=0.0, low_inclusive=False, high=MAX_LR)
        self.momentum = check_float(
            self.momentum, "momentum", low=0.0, high=1.0, high_inclusive=False
        )
        self.weight_decay = check_float(self.weight_decay, "weight_decay", low=0.0, high=1.0)


@dataclass
class TrainResult:
    steps: int
    epochs_completed: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    #: True when the checkpoint held this run already finished: nothing was trained.
    reused: bool = False
    #: Training time summed over every session of the run (resumes included).
    total_seconds: float = 0.0


def batches(
    data: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    part: tuple[int, int] = (0, 1),
    augment: str = "none",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches; in-memory datasets are sliced directly (no per-item collation).

    ``part=(rank, ranks)`` yields only that rank's block of every batch (see
    :func:`underfire.core.distributed.shard`): the ranks together see the single-process
    batches, in the same order. An empty block is not yielded. ``augment`` (see
    :mod:`underfire.data.augment`) transforms each sample as ``(seed, epoch)`` and its index
    in ``data`` decide, so every rank's block is its part of the single-process batch.
    """
    n = len(data)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours have one
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        if shuffle
        else None
    )
    rank, ranks = part
    blocks = []
    for start in range(0, n, batch_size):
        block = distributed.shard(min(batch_size, n - start), rank_=rank, parts=ranks)
        if block.stop > block.start:
            blocks.append((start + block.start, start + block.stop))
    augmented = epoch_augmentation(augment, n, seed=seed, epoch=epoch)
    x_all, y_all = getattr(data, "x", None), getattr(data, "y", None)
    if isinstance(x_all, torch.Tensor) and isinstance(y_all, torch.Tensor):
        for lo, hi in blocks:
            idx = order[lo:hi] if order is not None else slice(lo, hi)
            x = x_all[idx]
            if augmented is not None:
                x = augmented(x, torch.arange(lo, hi) if isinstance(idx, slice) else idx)
            yield x, y_all[idx]
        return
    indices = order.tolist() if order is not None else list(range(n))
    sampler = [indices[lo:hi] for lo, hi in blocks]
    loader = DataLoader(data, batch_sampler=sampler, num_workers=0)
    for chosen, (x, y) in zip(sampler, loader, strict=True):
        yield (augmented(x, torch.tensor(chosen)) if augmented is not None else x), y


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (model mode restored).

    Under ``torchrun`` each rank evaluates its block of every batch and the sums are added
    over the ranks: every rank returns the metrics of the whole data set.
    """
    device = device or next(model.parameters()).device
    correct, total, loss = 0, 0, 0.0
    part = (distributed.rank(), distributed.world_size())
    with model_state(model, mode="eval"):
        for x, y in batches(data, batch_size, part=part):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
    if part[1] > 1:
        sums = distributed.all_sum(torch.tensor([loss, correct, total], dtype=torch.float64))
        loss, correct, total = sums[0].item(), int(sums[1].item()), int(sums[2].item())
    if total == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {"accuracy": correct / total, "loss": loss / total, "n": total}


def scheduled_lr(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of (0-based) ``step`` of ``total`` under ``cfg.lr_schedule``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    warmup = int(ONECYCLE_WARMUP * total) if cfg.lr_schedule == "onecycle" else 0
    if step < warmup:
        return cfg.lr * (ONECYCLE_START + (1 - ONECYCLE_START) * step / warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def _trainable(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters that require a gradient (the only ones a step updates)."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def _objective_config(objective: Any) -> dict[str, Any]:
    if hasattr(objective, "config"):
        return objective.config()
    return {"name": getattr(objective, "name", type(objective).__name__)}


class Trainer:
    """Train ``model`` on a dataset with an objective.

    With ``checkpoint`` set, progress is saved every ``checkpoint_every`` steps and at the end
    (atomically); calling :meth:`fit` again with the same path resumes from the last save, and
    returns at once when the run had finished.

    Args:
        model: an underfire model (from :func:`underfire.models.create_model`).
        objective: the loss (default cross-entropy).
        config: hyperparameters.
        device: where to train.
        checkpoint: path of the checkpoint file, or None.
        progress: show a progress bar (CLI and experiments; the library is silent by default).
        meta: extra metadata stored in the checkpoint (e.g. the dataset name).
        sync_batch_norm: under ``torchrun``, normalize with the statistics of the whole
            global batch (``nn.SyncBatchNorm``, one more exchange per batch-norm layer)
            instead of each rank's share (the default); no effect in one process.

    Under ``torchrun`` (after :func:`underfire.core.distributed.init`) the model trains
    wrapped in ``DistributedDataParallel``: ``config.batch_size`` is the global batch, each
    rank takes its block of every batch, rank 0 alone saves checkpoints and shows progress.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective | None = None,
        config: TrainConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        checkpoint: str | Path | None = None,
        progress: bool = False,
        meta: dict[str, Any] | None = None,
        on_step: Callable[[int, float], None] | None = None,
        sync_batch_norm: bool = False,
    ) -> None:
        self.model = model.to(device)
        self.objective = objective if objective is not None else CrossEntropy()
        self.config = config or TrainConfig()
        self.device = torch.device(device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.meta = dict(meta or {})
        self.on_step = on_step
        self.sync_batch_norm = bool(sync_batch_norm)

    def _run_signature(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg.pop("checkpoint_every")
        if cfg["augment"] == "none":  # absent from earlier runs: their checkpoints stay valid
            cfg.pop("augment")
        signature: dict[str, Any] = {"train": cfg, "objective": _objective_config(self.objective)}
        if self.sync_batch_norm:  # only when set: checkpoints of earlier runs stay valid
            signature["sync_batch_norm"] = True
        return signature

    def saved_state(self) -> dict[str, Any] | None:
        """The trainer state in ``checkpoint`` if it holds this run (None when there is no
        file), without loading any weights into the model.

        Raises:
            CheckpointError: the file is damaged, or was written by a different run (other
                settings, objective or model).
        """
        if self.checkpoint is None or not self.checkpoint.exists():
            return None
        return self._check_payload(read_checkpoint(self.checkpoint))

    def _check_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        state = payload.get("trainer_state") or {}
        if state.get("signature") != self._run_signature():
            raise CheckpointError(
                f"{self.checkpoint} was written by a different training run (other settings or "
                "objective); delete it, choose another checkpoint path, or (CLI) pass --force"
            )
        config = getattr(self.model, "config", {})
        if payload["model"]["name"] != config.get("name"):
            raise CheckpointError(f"{self.checkpoint} holds a {payload['model']['name']!r} model")
        if payload["model"].get("kwargs", {}) != dict(config.get("kwargs", {})):
            raise CheckpointError(
                f"{self.checkpoint} holds a {config.get('name')!r} model built with other "
                f"arguments ({payload['model'].get('kwargs')}); delete it, choose another "
                "checkpoint path, or (CLI) pass --force"
            )
        saved, this = (payload.get("meta") or {}).get("dataset"), self.meta.get("dataset")
        if isinstance(saved, str) and isinstance(this, str) and saved.lower() != this.lower():
            raise CheckpointError(
                f"{self.checkpoint} was trained on {saved!r}, not {self.meta['dataset']!r}; "
                "delete it, choose another checkpoint path, or (CLI) pass --force"
            )
        return state

    def _try_resume(
        self, optimizer: torch.optim.Optimizer
    ) -> tuple[int, list[dict[str, float]], bool, float]:
        def read() -> tuple[dict[str, Any], dict[str, Any]] | None:
            if self.checkpoint is None or not self.checkpoint.exists():
                return None
            payload = read_checkpoint(self.checkpoint)
            return payload, self._check_payload(payload)

        # rank 0 reads, every rank resumes from what it read (or raises its error)
        found = distributed.from_main(read)
        if found is None:
            return 0, [], False, 0.0
        payload, state = found
        try:
            self.model.load_state_dict(payload["state_dict"])
        except RuntimeError as err:
            raise CheckpointError(
                f"{self.checkpoint}: its weights do not fit this model ({str(err)[:200]}); "
                "delete it or choose another checkpoint path"
            ) from err
        if payload.get("optimizer_state"):
            optimizer.load_state_dict(payload["optimizer_state"])
        torch.set_rng_state(state["torch_rng"])
        return (
            int(state["step"]),
            list(state.get("history", [])),
            bool(state.get("finished")),
            float(state.get("seconds", 0.0)),
        )

    def _save(
        self,
        optimizer: torch.optim.Optimizer,
        step: int,
        history: list[dict[str, float]],
        finished: bool,
        extra: dict[str, Any],
        seconds: float = 0.0,
    ) -> None:
        if self.checkpoint is None or not distributed.is_main():
            return
        meta = (
            self.meta
            | extra
            | {
                "steps": step,
                "objective": _objective_config(self.objective),
                "train": asdict(self.config),
            }
        )
        state = {
            "signature": self._run_signature(),
            "step": step,
            "history": history,
            "finished": finished,
            "torch_rng": torch.get_rng_state(),
            "seconds": seconds,
        }
        save_checkpoint(
            self.checkpoint,
            self.model,
            meta=meta,
            optimizer_state=optimizer.state_dict(),
            trainer_state=state,
        )

    def _step(
        self,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        step: int,
        total: int,
        net: distributed.Replicas | None = None,
    ) -> float:
        """One optimizer step on the batch ``(x, y)``; returns its loss (the global batch's
        under ``torchrun``, where ``net`` is the wrapped model and its share)."""
        cfg = self.config
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if cfg.lr_schedule != "constant":
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg, step, total)
        loss = self.objective(net.module if net else self.model, x, y)
        if net is not None:
            loss, value = net.share(loss, x.shape[0])
        else:
            value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteError(
                f"training loss became {value} at step {step + 1} of {total} "
                f"(lr {optimizer.param_groups[0]['lr']:.3g}): the run diverged; "
                "lower the learning rate (or the defense's weight); the last "
                "saved checkpoint, if any, is kept"
            )
        optimizer.zero_grad(set_to_none=True)
        # only the optimizer's parameters: an objective that differentiates w.r.t. its input
        # (double backprop) would otherwise also pay for a gradient into the input leaf,
        # thrown away (≈ 4% of a gradreg step)
        loss.backward(inputs=_trainable(optimizer))
        optimizer.step()
        return value

    def _record(
        self, step: int, per_epoch: int, train_loss: float, val: Dataset | None
    ) -> dict[str, float]:
        """The history entry at the end of an epoch (validation metrics when ``val``)."""
        record = {"step": step, "epoch": step / per_epoch, "train_loss": train_loss}
        if val is not None:
            distributed.sync_buffers(self.model)  # every rank evaluates rank 0's model
            metrics = evaluate(self.model, val, device=self.device)
            record |= {"val_accuracy": metrics["accuracy"], "val_loss": metrics["loss"]}
        return record

    def _batches(
        self, train: Dataset, epoch: int, skip: int
    ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """``(i, global size, x, y)`` of the batches to train on in ``epoch`` (this rank's
        block of each), from batch ``skip`` on: resuming mid-epoch, the order is the same
        and the batches already seen are passed over."""
        cfg, ranks = self.config, distributed.world_size()
        n = len(train)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours have one
        part = (distributed.rank(), ranks)
        shuffled = batches(
            train,
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            epoch=epoch,
            part=part,
            augment=cfg.augment,
        )
        for i, (x, y) in enumerate(shuffled):
            size = min(cfg.batch_size, n - i * cfg.batch_size)
            if i >= skip and size >= max(2, ranks):  # batch norm cannot train on 1 example
                yield i, size, x, y

    def fit(self, train: Dataset, val: Dataset | None = None) -> TrainResult:
        """Train to the end (or resume and finish); return what was done.

        Raises:
            NonFiniteError: the loss became NaN or infinite (nothing non-finite is saved; the
                last checkpoint, if any, stays as it was).
            KeyboardInterrupt: after Ctrl-C, once the current step is complete and a
                checkpoint of it is saved (when ``checkpoint`` is set), so the run resumes
                from there even before its first ``checkpoint_every``.
        """
        cfg = self.config
        info = getattr(train, "info", None)
        if info is not None and "dataset" not in self.meta:
            self.meta["dataset"] = info.name  # so evaluate/attack can find the data later
        n = len(train)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours have one
        if n == 0:
            raise ValueError("the training set is empty")
        check_batch = _label_check(self.model, train)
        distributed.check_global_batch(cfg.batch_size)
        per_epoch = math.ceil(n / cfg.batch_size)
        total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
        seed_everything(cfg.seed)
        optimizer = _optimizer(self.model, cfg)
        start, history, finished, before = self._try_resume(optimizer)
        t0 = time.perf_counter()
        if finished:
            self.model.eval()
            return TrainResult(
                start,
                start / per_epoch,
                0.0,
                history,
                resumed_from=start,
                reused=True,
                total_seconds=before,
            )
        bar = _progress_bar(total, start) if self.progress and distributed.is_main() else None
        net = (
            distributed.Replicas(self.model, self.device, sync_batch_norm=self.sync_batch_norm)
            if distributed.active()
            else None
        )
        step, loss_sum, loss_count = start, 0.0, 0

        def elapsed() -> float:
            return before + time.perf_counter() - t0

        self.model.train()
        try:
            with _DeferredInterrupt() as interrupt:
                if net is not None:
                    net.interrupt = interrupt  # one rank's Ctrl-C stops all at the same step
                while step < total:
                    epoch, skip = divmod(step, per_epoch)
                    for i, size, x, y in self._batches(train, epoch, skip):
                        if step >= total:
                            break
                        if check_batch is not None:
                            check_batch(y, f"training batch {i + 1}")
                        if net is not None:
                            net.batch = size
                        value = self._step(optimizer, x, y, step, total, net)
                        step += 1
                        loss_sum, loss_count = loss_sum + value, loss_count + 1
                        if self.on_step is not None:
                            self.on_step(step, value)
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{value:.4f}", epoch=epoch + 1, refresh=False)
                        if step % per_epoch == 0 or step == total:  # end of an epoch
                            history.append(
                                self._record(step, per_epoch, loss_sum / max(loss_count, 1), val)
                            )
                            loss_sum, loss_count = 0.0, 0
                        if step < total and (
                            step % cfg.checkpoint_every == 0 or interrupt.requested
                        ):
                            # Only between steps: the saved state is one whole step, so a
                            # resume is exact. (A partial epoch's running loss is not saved.)
                            self._save(optimizer, step, history, False, {}, elapsed())
                        if interrupt.requested:
                            raise KeyboardInterrupt
                    if step >= total:
                        break
        finally:
            if bar is not None:
                bar.close()
            if net is not None:
                net.close()
        distributed.sync_buffers(self.model)  # every rank ends with rank 0's model
        self.model.eval()
        extra = (
            {"val_accuracy": history[-1]["val_accuracy"]}
            if history and "val_accuracy" in history[-1]
            else {}
        )
        seconds = time.perf_counter() - t0
        self._save(optimizer, step, history, True, extra, before + seconds)
        total_seconds = before + seconds
        return TrainResult(step, step / per_epoch, seconds, history, start, False, total_seconds)


def _progress_bar(total: int, start: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )


def _label_check(model: nn.Module, train: Dataset) -> Callable[[torch.Tensor, str], None] | None:
    """Refuse labels beyond the model's classes, which would reach torch as a bare
    IndexError (or a device-side assert on CUDA): all at once when the labels are in memory
    (returns None), else the check to run on each batch."""
    classes = _num_classes(model)
    labels = getattr(train, "y", None)
    if isinstance(labels, torch.Tensor):
        _check_labels(labels, classes, "the training set")
        return None
    return lambda y, where: _check_labels(y, classes, where)


def _num_classes(model: nn.Module) -> int | None:
    classes = getattr(model, "num_classes", None)
    if classes is None:
        classes = getattr(model, "config", {}).get("kwargs", {}).get("num_classes")
    return classes if isinstance(classes, int) else None


def _check_labels(y: torch.Tensor, classes: int | None, where: str) -> None:
    """Refuse labels outside ``[0, classes)`` with one message naming both ranges."""
    if classes is None or y.numel() == 0 or y.is_floating_point():
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"{where} has labels in [{lo}, {hi}], but the model has {classes} classes "
            f"(labels 0–{classes - 1}); train on data with {classes} classes, or build the "
            f"model for {max(hi + 1, classes)} classes (num_classes=...)"
        )
