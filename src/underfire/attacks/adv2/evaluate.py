"""ADV² over a dataset, batch by batch: the per-sample records gathered, their means, a few
examples kept with their benign and adversarial maps, and the figure of those examples.

>>> report = evaluate_adv2(ADV2("grad", preset="small"), model, data, target="next")
>>> report.summary["success_rate"], report.to_dict()["per_sample"]["l1"][:3]
>>> save_figure(adv2_figure(report.examples), "attack.png")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from underfire.attacks.adv2.attack import ADV2
from underfire.attacks.adv2.result import ADV2Result, confidence_summary
from underfire.plotting import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ADV2Evaluation", "adv2_figure", "evaluate_adv2"]

#: the per-sample fields of :class:`ADV2Result` gathered over the batches
PER_SAMPLE = ("target", "prediction", "success", "confidence", "l1", "iou")
EXAMPLE_KEYS = ("x", "x_adv", "benign_map", "adv_map")


@dataclass
class ADV2Evaluation:
    """ADV² on a dataset (tensors on the CPU).

    Attributes:
        attack: the attack's settings (:meth:`ADV2.config`).
        interpreter: the interpreter's settings, with its ``name``.
        per_sample: (N,) tensors per field of :data:`PER_SAMPLE`.
        summary: n, success rate, mean target confidence over the successful samples
            (``confidence_successful``, the paper's) and over all (``confidence``), mean map
            L1 and mean top-k IoU.
        examples: the first ``keep`` images: "x", "x_adv", "benign_map" (g at x for f's
            prediction) and "adv_map" (g at x_adv for the target).
    """

    attack: dict[str, Any]
    interpreter: dict[str, Any]
    per_sample: dict[str, torch.Tensor]
    summary: dict[str, Any]
    examples: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Settings, summary and per-sample lists, for results files (examples left out)."""
        return {
            "attack": self.attack,
            "interpreter": self.interpreter,
            **self.summary,
            "per_sample": {k: v.tolist() for k, v in self.per_sample.items()},
        }


def _batches(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            "data must be a dataset with .x and .y tensors or an (x, y) pair of tensors, got "
            f"{type(data).__name__}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"data has {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def _summary(per_sample: dict[str, torch.Tensor]) -> dict[str, Any]:
    return confidence_summary(per_sample["success"], per_sample["confidence"]) | {
        "l1": float(per_sample["l1"].mean()),
        "iou": float(per_sample["iou"].mean()),
    }


def evaluate_adv2(
    attack: ADV2,
    model: nn.Module,
    data: Any,
    *,
    target: torch.Tensor | str,
    batch_size: int = 64,
    keep: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> ADV2Evaluation:
    """Run ``attack`` on every image of ``data`` and gather its records.

    Args:
        attack: the ADV² attack (its interpreter is the one attacked and shown).
        model: the classifier, on the device the batches are moved to.
        data: a dataset with ``.x``/``.y`` tensors, or an ``(x, y)`` pair.
        target: a target rule ("next", "random", "least-likely") or (N,) classes.
        batch_size: images per attack call (second-order maps are memory hungry).
        keep: images kept in :attr:`ADV2Evaluation.examples`, with their maps.
        progress: called after each batch with (images done, images in all).
    """
    x_all, y_all = _batches(data)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = next(model.parameters()).device
    n = x_all.shape[0]
    records: list[ADV2Result] = []
    kept: dict[str, list[torch.Tensor]] = {k: [] for k in EXAMPLE_KEYS}
    for start in range(0, n, batch_size):
        x = x_all[start : start + batch_size].to(device)
        y = y_all[start : start + batch_size].to(device)
        t = target[start : start + batch_size] if isinstance(target, torch.Tensor) else target
        x_adv = attack(model, x, y, target=t)
        assert attack.result is not None
        records.append(attack.result)
        if sum(e.shape[0] for e in kept["x"]) < keep:
            _keep_examples(kept, attack, model, x, x_adv, attack.result.target)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    per_sample = {
        key: torch.cat([getattr(r, key) for r in records]).cpu() if records else torch.empty(0)
        for key in PER_SAMPLE
    }
    interpreter = attack.interpreter
    return ADV2Evaluation(
        attack=attack.config(),
        interpreter=interpreter.config() | {"name": interpreter.name},
        per_sample=per_sample,
        summary=_summary(per_sample),
        examples={k: torch.cat(v)[:keep] for k, v in kept.items() if v},
    )


def _keep_examples(
    kept: dict[str, list[torch.Tensor]],
    attack: ADV2,
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    target: torch.Tensor,
) -> None:
    with torch.no_grad():
        pred = model(x).argmax(1)
    kept["x"].append(x.cpu())
    kept["x_adv"].append(x_adv.cpu())
    kept["benign_map"].append(attack.interpreter(model, x, pred).cpu())
    kept["adv_map"].append(attack.interpreter(model, x_adv, target).cpu())


def adv2_figure(examples: dict[str, torch.Tensor], columns: int = 8) -> Figure:
    """Up to ``columns`` examples: clean images, their benign maps, the ADV² images and
    their maps (rows, in that order)."""
    k = min(columns, examples["x"].shape[0])
    fig = new_figure(1.1 * k + 1.5, 5.4)
    rows = [
        ("clean", examples["x"], False),
        ("benign map", examples["benign_map"], True),
        ("ADV²", examples["x_adv"], False),
        ("ADV² map", examples["adv_map"], True),
    ]
    for r, (label, imgs, is_map) in enumerate(rows):
        for c in range(k):
            a = fig.add_subplot(len(rows), k, r * k + c + 1)
            img = imgs[c].permute(1, 2, 0).numpy()
            a.imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img,
                cmap="inferno" if is_map else "gray",
                vmin=0,
                vmax=1,
            )
            a.set_xticks([]), a.set_yticks([])
            if c == 0:
                a.set_ylabel(label, fontsize=7)
    return fig
