"""Information loss of a layer: how badly the input can be reconstructed from its features.

The figure is the *fraction of variance unexplained* (FVU) of a reconstruction x̂ of the
clean images x,

    FVU = Σᵢ ‖x̂ᵢ − xᵢ‖² / Σᵢ ‖xᵢ − x̄‖²,

with x̄ the mean image of the batch: 0 when every pixel is recovered, 1 when the
reconstruction is no better than the mean image. Two reconstructions are used:

* a trained InterpretGAN generator for the layer (:mod:`underfire.diagnosis.interpretgan`);
* without one, the cheap *linear probe* of this module: ridge regression from the flattened
  features to the pixels, fitted and evaluated by k-fold cross-validation on the images
  themselves (each image is reconstructed by a probe that never saw it, so a wide layer
  cannot score well by memorizing). It is solved in its dual (kernel) form, so the cost is
  O(N²·D) for N images and D feature units, not O(D²).
"""

from __future__ import annotations

import torch

__all__ = ["fraction_unexplained", "linear_probe_loss"]


def fraction_unexplained(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """FVU of ``x_hat`` against ``x`` (both (N, ...)): Σ‖x̂ − x‖² / Σ‖x − x̄‖²."""
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstruction has shape {tuple(x_hat.shape)}, images {tuple(x.shape)}")
    x64, h64 = x.detach().double().flatten(1), x_hat.detach().double().flatten(1)
    total = (x64 - x64.mean(0, keepdim=True)).pow(2).sum()
    if not total > 0:
        return float("nan")  # identical images: nothing to explain
    return float((h64 - x64).pow(2).sum() / total)


def linear_probe_loss(
    features: torch.Tensor,
    x: torch.Tensor,
    *,
    folds: int = 5,
    ridge: float = 1e-3,
    seed: int = 0,
) -> float:
    """Information loss of ``features`` about ``x`` by a cross-validated linear ridge probe.

    For each of ``folds`` folds (a seeded permutation of the N images split into near-equal
    parts), centred features H and images X of the other folds fit
    X̂ = H·W, W = Hᵀ(HHᵀ + λI)⁻¹X with λ = ``ridge``·tr(HHᵀ)/n (so the penalty is relative to
    the features' scale and the layer's width does not matter), and the held-out fold is
    reconstructed. Returns the FVU of the held-out reconstructions.

    Args:
        features: (N, ...) features of the clean images at one layer.
        x: (N, C, H, W) the clean images.
        folds: cross-validation folds (≥ 2; N ≥ 2·folds).
        ridge: relative ridge penalty λ/(mean squared feature norm).
        seed: seeds the fold assignment.
    """
    n = x.shape[0]
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows for {n} images")
    if folds < 2 or n < 2 * folds:
        raise ValueError(
            f"the linear probe needs at least {2 * max(folds, 2)} images for {folds} folds, got {n}; "
            "pass more clean images (or a trained InterpretGAN)"
        )
    h = features.detach().flatten(1).double()
    target = x.detach().flatten(1).double()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    x_hat = torch.empty_like(target)
    for part in torch.tensor_split(order, folds):
        train = torch.ones(n, dtype=torch.bool, device=x.device)
        train[part] = False
        h_mean, x_mean = h[train].mean(0, keepdim=True), target[train].mean(0, keepdim=True)
        h_train = h[train] - h_mean
        gram = h_train @ h_train.T
        lam = ridge * float(gram.diagonal().mean()) + 1e-12
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        alpha = torch.linalg.solve(gram + lam * eye, target[train] - x_mean)
        x_hat[part] = (h[part] - h_mean) @ h_train.T @ alpha + x_mean
    return fraction_unexplained(x_hat, target)
