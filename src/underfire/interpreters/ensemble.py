"""Ensemble interpretation: the countermeasure of ADV² (Zhang et al., USENIX Security 2020, §7):
combine the normalized maps of several complementary interpreters, so that an attack must
fool all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from underfire.core.validation import check_float
from underfire.interpreters.base import INTERPRETERS, Interpreter, MapState, normalize_maps

__all__ = ["Ensemble"]


@INTERPRETERS.register("ensemble")
class Ensemble(Interpreter):
    """Weighted mean of the [0, 1]-normalized maps of ``members``.

    ``attribute``/the raw map is Σ_i w_i·g_i(x) / Σ_i w_i with each g_i normalized to [0, 1];
    the map renormalizes it per sample. Members are interpreters or registry names.

    Args:
        members: interpreters (or names, built with default arguments).
        weights: non-negative weight per member (default equal).
    """

    name = "ensemble"
    absolute = False
    empty_channels = 1

    def __init__(
        self,
        members: Sequence[Interpreter | str] = ("grad", "gradcam"),
        *,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member interpreter")
        if isinstance(members, (str, Interpreter)):
            raise TypeError("members must be a sequence of interpreters or names, e.g. ['grad']")
        self.members: list[Interpreter] = [
            INTERPRETERS.create(m) if isinstance(m, str) else m for m in members
        ]
        for m in self.members:
            if not isinstance(m, Interpreter):
                raise TypeError(
                    f"ensemble members must be interpreters or registry names, got {type(m).__name__}"
                )
        if any(isinstance(m, Ensemble) for m in self.members):
            raise ValueError("ensembles cannot be nested")
        w = (
            [1.0] * len(self.members)
            if weights is None
            else [check_float(v, f"weights[{i}]", low=0.0) for i, v in enumerate(weights)]
        )
        if len(w) != len(self.members) or not 0 < sum(w) < float("inf"):
            raise ValueError(
                f"weights must be {len(self.members)} non-negative numbers with a positive sum, got {weights}"
            )
        self.weights = tuple(w)

    @property
    def second_order(self) -> bool:
        return any(m.second_order for m in self.members)

    @property
    def optimized(self) -> bool:
        return any(m.optimized for m in self.members)

    def _combine(self, maps: Callable[[Interpreter], torch.Tensor]) -> torch.Tensor:
        """Σ_i w_i·maps(member_i) / Σ_i w_i over the members with w_i > 0."""
        total = sum(self.weights)
        parts = [
            maps(member) * (w / total)
            for member, w in zip(self.members, self.weights, strict=True)
            if w > 0
        ]
        return torch.stack(parts).sum(0)

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        return self._combine(lambda m: m(model, x, target, create_graph=create_graph))

    def _differentiable_map(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, state: MapState | None
    ) -> torch.Tensor:
        # each member's own differentiable map (a MASK member warm-starts from ``state``)
        return normalize_maps(
            self._combine(lambda m: m.differentiable_map(model, x, target, state=state))
        )

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return attr

    def config(self) -> dict[str, object]:
        return {"members": tuple(m.name for m in self.members), "weights": self.weights}
