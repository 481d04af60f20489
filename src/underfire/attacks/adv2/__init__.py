"""ADV²: fool a classifier and its interpreter at once (Zhang, Wang, Shen, Ji, Luo & Wang,
"Interpretable Deep Learning under Fire", USENIX Security 2020).

An interpretable deep learning system is a classifier f plus an interpreter g. ADV² looks for
x in the L∞ ball of radius ε around x₀ with f(x) = t and g(x; f) ≈ m_t:

    minimize  ℓ_prd(f(x), t) + λ·ℓ_int(g(x; f), m_t)    subject to ‖x − x₀‖∞ ≤ ε,

with ℓ_prd the cross-entropy to a label-smoothed target (mass ``label_smoothing`` on t, the
rest spread evenly; smoothing keeps the prediction term from saturating), ℓ_int the squared
distance between the [0, 1]-normalized maps (summed over pixels, "sse", for GRAD as in the
authors' code; averaged, "mse", for CAM), and λ scheduled over stages. The search is signed
gradient descent with step ``step_size`` from a targeted PGD warm start; per sample the attack
keeps the iterate that reaches t with confidence ≥ κ and the smallest map distance.

Interpreters (anything registered in :mod:`underfire.interpreters`):

* GRAD, SmoothGrad, integrated gradients, Grad-CAM: the map is a gradient, so ℓ_int needs
  second derivatives, which are zero through ReLU; the model's ReLU modules are swapped for
  :class:`~underfire.core.autograd.SmoothReLU` (exact forward, smooth backward) while the
  attack differentiates (no model copy). Candidates are judged on the true map.
* CAM, RTS: the map is a forward computation, differentiated directly. RTS attacks may add a
  term on the RTS encoder's own prediction (``encoder=``); underfire's RTS uses the
  classifier itself as encoder, where that term is ℓ_prd again.
* MASK: bi-level. The mask estimate m*(x) is carried across iterations in a
  :class:`~underfire.interpreters.base.MapState` and x is updated through ``mask_unroll``
  unrolled, differentiable mask steps; every ``mask_reset`` iterations MASK is re-run from
  scratch (the interpreter's side of it: :meth:`Mask._differentiable_map`).
* :class:`~underfire.interpreters.Ensemble`: the weighted mean of its members' maps, each
  member handled as above.

ADV² asks every interpreter for its map the same way,
:meth:`~underfire.interpreters.Interpreter.differentiable_map`; which ones need the smooth ReLU
and which preset family applies come from the interpreter (``second_order``, ``optimized``).

>>> attack = ADV2("grad", preset="small")
>>> x_adv = attack(model, x, y, target="next")
>>> attack.result.summary()     # success rate, confidence, map L1 and top-k IoU to m_t
>>> report = evaluate_adv2(attack, model, data, target="next")   # a dataset, by batches

Modules: :mod:`.attack` (the class), :mod:`.presets` (settings, λ schedule), :mod:`.losses`
(objective, model patches), :mod:`.result` (per-call record), :mod:`.evaluate` (datasets,
the figure).
"""

from __future__ import annotations

from underfire.attacks.adv2.attack import ADV2
from underfire.attacks.adv2.evaluate import ADV2Evaluation, adv2_figure, evaluate_adv2
from underfire.attacks.adv2.losses import (
    affine_batch_norm,
    attack_patches,
    joint_loss_gradient,
    judge_map,
    map_distance,
    smoothed_cross_entropy,
)
from underfire.attacks.adv2.presets import PRESETS, Distance, Keep, Schedule, preset_for_size
from underfire.attacks.adv2.result import ADV2Result

__all__ = [
    "ADV2",
    "PRESETS",
    "Keep",
    "preset_for_size",
    "ADV2Evaluation",
    "ADV2Result",
    "Distance",
    "Schedule",
    "adv2_figure",
    "affine_batch_norm",
    "attack_patches",
    "evaluate_adv2",
    "joint_loss_gradient",
    "judge_map",
    "map_distance",
    "smoothed_cross_entropy",
]
