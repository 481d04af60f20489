"""The per-sample record of a MASK call and the warning for maps where no deletion was found
(:mod:`underfire.interpreters.mask`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from underfire.interpreters.mask_reference import PERTURBATIONS

__all__ = ["MaskResult", "MaskWarning"]


class MaskWarning(UserWarning):
    """A MASK optimization did not find a deletion for some images (see ``Mask.last_result``)."""


@dataclass(frozen=True)
class MaskResult:
    """Per-sample outcome of one MASK call (``Mask.last_result``); tensors are detached, (N,).

    Attributes:
        mask: (N, 1, s, s) coarse keep-masks (1 = kept).
        found: whether a deletion was found: p_c dropped by at least ``min_drop``, the blurred
            reference is not classified as c, and the map's contrast (max − min of 1 − M, so
            also its largest deletion) is ≥ ``min_deletion``.
        p_c_before: softmax probability of the class on the image.
        p_c_after: on the perturbed image Φ(x, M) (no jitter).
        p_c_reference: on the blurred reference (everything deleted).
        reference_is_target: the blurred reference is classified as c (deleting cannot work).
        deletion: max over pixels of 1 − M, the largest deletion.
        contrast: max − min over pixels of 1 − M (a constant map, e.g. everything deleted,
            explains nothing; its normalized map would be all zeros).
        area: mean over pixels of 1 − M, the deleted fraction.
        perturbation: per sample, the index into :data:`PERTURBATIONS` of the reference used
            (names: :meth:`perturbations`).
        tried: the perturbations the interpreter may use, in order (``("blur",)`` …, or all
            three with ``perturbation="auto"``).
    """

    mask: torch.Tensor
    found: torch.Tensor
    p_c_before: torch.Tensor
    p_c_after: torch.Tensor
    p_c_reference: torch.Tensor
    reference_is_target: torch.Tensor
    deletion: torch.Tensor
    contrast: torch.Tensor
    area: torch.Tensor
    perturbation: torch.Tensor
    tried: tuple[str, ...] = PERTURBATIONS

    def perturbations(self) -> list[str]:
        """Per sample, the name of the perturbation whose reference was used."""
        return [PERTURBATIONS[int(k)] for k in self.perturbation.tolist()]

    def reasons(self, min_drop: float, min_deletion: float) -> list[str]:
        """Per sample, why no deletion was found ('' when found)."""
        out = []
        for i in range(len(self.found)):
            why = []
            if self.reference_is_target[i] and len(self.tried) > 1:
                why.append(
                    f"every reference tried ({', '.join(self.tried)}) is classified as the class"
                )
            elif self.reference_is_target[i]:
                why.append(f"{self.tried[0]} reference already classified as the class")
            if self.p_c_before[i] - self.p_c_after[i] < min_drop:
                why.append(
                    f"p_c dropped {float(self.p_c_before[i]):.3f}→{float(self.p_c_after[i]):.3f}"
                    f" (< {min_drop:g})"
                )
            if self.deletion[i] < min_deletion:
                why.append(f"largest deletion {float(self.deletion[i]):.2g} < {min_deletion:g}")
            elif self.contrast[i] < min_deletion:
                why.append(
                    f"map nearly constant (deletion {float(self.deletion[i]):.2g}, contrast "
                    f"{float(self.contrast[i]):.2g} < {min_deletion:g})"
                )
            out.append("; ".join(why))
        return out
