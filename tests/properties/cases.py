"""Building blocks of the property tests: tiny models, hostile inputs, the invariants.

Every public entry point, given any input a hypothesis strategy can draw, must either return
a valid result (shape, dtype, device, range, budget, input untouched, model state restored)
or raise one clear exception: a ``ValueError``, ``TypeError`` or ``UnderfireError`` with a
message, never a torch ``RuntimeError`` from deep inside a forward pass.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st
from torch import nn

from underfire.core.errors import UnderfireError

CLEAR_ERRORS = (ValueError, TypeError, UnderfireError)

# Small settings by parameter name: whichever a registered constructor accepts are used, so
# that attacks and interpreters added later are covered without an entry here.
SMALL: dict[str, Any] = {
    "steps": 2,
    "binary_search_steps": 1,
    "restarts": 1,
    "n_seed": 4,
    "rounds": 1,
    "epochs": 1,
    "samples": 2,
    "seed": 0,
}
# Per-name settings on top (an ε that keeps L∞ attacks meaningful on [0, 1]).
PER_NAME: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.1},
    "tgsm": {"eps": 0.1},
    "bim": {"eps": 0.1},
    "pgd": {"eps": 0.1},
    "jsma": {"gamma": 0.5},
    "cw": {"const": 0.5, "lr": 0.05},
    "square": {"eps": 0.1, "n_queries": 5},
    "autoattack": {"eps": 0.1, "n_queries": 5, "n_target_classes": 2},
    "mask": {"steps": 2},
    "adv2": {"interpreter": "grad", "eps": 0.1, "warm_steps": 2, "steps": 2},
}


def small_kwargs(factory: Any, name: str) -> dict[str, Any]:
    """Keyword arguments for ``factory``: the small settings it accepts, then per-name ones."""
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in SMALL.items() if k in params}
    return kwargs | {k: v for k, v in PER_NAME.get(name, {}).items() if k in params}


class TinyNet(nn.Module):
    """conv → BN (the target layer, "features") → ReLU → GAP → FC: any input size, CAM-able."""

    target_layer = "features"

    def __init__(self, channels: int, side: tuple[int, int], classes: int, probs: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, classes)
        )
        self.num_classes = classes
        self.input_shape = (channels, *side)
        self.probs = probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.softmax(1) if self.probs else out


@dataclass
class Case:
    """One drawn situation: a model, a batch, labels, and which flaws were injected."""

    model: TinyNet
    x: torch.Tensor
    y: torch.Tensor
    flaws: list[str]  # what must make the call raise (empty: the call must succeed)
    mixed: bool

    def snapshot(self) -> dict[str, Any]:
        return {
            "modes": [m.training for m in self.model.modules()],
            "flags": [p.requires_grad for p in self.model.parameters()],
            "grads": [p.grad for p in self.model.parameters()],
            "x": self.x.clone(),
            "buffers": [b.clone() for b in self.model.buffers()],
        }

    def assert_restored(self, before: dict[str, Any]) -> None:
        assert [m.training for m in self.model.modules()] == before["modes"], "modes changed"
        assert [p.requires_grad for p in self.model.parameters()] == before["flags"]
        for p, g in zip(self.model.parameters(), before["grads"], strict=True):
            assert p.grad is g, ".grad replaced"
        assert torch.equal(self.x, before["x"]) or (
            self.x.isnan().any() and torch.equal(self.x.nan_to_num(), before["x"].nan_to_num())
        ), "input mutated"
        for b, b0 in zip(self.model.buffers(), before["buffers"], strict=True):
            assert torch.equal(b, b0), "buffers (BN statistics) changed"


@st.composite
def cases(draw: st.DrawFn, *, min_n: int = 0, classes: tuple[int, int] = (1, 4)) -> Case:
    """A tiny model and a batch, with flaws injected now and then."""
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    k = draw(st.integers(*classes))
    n = draw(st.integers(min_n, 3))
    probs = draw(st.booleans()) if k > 1 else False
    model_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = TinyNet(c, (h, w), k, probs).to(model_dtype)
    mixed = draw(st.booleans())
    if mixed:  # a training model with a BN frozen in eval mode, a frozen conv, pending grads
        model.train()
        model.features[1].eval()
        model.features[0].weight.requires_grad_(False)
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.25)
    else:
        model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=gen, dtype=torch.float64).to(model_dtype)
    y = torch.randint(0, k, (n,), generator=gen)
    flaws: list[str] = []
    flaw = draw(
        st.sampled_from(["none"] * 6 + ["nan", "inf", "range", "dtype", "label", "int-x", "3d"])
    )
    if flaw == "nan" and n:
        x[0, 0, 0, 0] = math.nan
        flaws.append(flaw)
    elif flaw == "inf" and n:
        x[-1, -1, -1, -1] = -math.inf
        flaws.append(flaw)
    elif flaw == "range" and n:
        x[0, 0, 0, 0] = draw(st.sampled_from([1.5, -0.25, 255.0]))
        flaws.append(flaw)
    elif flaw == "dtype":
        x = x.to(torch.float32 if model_dtype == torch.float64 else torch.float64)
        flaws.append(flaw)
    elif flaw == "label" and n:
        y[0] = draw(st.sampled_from([k, k + 3, -1]))
        flaws.append(flaw)
    elif flaw == "int-x":
        x = (x * 255).to(torch.uint8)
        flaws.append(flaw)
    elif flaw == "3d" and n:
        x = x[0]
        flaws.append(flaw)
    return Case(model, x, y, flaws, mixed)


def assert_clear(err: BaseException) -> None:
    """One clear exception: a user-facing type with a message."""
    assert isinstance(err, CLEAR_ERRORS) and not isinstance(err, RuntimeError), (
        f"unclear error {type(err).__name__}: {err}"
    )
    assert str(err).strip(), f"{type(err).__name__} without a message"
