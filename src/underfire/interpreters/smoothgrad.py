"""SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg, 2017): average of GRAD maps over
Gaussian-perturbed copies of the input.
"""

from __future__ import annotations

import torch
from torch import nn

from underfire.core.validation import check_float, check_int, check_seed
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    Reduce,
    check_reduce,
    class_scores,
)

__all__ = ["SmoothGrad"]


@INTERPRETERS.register("smoothgrad")
class SmoothGrad(Interpreter):
    """SmoothGrad of the absolute gradient (Smilkov et al. 2017).

    ``attribute`` = mean over ``samples`` noisy copies x + ε, ε ~ N(0, stdev²) (not clipped),
    of |∂f_c/∂x| evaluated at the noisy copy, shape (N, C, H, W). With ``stdev`` the absolute
    standard deviation (Smilkov et al. use 10–20 % of the input range, which is [0, 1] here).

    Noise: drawn as ``torch.normal(0, σ·ones)`` of shape (N·samples, C, H, W) on the expanded
    input ``x.repeat_interleave(samples, 0)``, exactly like Captum's ``NoiseTunnel``, from
    ``generator`` if given, else the global RNG (so a seeded run matches Captum's
    ``NoiseTunnel(Saliency).attribute(nt_type="smoothgrad")`` under the same seed).
    Pass ``seed`` for calls that are reproducible on their own.

    Args:
        samples: number of noisy copies per image.
        stdev: noise standard deviation (absolute, inputs in [0, 1]).
        batch_size: noisy copies evaluated per forward pass (None: all at once).
        seed: if set, a fresh generator seeded with it is used on every call.
        reduce: channel reduction for the map.
    """

    name = "smoothgrad"
    _second_order = True

    def __init__(
        self,
        *,
        samples: int = 25,
        stdev: float = 0.15,
        batch_size: int | None = None,
        seed: int | None = None,
        reduce: Reduce = "max",
    ) -> None:
        self.samples = check_int(samples, "samples")
        # σ is on the [0, 1] input scale (Smilkov et al.: 10–20 % of the range, i.e. 0.1–0.2)
        self.stdev = check_float(stdev, "stdev", low=0.0, high=1.0)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        self.seed = check_seed(seed)
        self.reduce = check_reduce(reduce)

    def _noise(self, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=x.device)
            gen.manual_seed(self.seed)
        std = torch.full(shape, self.stdev, device=x.device, dtype=x.dtype)
        return torch.normal(0.0, std, generator=gen)

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        n, s = x.shape[0], self.samples
        xs = x if create_graph and x.requires_grad else x.detach()
        expanded = xs.repeat_interleave(s, dim=0)
        noisy = expanded + self._noise(tuple(expanded.shape), x)
        if not (create_graph and x.requires_grad):
            noisy = noisy.detach().requires_grad_(True)
        t = target.repeat_interleave(s)
        chunk = self.batch_size or noisy.shape[0]
        grads = []
        for i in range(0, noisy.shape[0], chunk):
            part = noisy[i : i + chunk]
            scores = class_scores(model(part), t[i : i + chunk])
            grads.append(torch.autograd.grad(scores.sum(), part, create_graph=create_graph)[0])
        grad = torch.cat(grads) if len(grads) > 1 else grads[0]
        return grad.abs().view(n, s, *x.shape[1:]).mean(dim=1)
