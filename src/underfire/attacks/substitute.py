"""Black-box attack through a substitute model (Papernot, McDaniel, Goodfellow, Jha, Celik &
Swami, AsiaCCS 2017, "Practical Black-Box Attacks against Machine Learning").

The adversary sees only the victim's labels (the oracle Õ). Starting from a small seed set
S₀, for each substitute epoch ρ: label S_ρ with the oracle (new points only), train the
substitute F on S_ρ, then grow the set by Jacobian-based dataset augmentation

    S_{ρ+1} = S_ρ ∪ {x + λ_ρ·sign(∂F_{Õ(x)}(x)/∂x) : x ∈ S_ρ},   λ_ρ = λ·(−1)^⌊ρ/τ⌋,

where F_c is the substitute's softmax probability of class c. Adversarial examples are
crafted white-box against the substitute (FGSM by default) and transferred to the victim.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import ATTACKS, Attack, num_classes_of
from underfire.attacks.fgsm import FGSM
from underfire.core.forward import checked_forward
from underfire.core.state import freeze, model_state
from underfire.core.validation import (
    check_float,
    check_images,
    check_int,
    check_positive,
    check_same_device,
    check_seed,
)

__all__ = ["SubstituteAttack", "default_substitute"]


def default_substitute(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small CNN in the spirit of Papernot et al.'s substitutes (two convs, one hidden FC)."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2) if min(h, w) >= 8 else nn.Identity(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 200),
        nn.ReLU(),
        nn.Linear(200, num_classes),
    )


@ATTACKS.register("substitute")
class SubstituteAttack(Attack):
    """Papernot et al. (2017) black-box attack: a substitute trained on the victim's labels.

    Args:
        attack: white-box attack run on the substitute (default ``FGSM(eps=0.3)``); its ε
            and norm bound the result.
        substitute: factory ``(input_shape, num_classes) -> nn.Module`` (default
            :func:`default_substitute`), taking [0, 1] inputs.
        n_seed: size of the initial set S₀ (150 in the paper, taken from the attacked batch
            unless :meth:`fit` was called with other data).
        rounds: substitute epochs ρ (the paper uses 6).
        lam: λ, the augmentation step (0.1 in the paper).
        tau: sign-flip period τ of λ (None: no flipping).
        epochs: training epochs of the substitute per round.
        batch_size, lr: substitute training (Adam).
        seed: seeds the substitute's initialization and shuffling (the global RNG is left alone).

    The substitute is fitted once per victim: by :meth:`fit`, or on the first ``n_seed``
    images of the first batch attacked (the adversary's own inputs); later calls against
    the same victim reuse it, so an ε sweep trains it once.

    Attributes (after fitting):
        substitute_: the trained substitute. queries: oracle queries spent on labeling
        (|S_ρ| for the final ρ). agreement: fraction of the last set on which the substitute
        agrees with the oracle.
    """

    name = "substitute"
    deterministic = False  # the substitute depends on the batch it was fitted on

    def __init__(
        self,
        *,
        attack: Attack | None = None,
        substitute: Callable[[tuple[int, ...], int], nn.Module] | None = None,
        n_seed: int = 150,
        rounds: int = 6,
        lam: float = 0.1,
        tau: int | None = None,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        seed: int | None = 0,
    ) -> None:
        if attack is not None and not isinstance(attack, Attack):
            raise TypeError(f"attack must be an underfire Attack, got {type(attack).__name__}")
        self.attack = attack if attack is not None else FGSM(eps=0.3)
        if substitute is not None and not callable(substitute):
            raise TypeError(
                "substitute must be a factory (input_shape, num_classes) -> nn.Module, got "
                f"{type(substitute).__name__}"
            )
        self.substitute = substitute or default_substitute
        self.n_seed = check_int(n_seed, "n_seed", minimum=2)
        self.rounds = check_int(rounds, "rounds")
        # λ is a step on the [0, 1] input scale: above 1 every augmented point is a corner
        self.lam = check_float(lam, "lam", low=0.0, high=1.0, low_inclusive=False)
        self.tau = None if tau is None else check_int(tau, "tau")
        self.epochs = check_int(epochs, "epochs")
        self.batch_size = check_int(batch_size, "batch_size")
        self.lr = check_positive(lr, "lr")
        self.seed = check_seed(seed)
        self.substitute_: nn.Module | None = None
        self.queries = 0
        self.agreement = float("nan")
        self._victim_id: int | None = None

    @property
    def eps(self) -> float | None:
        return self.attack.eps

    @eps.setter
    def eps(self, value: float | None) -> None:
        if value is not None:
            self.attack = self.attack.with_eps(value)

    @property
    def norm(self) -> str | None:
        return self.attack.norm

    @norm.setter
    def norm(self, value: str | None) -> None:
        if value != self.attack.norm:
            raise AttributeError(
                "SubstituteAttack's norm is its inner attack's; build the inner attack with it"
            )

    @torch.no_grad()
    def _oracle(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, x.shape[0], 512)])

    def fit(self, model: nn.Module, x_seed: torch.Tensor) -> SubstituteAttack:
        """Train the substitute against ``model`` (queried for labels only) from ``x_seed``."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_images(x_seed, "x_seed")
        check_same_device(model, x_seed)
        if x_seed.shape[0] == 0:
            raise ValueError("x_seed is empty; the substitute needs at least one seed image")
        with (
            model_state(model),
            checked_forward(model, min_classes=2, who="SubstituteAttack"),
        ):
            self._fit(model, x_seed.detach()[: self.n_seed])
        return self

    def _fit(self, model: nn.Module, s: torch.Tensor) -> None:
        k = num_classes_of(model, s)
        device = s.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            sub = self.substitute(tuple(s.shape[1:]), k).to(device=device, dtype=s.dtype)
            labels = self._oracle(model, s)
            queries = s.shape[0]
            opt = torch.optim.Adam(sub.parameters(), lr=self.lr)
            for rho in range(self.rounds):
                sub.train()
                for _ in range(self.epochs):
                    order = torch.randperm(s.shape[0], device="cpu").to(device)
                    for i in range(0, s.shape[0], self.batch_size):
                        idx = order[i : i + self.batch_size]
                        loss = F.cross_entropy(sub(s[idx]), labels[idx])
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                if rho == self.rounds - 1:
                    break
                sub.eval()
                lam = self.lam * (-1) ** (rho // self.tau) if self.tau else self.lam
                xs = s.clone().requires_grad_(True)
                prob = F.softmax(sub(xs), dim=1).gather(1, labels[:, None]).sum()
                (jac,) = torch.autograd.grad(prob, xs)
                new = (s + lam * jac.sign()).clamp(0.0, 1.0)
                new_labels = self._oracle(model, new)
                queries += new.shape[0]
                s, labels = torch.cat([s, new]), torch.cat([labels, new_labels])
            sub.eval()
            freeze(sub)  # for good: the substitute is only attacked from now on
            with torch.no_grad():
                self.agreement = float((sub(s).argmax(1) == labels).float().mean())
        self.substitute_ = sub
        self.queries = queries
        self._victim_id = id(model)

    def _sweep(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        target: torch.Tensor | str | None,
    ) -> Iterator[torch.Tensor]:
        """Fit the substitute once, then sweep the inner attack's ε on it."""
        if self.substitute_ is None or self._victim_id != id(model):
            self.fit(model, x)
        assert self.substitute_ is not None
        yield from self.attack.sweep(self.substitute_, x, y, eps, target)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if self.substitute_ is None or self._victim_id != id(model):
            self._fit(model, x[: self.n_seed])
        assert self.substitute_ is not None
        return self.attack(self.substitute_, x, y, target)
