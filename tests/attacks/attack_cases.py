"""One small-settings factory per attack, shared by the attack tests."""

from __future__ import annotations

from underfire.attacks import (
    APGD,
    APGDT,
    BIM,
    CW,
    DDN,
    FAB,
    FGSM,
    JSMA,
    PGD,
    TGSM,
    AutoAttack,
    Square,
    SubstituteAttack,
)

# Small settings so that every contract test stays fast; every registered attack appears.
FACTORIES = {
    "fgsm": lambda: FGSM(eps=0.1),
    "tgsm": lambda: TGSM(eps=0.1),
    "bim": lambda: BIM(eps=0.1, steps=3),
    "pgd": lambda: PGD(eps=0.1, steps=3, random_start=False),
    "pgd-rs": lambda: PGD(eps=0.1, steps=3, seed=0),
    "pgd-l2": lambda: PGD(eps=0.5, steps=3, norm="l2", random_start=False),
    "pgd-restarts-es": lambda: PGD(eps=0.1, steps=3, restarts=2, early_stop=True, seed=1),
    "jsma": lambda: JSMA(gamma=0.2),
    "cw": lambda: CW(steps=5, binary_search_steps=2, const=0.1),
    "ddn": lambda: DDN(steps=5),
    "ddn-levels": lambda: DDN(steps=5, levels=256, init_norm=0.5),
    "apgd": lambda: APGD(eps=0.1, steps=4),
    "apgd-l2-dlr": lambda: APGD(eps=0.5, norm="l2", steps=4, loss="dlr", restarts=2),
    "apgdt": lambda: APGDT(eps=0.1, steps=3, n_target_classes=2),
    "fab": lambda: FAB(eps=0.1, steps=4),
    "fab-t-l2": lambda: FAB(eps=0.5, norm="l2", steps=3, targeted=True, n_target_classes=2),
    "square": lambda: Square(eps=0.1, n_queries=20),
    "square-l2": lambda: Square(eps=0.5, norm="l2", n_queries=20, restarts=2),
    "autoattack": lambda: AutoAttack(eps=0.1, steps=3, n_queries=10, n_target_classes=2),
    "substitute": lambda: SubstituteAttack(
        attack=FGSM(eps=0.1), n_seed=8, rounds=2, epochs=1, seed=0
    ),
}
