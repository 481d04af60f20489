"""RTS: real-time saliency (Dabkowski & Gal, "Real Time Image Saliency for Black Box
Classifiers", NeurIPS 2017).

A masking network produces a mask in one forward pass. Its encoder is the classifier's own
feature extractor (frozen: the output of ``model.target_layer``), a 1×1 bottleneck is
multiplied by a learned embedding of the requested class (the *class selector*), and an
upsampling decoder (bilinear ×2 → conv 3×3 → BN → ReLU, repeated) ends in a sigmoid mask that
is upsampled to the input size. It is trained with the paper's objective

    L(m) = λ₁·TV(m) + λ₂·A(m) − log f_c(Φ(x, m)) + λ₃·f_c(Φ(x, 1 − m))^λ₄,

with A(m) the mean mask area, TV the mean squared neighbour difference, Φ(x, m) = x ⊙ m +
r ⊙ (1 − m) and r a blurred copy of x (the paper also uses random colours and noise), and,
with probability ``fake_prob``, a *fake* class whose only objective is λ₂·A(m) + λ₁·TV(m), so
the selector learns to give an empty mask for classes that are absent. Simplifications
against the paper (documented): a single encoder scale (no multi-scale skip connections) and
a blur-only reference. The saved checkpoint is a plain dict loaded with ``weights_only=True``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.checkpoint import CHECKSUM_ALGORITHM, checksum
from underfire.core import io as _io
from underfire.core.forward import checked_forward
from underfire.core.state import model_state
from underfire.core.validation import (
    check_float,
    check_images,
    check_int,
    check_labels,
    check_positive,
    check_same_device,
    check_seed,
)
from underfire.interpreters.base import INTERPRETERS, Interpreter, resize_maps
from underfire.interpreters.cam import LayerChoice, capture_layer, check_layer, resolve_layer
from underfire.interpreters.mask import gaussian_blur

__all__ = ["RTS", "MaskingNetwork", "RTSConfig", "evaluate_rts", "rts_objective", "train_rts"]

FORMAT = "underfire.rts/1"


class MaskingNetwork(nn.Module):
    """Decoder + class selector of RTS: features (N, K, h, w) and classes (N,) → mask (N, 1, H, W)."""

    def __init__(
        self,
        *,
        feat_channels: int,
        num_classes: int,
        feat_size: tuple[int, int],
        input_size: tuple[int, int],
        width: int = 64,
        max_upsamples: int = 3,
    ) -> None:
        super().__init__()
        self.config = {
            "feat_channels": feat_channels,
            "num_classes": num_classes,
            "feat_size": list(feat_size),
            "input_size": list(input_size),
            "width": width,
            "max_upsamples": max_upsamples,
        }
        self.bottleneck = nn.Sequential(
            nn.Conv2d(feat_channels, width, 1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.selector = nn.Embedding(num_classes, width)
        nn.init.normal_(self.selector.weight, 1.0, 0.1)
        ratio = max(input_size[0] / feat_size[0], 1)
        n_up = min(max_upsamples, max(0, math.ceil(math.log2(ratio))))
        blocks: list[nn.Module] = []
        for _ in range(n_up):
            blocks += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(width, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        blocks += [
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        ]
        self.decoder = nn.Sequential(*blocks)
        self.input_size = tuple(input_size)

    def forward(self, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(feats) * self.selector(target)[:, :, None, None]
        return resize_maps(torch.sigmoid(self.decoder(z)), self.input_size)


@dataclass
class RTSConfig:
    """Training settings of RTS (λ names as in Dabkowski & Gal 2017)."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    tv: float = 0.05  # λ₁
    area: float = 1.0  # λ₂
    destroy: float = 3.0  # λ₃
    destroy_power: float = 0.3  # λ₄
    fake_prob: float = 0.2
    blur_sigma: float | None = None  # None: max(1.5, H / 22), as MASK
    width: int = 64
    seed: int = 0
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        check_int(self.steps, "steps")
        check_int(self.batch_size, "batch_size")
        check_int(self.width, "width")
        check_seed(self.seed)
        self.lr = check_positive(self.lr, "lr")
        self.tv = check_positive(self.tv, "tv", allow_zero=True)
        self.area = check_positive(self.area, "area", allow_zero=True)
        self.destroy = check_positive(self.destroy, "destroy", allow_zero=True)
        self.destroy_power = check_positive(self.destroy_power, "destroy_power")
        self.fake_prob = check_float(
            self.fake_prob, "fake_prob", low=0.0, high=1.0, high_inclusive=False
        )
        if self.blur_sigma is not None:
            self.blur_sigma = check_positive(self.blur_sigma, "blur_sigma")
        if self.max_seconds is not None:
            self.max_seconds = check_positive(self.max_seconds, "max_seconds")


def _tv(m: torch.Tensor) -> torch.Tensor:
    return (m[..., 1:, :] - m[..., :-1, :]).pow(2).flatten(1).mean(1) + (
        m[..., :, 1:] - m[..., :, :-1]
    ).pow(2).flatten(1).mean(1)


def _sigma(cfg_sigma: float | None, x: torch.Tensor) -> float:
    return cfg_sigma if cfg_sigma is not None else max(1.5, min(x.shape[-2:]) / 22)


def rts_objective(
    model: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
    fake: torch.Tensor,
    cfg: RTSConfig,
) -> torch.Tensor:
    """Per-image RTS loss (N,) for masks (N, 1, H, W); ``fake`` marks fake-class samples."""
    area = mask.flatten(1).mean(1)
    reg = cfg.tv * _tv(mask) + cfg.area * area
    keep = (
        F.log_softmax(model(x * mask + reference * (1 - mask)), dim=1)
        .gather(1, target[:, None])
        .squeeze(1)
    )
    gone = (
        F.softmax(model(x * (1 - mask) + reference * mask), dim=1)
        .gather(1, target[:, None])
        .squeeze(1)
    )
    real = -keep + cfg.destroy * gone.clamp_min(1e-12).pow(cfg.destroy_power)
    return reg + torch.where(fake, torch.zeros_like(real), real)


@INTERPRETERS.register("rts")
class RTS(LayerChoice, Interpreter):
    """Real-time saliency (Dabkowski & Gal 2017): one forward pass of a trained masking network.

    ``attribute``/the raw map is the network's preserve-mask (N, 1, H, W) in [0, 1] for the
    target class (high = the region that keeps the class); the map is its per-sample min–max
    normalization. The classifier passed at call time supplies the encoder features, so it must
    be the classifier the network was trained with.

    Args:
        network: a trained :class:`MaskingNetwork`.
        target_layer: encoder layer, a module of the classifier or its name (default
            ``model.target_layer``; must match training); ``layer_used`` names it after a call.
    """

    name = "rts"
    absolute = False
    empty_channels = 1

    def __init__(
        self,
        network: MaskingNetwork | None = None,
        *,
        checkpoint: str | Path | None = None,
        target_layer: str | nn.Module | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if network is None and checkpoint is None:
            raise ValueError(
                "RTS needs a trained masking network: pass network= or checkpoint= (train one with `underfire train-rts`)"
            )
        self.meta: dict[str, Any] = dict(meta or {})
        if checkpoint is not None:
            loaded = RTS.load(checkpoint)
            network, target_layer, self.meta = loaded.network, loaded.target_layer, loaded.meta
        if not isinstance(network, MaskingNetwork):
            raise TypeError(
                f"network must be a trained MaskingNetwork, got {type(network).__name__}"
            )
        self.network: MaskingNetwork = network
        self.target_layer: str | nn.Module | None = check_layer(target_layer, "target_layer")

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        net = self.network
        param = next(net.parameters())
        if param.device != x.device or param.dtype != x.dtype:
            net.to(device=x.device, dtype=x.dtype)
        layer = self._resolve(model, self.target_layer)
        with (
            model_state(net, freeze=not create_graph),
            torch.set_grad_enabled(create_graph),
            capture_layer(layer) as outs,
        ):
            model(x if create_graph else x.detach())
            feats = outs[-1]
            expected = net.config["feat_channels"]
            if feats.shape[1] != expected:
                raise ValueError(
                    f"the masking network was trained on {expected}-channel features but the "
                    f"model's target layer gives {feats.shape[1]}; use the classifier it was "
                    "trained with (and the same target_layer)"
                )
            return net(feats, target)

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return attr

    def save(self, path: str | Path) -> Path:
        """Write the masking network (weights, config, meta) as a weights-only checkpoint."""
        payload = {
            "format": FORMAT,
            "config": dict(self.network.config),
            "target_layer": self._layer_name_to_save(),
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "meta": self.meta,
        }
        payload["checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "digest": checksum(payload)}
        return _io.atomic_write(path, lambda f: torch.save(payload, f))

    def _layer_name_to_save(self) -> str:
        if not isinstance(self.target_layer, nn.Module):
            return self.target_layer or ""
        if self.layer_used is None:
            raise ValueError(
                "RTS.save needs the name of its target_layer, which was given as a module: "
                "explain one batch first (layer_used is then known) or pass target_layer by name"
            )
        return self.layer_used

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RTS:
        """Read a checkpoint written by :meth:`save` with ``torch.load(weights_only=True)``."""
        from underfire.core.errors import CheckpointError

        path = Path(path)
        if not path.exists():
            raise CheckpointError(
                f"RTS checkpoint {path} not found; train one with `underfire train-rts`"
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # many unpickling error types
            raise CheckpointError(
                f"{path} is not a readable RTS checkpoint ({type(err).__name__})"
            ) from err
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an RTS checkpoint (no '{FORMAT}' marker)")
        stored = payload.get("checksum")
        if stored is None:
            warnings.warn(
                f"{path} has no checksum (an older RTS checkpoint); it loads, but corruption "
                "cannot be detected: save it again to add one",
                UserWarning,
                stacklevel=2,
            )
        elif not isinstance(stored, dict) or checksum(payload) != stored.get("digest"):
            raise CheckpointError(
                f"{path} fails its SHA-256 checksum: its content changed after it was written; "
                "restore it from a copy or train it again"
            )
        try:
            cfg = dict(payload["config"])
            cfg["feat_size"] = tuple(cfg["feat_size"])
            cfg["input_size"] = tuple(cfg["input_size"])
            net = MaskingNetwork(**cfg)
            net.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"{path} is a damaged RTS checkpoint ({type(err).__name__}: {err}); train it again"
            ) from err
        if not all(bool(torch.isfinite(t).all()) for t in net.state_dict().values()):
            raise CheckpointError(f"{path} holds NaN or infinite weights; train it again")
        net.to(device).eval()
        return cls(
            net, target_layer=payload.get("target_layer") or None, meta=payload.get("meta") or {}
        )


def _features(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), capture_layer(layer) as outs:
        model(x)
    return outs[-1]


def train_rts(
    model: nn.Module,
    data: Any,
    config: RTSConfig | None = None,
    *,
    target_layer: str | nn.Module | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[RTS, list[dict[str, float]]]:
    """Train an RTS masking network for the (frozen) classifier ``model`` on ``data``.

    Args:
        model: trained classifier; it stays in eval mode and its parameters are not updated
            (their ``.grad`` are left untouched).
        data: an :class:`~underfire.data.ImageDataset` (``.x``, ``.y``) or a pair (x, y).
        config: training settings.
        target_layer: encoder layer, a module of ``model`` or its name (default
            ``model.target_layer``); the RTS returned keeps its name.
        device: where to train (default: the model's device).
        progress: show a progress bar.

    Returns:
        (the RTS interpreter, history of {"step", "loss", "area"} every 50 steps).
    """
    cfg = config or RTSConfig()
    x_all, y_all = (data.x, data.y) if hasattr(data, "x") else data
    if not isinstance(cfg, RTSConfig):
        raise TypeError(f"config must be an RTSConfig, got {type(cfg).__name__}")
    check_images(x_all, "data.x")
    check_labels(y_all, x_all.shape[0], "data.y")
    if x_all.shape[0] == 0:
        raise ValueError("cannot train RTS on an empty data set")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    check_same_device(model.to(dev), x_all[:0].to(dev))  # dtype: float64 data, float32 model
    model.to(dev)
    # the classifier stays frozen in eval mode; its modes, flags and .grad come back exactly
    with model_state(model), checked_forward(model, labels={"y": y_all}, who="train_rts"):
        return _train_rts(model, x_all, y_all, cfg, target_layer, dev, progress)


def _train_rts(
    model: nn.Module,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    cfg: RTSConfig,
    target_layer: str | nn.Module | None,
    dev: torch.device,
    progress: bool,
) -> tuple[RTS, list[dict[str, float]]]:
    from underfire.models import layer_name

    layer = resolve_layer(model, check_layer(target_layer, "target_layer"))
    if isinstance(target_layer, nn.Module):
        target_layer = layer_name(model, layer)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    probe = x_all[:2].to(dev)
    feats = _features(model, layer, probe)
    num_classes = int(getattr(model, "num_classes", 0) or model(probe).shape[1])
    if num_classes < 2 and cfg.fake_prob > 0:
        raise ValueError(
            "RTS's fake-class objective needs a classifier with at least 2 classes; "
            "set fake_prob=0 for a 1-class model"
        )
    net = MaskingNetwork(
        feat_channels=feats.shape[1],
        num_classes=num_classes,
        feat_size=(feats.shape[-2], feats.shape[-1]),
        input_size=(probe.shape[-2], probe.shape[-1]),
        width=cfg.width,
    ).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    params = list(net.parameters())
    history: list[dict[str, float]] = []
    n = x_all.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="train-rts")
    t0 = time.perf_counter()
    net.train()
    try:
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            x, y = x_all[idx].to(dev), y_all[idx].to(dev)
            fake = torch.rand(len(idx), generator=gen).to(dev) < cfg.fake_prob
            shift = torch.randint(1, num_classes, (len(idx),), generator=gen).to(dev)
            target = torch.where(fake, (y + shift) % num_classes, y)
            reference = gaussian_blur(x, _sigma(cfg.blur_sigma, x))
            mask = net(_features(model, layer, x), target)
            losses = rts_objective(model, x, reference, mask, target, fake, cfg)
            loss = losses.mean()
            grads = torch.autograd.grad(
                loss, params
            )  # not backward(): the classifier's .grad stay untouched
            for p, g in zip(params, grads, strict=False):
                p.grad = g
            opt.step()
            if step % 50 == 0 or step == cfg.steps:
                history.append(
                    {
                        "step": step,
                        "loss": float(loss.detach()),
                        "area": float(mask.detach()[~fake].mean()) if (~fake).any() else 0.0,
                    }
                )
            if bar is not None:
                bar.update(1)
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                history.append({"step": step, "loss": float(loss.detach()), "stopped": 1.0})
                break
    finally:
        if bar is not None:
            bar.close()
        net.eval()
        for p in params:
            p.grad = None
    rts = RTS(
        net,
        target_layer=target_layer,
        meta={
            "config": asdict(cfg),
            "seconds": time.perf_counter() - t0,
            "classifier": dict(getattr(model, "config", {}) or {}),
        },
    )
    return rts, history


def evaluate_rts(
    rts: RTS,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    blur_sigma: float | None = None,
) -> dict[str, float]:
    """How well RTS masks explain ``model`` on ``x`` (its predicted class if ``y`` is None).

    Returns:
        ``kept``: fraction of images whose preserved region Φ(x, m) keeps the class;
        ``destroyed``: fraction where deleting it, Φ(x, 1 − m), changes the class;
        ``blurred_kept``: the same for the fully blurred image (the empty-mask baseline);
        ``area``: mean mask area.
    """
    check_images(x)
    check_same_device(model, x)
    if x.shape[0] == 0:
        raise ValueError("cannot evaluate RTS on an empty batch")
    if y is not None:
        check_labels(y, x.shape[0])
    with (
        model_state(model),
        checked_forward(model, labels={"y": y}, who="evaluate_rts"),
        torch.no_grad(),
    ):
        target = model(x).argmax(1) if y is None else y
        mask = rts(model, x, target, raw=True)
        ref = gaussian_blur(x, _sigma(blur_sigma, x))
        kept = (model(x * mask + ref * (1 - mask)).argmax(1) == target).float().mean()
        destroyed = (model(x * (1 - mask) + ref * mask).argmax(1) != target).float().mean()
        blurred = (model(ref).argmax(1) == target).float().mean()
    return {
        "kept": float(kept),
        "destroyed": float(destroyed),
        "blurred_kept": float(blurred),
        "area": float(mask.mean()),
        "n": int(x.shape[0]),
    }
