"""MASK: meaningful perturbation (Fong & Vedaldi, "Interpretable Explanations of Black Boxes by
Meaningful Perturbation", ICCV 2017), optimized for a whole batch at once.

The deletion game: for each image x and class c, find a coarse keep-mask m ∈ [0,1]^{s×s}
(1 = keep the pixel, 0 = replace it by the blurred image) minimizing

    E_τ[p_c(Φ(x(· − τ), M))] + λ₁·‖1 − m‖₁ + λ₂·Σ_u ‖∇m(u)‖_β^β,
    Φ(x, M) = x ⊙ M + blur_σ(x) ⊙ (1 − M),       M = blur_σm(upsample(m)),

with p_c the softmax probability of c, the expectation over random jitter τ (the *image* is
shifted under the fixed mask, as in the paper, at every input size), ‖·‖₁ and the TV sum taken
per element of the coarse mask (the paper's form), Adam (lr 0.1) and a projection onto
[0, 1] after each step. The explanation is the deleted region 1 − M.

Choices where the paper leaves room (measured, see docs/interpreters.md):

* **Weights.** The paper's λ₁ = 1e-4 and λ₂ = 1e-2 are per element of a 28×28 mask (784
  elements). On the small masks of small inputs (4×4 on 8×8 digits) the same per-element λ₁
  makes deleting everything almost free (16·1e-4), so both weights are rescaled by (28/s)²:
  deleting the *whole* image then costs the same at any mask size (``scale_weights=False``
  gives the literal per-element weights). The default λ₁ is 4e-4, 4× the paper's: with 1e-4,
  4 of 8 demo digits end with (nearly) everything deleted, a constant map; with 4e-4 none do
  and the maps localize (deleted area 0.66 vs 0.89). MNIST: 8 of 10 found either way (the 2
  others have a blurred reference still classified as c).
* **Start.** m₀ = 0 (everything deleted), not 1: at m = 1 the softmax of a confident prediction
  is saturated (|∂p_c/∂m| ~ 1e-5), the L1 term holds the mask at 1 and the map is constant;
  from 0, p_c starts at the blurred reference's, where it is not saturated.
* **Sizes.** Coarse side min(28, max(4, H // 4)) (28 at 224, 7 at 28, 4 at 8); reference blur
  σ = max(1.5, H / 22) (≈ 10 at 224, the paper's); mask blur σ_m = (H / s) / 4 (a quarter of
  the upsampling factor: 2 at 224, 0.5 at 8); jitter up to H / 56 pixels per axis (4 at 224 as
  in the paper, 0.14 at 8: sub-pixel shifts by bilinear interpolation), replicate padding at
  the border.

A map that did not find a deletion (p_c not dropped by ``min_drop``, the blurred reference
already classified as c, or a nearly constant map: max − min of 1 − M below ``min_deletion``)
raises a
:class:`MaskWarning`; :attr:`Mask.last_result` (a :class:`MaskResult`) holds the per-sample
flag and numbers, and the normalized map of such a sample is all zeros, not stretched noise.

Batching: the batch objective is the *sum* of the per-image objectives and Adam acts
elementwise, so every image's mask follows exactly the trajectory it would follow alone (the
jitter shifts are drawn from ``seed`` and shared by the batch); only floating-point summation
order differs.

API for attacks (ADV², bi-level): :meth:`Interpreter.differentiable_map` with a
:class:`~underfire.interpreters.base.MapState` warm-starts the mask from the previous step and
unrolls a few differentiable steps. Below it, :meth:`Mask.optimize` returns the coarse masks
after some steps from a given start, optionally unrolled differentiably (``create_graph=True``:
the result is a differentiable function of ``x`` through every step), and
:meth:`Mask.mask_to_map` turns coarse masks into maps.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.validation import check_float, check_int, check_positive
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    MapState,
    class_scores,
    normalize_maps,
)
from underfire.interpreters.mask_ops import (
    default_mask_size,
    gaussian_blur,
    perturb,
    shift_images,
    total_variation,
    upsample_operator,
)
from underfire.interpreters.mask_reference import (
    PERTURBATIONS,
    Perturbation,
    choose_perturbations,
    reference_images,
)
from underfire.interpreters.mask_result import MaskResult, MaskWarning

__all__ = [
    "Mask",
    "MaskResult",
    "MaskWarning",
    "default_mask_size",
    "gaussian_blur",
    "perturb",
    "shift_images",
    "total_variation",
    "upsample_operator",
]

PAPER_MASK_ELEMENTS = 28 * 28  # the paper's coarse mask, where λ₁ = 1e-4 and λ₂ = 1e-2 apply


@INTERPRETERS.register("mask")
class Mask(Interpreter):
    """Meaningful-perturbation MASK interpreter (Fong & Vedaldi 2017), batched.

    ``attribute`` returns the deleted region 1 − M, (N, 1, H, W) in [0, 1]; the map is its
    per-sample min–max normalization, all zeros for a sample where no deletion was found
    (a :class:`MaskWarning` is raised; :attr:`last_result` has the per-sample flags).
    :meth:`optimize` exposes the coarse masks with a warm start and an optionally
    differentiable unrolling (for the bi-level ADV² attack).

    Args:
        steps: optimizer iterations (paper: 300), ≥ 1.
        lr: Adam learning rate (paper: 0.1).
        l1: λ₁, per element of ‖1 − m‖₁ on a 28×28 mask (paper: 1e-4; default 4e-4, see above).
        tv: λ₂, per element of the TV_β sum on a 28×28 mask (paper: 1e-2).
        tv_beta: β of the TV term (paper: 3).
        scale_weights: rescale λ₁, λ₂ by 784 / s² for an s×s mask, so deleting the whole image
            costs what it costs in the paper at any mask size; False: λ₁, λ₂ per element as given.
        mask_size: coarse mask side (None: :func:`default_mask_size`).
        blur_sigma: σ of the blurred reference (None: max(1.5, H/22)).
        mask_blur: σ_m of the blur of the upsampled mask (None: upsampling factor / 4).
        jitter: maximum shift |τ| in pixels (per axis, may be fractional) of the image per step
            (None: H / 56: 4 at 224 as in the paper, 0.5 at 28, 0.14 at 8).
        init: initial mask value (0 = everything deleted; 1 = nothing, stuck when p_c saturates).
        score: "prob" (softmax probability, the paper) or "logit".
        min_drop: a deletion is found when p_c drops by at least this much.
        min_deletion: ... and max − min of 1 − M is ≥ this (not a constant map).
        perturbation: what a deletion blends towards (Fong & Vedaldi §3.2): "blur", "constant"
            (the mean colour), "noise", or "auto" (default): blur, and for an image whose
            blurred version is still classified as the class, the constant, then the noise
            reference (:mod:`underfire.interpreters.mask_reference`); ``last_result`` says which.
        seed: seed of the jitter shifts and of the noise reference (same seed → same masks).
    """

    name = "mask"
    absolute = False
    _second_order = True
    _optimized = True

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.1,
        l1: float = 4e-4,
        tv: float = 1e-2,
        tv_beta: float = 3.0,
        scale_weights: bool = True,
        mask_size: int | None = None,
        blur_sigma: float | None = None,
        mask_blur: float | None = None,
        jitter: float | None = None,
        init: float = 0.0,
        score: Literal["prob", "logit"] = "prob",
        min_drop: float = 0.1,
        min_deletion: float = 0.1,
        perturbation: Perturbation = "auto",
        seed: int = 0,
    ) -> None:
        self.steps = check_int(steps, "steps", minimum=1)
        self.lr = check_positive(lr, "lr")
        self.l1 = check_positive(l1, "l1", allow_zero=True)
        self.tv = check_positive(tv, "tv", allow_zero=True)
        self.tv_beta = check_float(tv_beta, "tv_beta", low=1.0)
        if not isinstance(scale_weights, bool):
            raise TypeError(f"scale_weights must be a bool, got {type(scale_weights).__name__}")
        self.scale_weights = scale_weights
        self.mask_size = None if mask_size is None else check_int(mask_size, "mask_size")
        self.blur_sigma = (
            None
            if blur_sigma is None
            else check_positive(blur_sigma, "blur_sigma", allow_zero=True)
        )
        self.mask_blur = (
            None if mask_blur is None else check_positive(mask_blur, "mask_blur", allow_zero=True)
        )
        self.jitter = None if jitter is None else check_positive(jitter, "jitter", allow_zero=True)
        self.init = check_float(init, "init", low=0.0, high=1.0)
        if score not in ("prob", "logit"):
            raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
        self.score = score
        self.min_drop = check_float(min_drop, "min_drop", low=0.0, high=1.0)
        self.min_deletion = check_float(min_deletion, "min_deletion", low=0.0, high=1.0)
        if perturbation not in ("auto", *PERTURBATIONS):
            raise ValueError(
                f"perturbation must be one of {('auto', *PERTURBATIONS)}, got {perturbation!r}"
            )
        self.perturbation = perturbation
        self.seed = check_int(seed, "seed", minimum=0)
        self.last_result: MaskResult | None = None

    @classmethod
    def authors(cls, image_size: int, *, steps: int = 300, seed: int = 0) -> Mask:
        """MASK as ADV²'s authors ran it (alps-lab/adv2: ``rev2/cifar10/mask_generator.py``
        with the CIFAR-10 script's arguments; ``expr_attacks/mask_model.py`` for ImageNet):
        Adam from a mask of 0.5; on 32×32 images an 8×8 mask, lr 0.05, λ₁ 1e-3 and λ₂ 0.1
        per element of the coarse mask, reference blur σ 1.1, mask blur σ 0.8; from 128 px a
        28×28 mask, lr 0.1, λ₁ 1e-4, λ₂ 1e-2, σ 3.5 and 2.0 (OpenCV's σ for their kernels of 5,
        3, 21 and 11 pixels). Below 32 px (they ran no digits) underfire's defaults.
        ``perturbation`` stays "auto" (theirs is the blur alone)."""
        if image_size >= 128:
            weights = dict(mask_size=28, lr=0.1, l1=1e-4, tv=1e-2, blur_sigma=3.5, mask_blur=2.0)
        elif image_size >= 32:
            weights = dict(mask_size=8, lr=0.05, l1=1e-3, tv=0.1, blur_sigma=1.1, mask_blur=0.8)
        else:
            return cls(steps=steps, seed=seed)
        return cls(steps=steps, init=0.5, scale_weights=False, seed=seed, **weights)  # type: ignore[arg-type]

    # -- sizes adapted to the input -------------------------------------------------------
    def sizes(self, x: torch.Tensor) -> tuple[int, float, float]:
        """(coarse mask side, reference blur σ, jitter) for inputs like ``x``."""
        side = min(x.shape[-2:])
        size = min(self.mask_size or default_mask_size(side), side)
        sigma = self.blur_sigma if self.blur_sigma is not None else max(1.5, side / 22)
        jitter = self.jitter if self.jitter is not None else side / 56
        return size, sigma, jitter

    def choose(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per image, the perturbation used (indices into :data:`PERTURBATIONS`): the one
        given, or with "auto" the first whose reference the model does not classify as
        ``target``."""
        candidates = PERTURBATIONS if self.perturbation == "auto" else (self.perturbation,)
        _, sigma, _ = self.sizes(x)
        return choose_perturbations(model, x.detach(), target, candidates, sigma, self.seed)

    def reference(self, x: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """The reference images of ``x`` for the perturbations ``kinds`` (differentiable)."""
        _, sigma, _ = self.sizes(x)
        return reference_images(x, kinds, sigma, self.seed)

    def mask_sigma(self, x_size: tuple[int, int], size: int) -> float:
        """σ_m of the blur of the upsampled mask (default: a quarter of the upsampling factor)."""
        if self.mask_blur is not None:
            return self.mask_blur
        factor = min(x_size) / size
        return factor / 4 if factor > 1 else 0.0

    def weights(self, size: int) -> tuple[float, float]:
        """(λ₁, λ₂) per element of an s×s mask."""
        scale = PAPER_MASK_ELEMENTS / (size * size) if self.scale_weights else 1.0
        return self.l1 * scale, self.tv * scale

    def operators(
        self, size: int, x_size: tuple[int, int], dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_H, A_W): M = A_H m A_Wᵀ upsamples and blurs an s×s mask to H×W."""
        sigma = self.mask_sigma(x_size, size)
        a_h = upsample_operator(size, x_size[0], sigma, dtype=dtype, device=device)
        a_w = upsample_operator(size, x_size[1], sigma, dtype=dtype, device=device)
        return a_h, a_w

    def upsample(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Coarse keep-masks (N, 1, s, s) → M (N, 1, H, W): bilinear upsampling, then blur σ_m."""
        a_h, a_w = self.operators(mask.shape[-1], size, mask.dtype, mask.device)
        return a_h @ mask @ a_w.T

    def mask_to_map(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Coarse keep-masks (N, 1, s, s) → deleted region 1 − M, (N, 1, H, W) in [0, 1]
        (differentiable; not normalized)."""
        return 1 - self.upsample(mask, (size[0], size[1]))

    def objective(
        self,
        model: nn.Module,
        x: torch.Tensor,
        reference: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor,
        shift: tuple[float, float] = (0.0, 0.0),
    ) -> torch.Tensor:
        """Per-image deletion objective (N,) of coarse masks ``mask`` (N, 1, s, s), with the
        images shifted by ``shift`` under the fixed mask (a convenience; :meth:`optimize`
        inlines the same computation with precomputed operators)."""
        size = mask.shape[-1]
        a_h, a_w = self.operators(size, (x.shape[-2], x.shape[-1]), x.dtype, x.device)
        pad = math.ceil(max(abs(shift[0]), abs(shift[1]))) + 1
        xp = F.pad(torch.cat([x, reference], 1), (pad,) * 4, mode="replicate")
        win = shift_images(xp, pad, shift, (x.shape[-2], x.shape[-1]))
        c = x.shape[1]
        return self._objective(model, win[:, :c], win[:, c:], mask, a_h, a_w, target, size)

    def _objective(self, model, xs, ref, mask, a_h, a_w, target, size) -> torch.Tensor:
        up = a_h @ mask @ a_w.T
        logits = model(ref + (xs - ref) * up)
        if self.score == "prob":
            score = class_scores(logits.log_softmax(dim=1), target).exp()
        else:
            score = class_scores(logits, target)
        l1, tv = self.weights(size)
        return (
            score
            + l1 * (1 - mask).abs().flatten(1).sum(1)
            + tv * total_variation(mask, self.tv_beta)
        )

    def shifts(self, steps: int, jitter: float) -> list[tuple[float, float]]:
        """The jitter shifts τ of each step, drawn from ``seed`` (CPU generator: same on every
        device), uniform in [−jitter, jitter]², shared by the batch."""
        if jitter <= 0 or steps == 0:
            return [(0.0, 0.0)] * steps
        gen = torch.Generator().manual_seed(self.seed)
        draws = (torch.rand(steps, 2, generator=gen, dtype=torch.float64) * 2 - 1) * jitter
        return [(float(a), float(b)) for a, b in draws.tolist()]

    def optimize(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        init: torch.Tensor | None = None,
        steps: int | None = None,
        create_graph: bool = False,
        optimizer: Literal["adam", "sgd"] = "adam",
        sgd_lr: float | None = None,
        kinds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the mask optimization; returns coarse keep-masks (N, 1, s, s) in [0, 1].

        Called directly (e.g. by attacks) the caller is responsible for eval mode and for
        validating inputs; the model's parameters are not differentiated (only ``torch.autograd.grad``
        w.r.t. the mask, and w.r.t. ``x`` by the caller).

        Args:
            model: classifier (eval mode) returning logits.
            x: (N, C, H, W) images in [0, 1].
            target: (N,) classes.
            init: warm-start masks (N, 1, s, s); None: a constant ``self.init``. Each call
                starts a fresh optimizer state (Adam moments at zero).
            steps: number of optimizer steps (default ``self.steps``; 0 returns ``init``).
            create_graph: unroll the steps differentiably: the result is a differentiable
                function of ``x`` (and of ``init``) through every step. Use few steps: memory
                grows linearly with them.
            optimizer: "adam" (the interpreter's own steps, so a detached and an unrolled
                run agree) or "sgd": m ← clamp(m − sgd_lr·g, 0, 1), whose derivative w.r.t.
                x is −sgd_lr·∂g/∂x (the usual choice for unrolled inner loops). Adam's step
                g/√v is scale-invariant: its derivative w.r.t. x is ≈ 0 where |g| ≫ 1e-8 on
                the first step and very large where |g| ~ 1e-8, a poorly conditioned signal.
            sgd_lr: step size for ``optimizer="sgd"`` (default ``self.lr``).
            kinds: per image, the perturbation (:meth:`choose`; default: chosen here).
        """
        steps = self.steps if steps is None else check_int(steps, "steps", minimum=0)
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        sgd_step = self.lr if sgd_lr is None else check_positive(sgd_lr, "sgd_lr")
        size, _, jitter = self.sizes(x)
        n, c, h, w = x.shape
        xs = x if create_graph else x.detach()
        if kinds is None:
            kinds = self.choose(model, xs, target)
        reference = self.reference(xs, kinds)
        if init is None:
            m = torch.full((n, 1, size, size), self.init, device=x.device, dtype=x.dtype)
        else:
            if tuple(init.shape) != (n, 1, size, size):
                raise ValueError(
                    f"init must have shape {(n, 1, size, size)} (coarse masks for these inputs), "
                    f"got {tuple(init.shape)}"
                )
            m = init if create_graph else init.detach()
        if steps == 0:
            return m
        a_h, a_w = self.operators(size, (h, w), x.dtype, x.device)
        shifts = self.shifts(steps, jitter)
        pad = math.ceil(max(max(abs(a), abs(b)) for a, b in shifts)) + 1
        # Image and reference padded once (replicate), each step a shifted window: the image
        # moves under the fixed mask, Φ(x(· − τ), M).
        both = torch.cat([xs, reference], 1)
        padded = F.pad(both, (pad,) * 4, mode="replicate")
        # Adam written out (elementwise, as torch.optim.Adam) so that the same code runs
        # detached or unrolled with create_graph; sqrt(v̂ + 1e-24) keeps the unrolled graph
        # finite where g = 0.
        b1, b2, eps = 0.9, 0.999, 1e-8
        mom = torch.zeros_like(m)
        vel = torch.zeros_like(m)
        for t in range(1, steps + 1):
            m_in = m if create_graph and m.requires_grad else m.detach().requires_grad_(True)
            win = shift_images(padded, pad, shifts[t - 1], (h, w))
            with torch.enable_grad():
                loss = self._objective(
                    model, win[:, :c], win[:, c:], m_in, a_h, a_w, target, size
                ).sum()
                (g,) = torch.autograd.grad(loss, m_in, create_graph=create_graph)
            if optimizer == "sgd":
                m = (m_in - sgd_step * g).clamp(0, 1)
            elif create_graph:
                mom = b1 * mom + (1 - b1) * g
                vel = b2 * vel + (1 - b2) * g * g
                step = (mom / (1 - b1**t)) / (torch.sqrt(vel / (1 - b2**t) + 1e-24) + eps)
                m = (m_in - self.lr * step).clamp(0, 1)
            else:
                with torch.no_grad():
                    mom.mul_(b1).add_(g, alpha=1 - b1)
                    vel.mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (vel / (1 - b2**t)).add_(1e-24).sqrt_().add_(eps)
                    m = (m_in.detach() - (self.lr / (1 - b1**t)) * mom / denom).clamp_(0, 1)
        return m

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        kinds: torch.Tensor | None = None,
    ) -> MaskResult:
        """The per-sample record of coarse masks ``mask`` for (x, target) (no gradients);
        ``kinds``: the perturbations the masks were optimized with (default: :meth:`choose`)."""
        with torch.no_grad():
            x = x.detach()
            m = mask.detach()
            kinds = self.choose(model, x, target) if kinds is None else kinds
            reference = self.reference(x, kinds)
            keep = self.upsample(m, (x.shape[-2], x.shape[-1]))
            logits = model(torch.cat([x, reference + (x - reference) * keep, reference]))
            probs = logits.softmax(dim=1).view(3, x.shape[0], -1)
            t = target.view(1, -1, 1).expand(3, -1, 1)
            p_before, p_after, p_ref = probs.gather(2, t).squeeze(2)
            ref_is_target = probs[2].argmax(dim=1) == target
            deleted = (1 - keep).flatten(1)
            deletion = deleted.amax(dim=1)
            contrast = deletion - deleted.amin(dim=1)
            found = (
                (p_before - p_after >= self.min_drop)
                & ~ref_is_target
                & (contrast >= self.min_deletion)
            )
        return MaskResult(
            mask=m,
            found=found,
            p_c_before=p_before,
            p_c_after=p_after,
            p_c_reference=p_ref,
            reference_is_target=ref_is_target,
            deletion=deletion,
            contrast=contrast,
            area=deleted.mean(dim=1),
            perturbation=kinds.detach().clone(),
            tried=PERTURBATIONS if self.perturbation == "auto" else (self.perturbation,),
        )

    def explain(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
    ) -> MaskResult:
        """Optimize the masks and return the per-sample :class:`MaskResult` (also stored in
        :attr:`last_result`; warns with :class:`MaskWarning` where no deletion was found)."""
        with self._guard(model, x, target) as (x_in, t):
            m, kinds = self.solve(model, x_in, t)
            return self._record(model, x_in, t, m, kinds)

    def solve(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse masks and the perturbation of each image (:meth:`choose`, then
        :meth:`optimize`). With ``perturbation="auto"`` (and no graph to keep), an image for
        which no deletion was found is solved again with each later perturbation in turn, and
        the first that finds one is kept: a reference far from the class can still leave
        nothing to localize (the whole image deleted, a constant map)."""
        kinds = self.choose(model, x, target)
        m = self.optimize(model, x, target, create_graph=create_graph, kinds=kinds)
        if self.perturbation != "auto" or create_graph:
            return m, kinds
        found = self.evaluate(model, x, target, m, kinds).found
        for code in range(1, len(PERTURBATIONS)):
            retry = (~found & (kinds < code)).nonzero().flatten()
            if retry.numel() == 0:
                break
            k = torch.full_like(retry, code)
            m_k = self.optimize(model, x[retry], target[retry], kinds=k)
            ok = self.evaluate(model, x[retry], target[retry], m_k, k).found
            m[retry[ok]], kinds[retry[ok]], found[retry[ok]] = m_k[ok], code, True
        return m, kinds

    def _record(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        m: torch.Tensor,
        kinds: torch.Tensor,
    ) -> MaskResult:
        result = self.evaluate(model, x, target, m, kinds)
        self.last_result = result
        failed = (~result.found).nonzero().flatten().tolist()
        if failed:
            reasons = result.reasons(self.min_drop, self.min_deletion)
            shown = "; ".join(f"#{i}: {reasons[i]}" for i in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            warnings.warn(
                f"MASK found no deletion for {len(failed)} of {len(result.found)} images — "
                f"{shown}{more}. Their normalized maps are all zeros; see Mask.last_result. "
                "Try more steps, a larger mask_size or blur_sigma.",
                MaskWarning,
                stacklevel=3,
            )
        return result

    def _map(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        raw: bool = False,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """Maps (N, 1, H, W): the deleted region 1 − M, normalized per sample unless ``raw``;
        all zeros (normalized) where no deletion was found (see :attr:`last_result`)."""
        m, kinds = self.solve(model, x, target, create_graph=create_graph)
        result = self._record(model, x, target, m, kinds)
        maps = self.mask_to_map(m, (x.shape[-2], x.shape[-1]))
        if not raw:
            keep = result.found.to(maps.dtype).view(-1, 1, 1, 1)
            maps = normalize_maps(maps) * keep
        return maps

    def _differentiable_map(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, state: MapState | None
    ) -> torch.Tensor:
        """With a :class:`MapState` (bi-level attacks), the running mask estimate m*(x) is
        refined by ``state.unroll`` unrolled plain gradient steps, and MASK is re-run in full
        every ``state.reset`` steps (the unrolled steps only track the estimate). Plain steps,
        not Adam: Adam's first step from fresh moments is ≈ lr·sign(g), whose derivative
        w.r.t. x vanishes, so unrolled Adam would carry almost no gradient."""
        if state is None:
            return super()._differentiable_map(model, x, target, state)
        est, kinds = state.slots.get(id(self), (None, None))
        if est is None or est.shape[0] != x.shape[0] or state.step % state.reset == 0:
            kinds = self.choose(model, x, target)
            est = self.optimize(model, x.detach(), target, kinds=kinds)
        m = self.optimize(
            model,
            x,
            target,
            init=est.detach(),
            steps=state.unroll,
            create_graph=True,
            optimizer="sgd",
            sgd_lr=state.lr,
            kinds=kinds,
        )
        state.slots[id(self)] = (m.detach(), kinds)
        return normalize_maps(self.mask_to_map(m, (x.shape[-2], x.shape[-1])))

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        m, kinds = self.solve(model, x, target, create_graph=create_graph)
        self._record(model, x, target, m, kinds)
        return self.mask_to_map(m, (x.shape[-2], x.shape[-1]))

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return attr

    def config(self) -> dict[str, object]:
        cfg = super().config()
        cfg.pop("last_result", None)
        return cfg
