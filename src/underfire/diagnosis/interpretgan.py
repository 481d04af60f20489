"""InterpretGAN (after Zheng, Zhang, Lee & Prakash 2020, "Understanding and Diagnosing
Vulnerability under Adversarial Attacks", arXiv 2007.08716).

For a trained, frozen classifier f and a layer l with features hₗ(x), a generator Gₗ maps
hₗ(x) to an image x̂ = Gₗ(hₗ(x)) that shows what the features encode. Fed the features of an
adversarial image x′, it shows what the classifier "sees" at that layer: where the
perturbation turns into features of another class. The paper's losses are not public;
underfire trains each (Gₗ, Dₗ) pair with (see docs/diagnosis.md for the reasoning):

    L_D = E[softplus(−Dₗ(x))] + E[softplus(Dₗ(x̂))]                  (logistic GAN loss)
    L_G = λ_adv · E[softplus(−Dₗ(x̂))]                                (non-saturating)
        + λ_feat · E[‖hₗ(x̂) − hₗ(x)‖² / ‖hₗ(x)‖²]                    (feature consistency)
        + λ_pred · E[KL(p(·|x) ‖ p(·|x̂))]                            (prediction consistency)
        + λ_rec · E[mean over pixels (x̂ − x)²]                        (reconstruction)

with p(·|x) = softmax f(x). Gradients of L_G reach Gₗ through the frozen classifier (its
parameters' ``requires_grad`` and ``.grad`` untouched). Generators are small convolutional
decoders (1×1 conv or linear stem, nearest ×2 upsampling + 3×3 conv blocks, sigmoid output),
discriminators small strided convolutional nets with spectral normalization, both sized by
the image (8×8 digits, 28×28 MNIST, 32×32 CIFAR-10). A checkpoint is a plain dict read with
``torch.load(weights_only=True)``; training writes one every ``checkpoint_every`` steps and
resumes from it exactly (weights, optimizer moments, data order).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire._version import __version__
from underfire.core import io as _io
from underfire.core.autograd import capture_layers
from underfire.core.errors import CheckpointError
from underfire.core.state import model_state
from underfire.core.validation import check_float, check_images, check_int, check_same_device
from underfire.diagnosis.interpretgan_nets import Discriminator, FeatureGenerator
from underfire.diagnosis.layers import capture_features, resolve_layers
from underfire.diagnosis.probe import fraction_unexplained

__all__ = [
    "Discriminator",
    "FeatureGenerator",
    "InterpretGAN",
    "InterpretGANConfig",
    "classifier_fingerprint",
    "evaluate_interpretgan",
    "train_interpretgan",
]

FORMAT = "underfire.interpretgan/1"


@dataclass
class InterpretGANConfig:
    """Training settings. λ weights as in the module docstring (docs/diagnosis.md)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-4
    lr_discriminator: float = 2e-4
    width: int = 64
    discriminator_width: int = 32
    adversarial: float = 0.05  # λ_adv
    feature: float = 1.0  # λ_feat
    prediction: float = 1.0  # λ_pred
    reconstruction: float = 10.0  # λ_rec
    seed: int = 0
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "width", "discriminator_width", "checkpoint_every"):
            check_int(getattr(self, name), name)
        check_int(self.seed, "seed", minimum=0)
        for name in ("lr", "lr_discriminator"):
            check_float(getattr(self, name), name, low=0.0, low_inclusive=False)
        for name in ("adversarial", "feature", "prediction", "reconstruction"):
            check_float(getattr(self, name), name, low=0.0)


def classifier_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the classifier's state dict (names, shapes, values): ties generators to it."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class InterpretGAN:
    """Trained generators, one per layer: ``decode(layer, features)`` → images in [0, 1].

    Build one with :func:`train_interpretgan` or :meth:`load`. ``generate(model, x)`` gives,
    for every layer, the images reconstructed from ``model``'s features of ``x``.
    """

    def __init__(
        self,
        generators: dict[str, FeatureGenerator],
        *,
        discriminators: dict[str, Discriminator] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not generators:
            raise ValueError("an InterpretGAN needs at least one generator")
        self.generators = dict(generators)
        self.discriminators = dict(discriminators or {})
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def layers(self) -> list[str]:
        return list(self.generators)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return next(iter(self.generators.values())).image_shape

    def _generator(self, layer: str) -> FeatureGenerator:
        if layer not in self.generators:
            raise ValueError(
                f"this InterpretGAN has no generator for layer {layer!r}; it covers {self.layers}"
            )
        return self.generators[layer]

    def decode(self, layer: str, features: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) generated from ``layer``'s features (N, ...), eval mode."""
        gen = self._generator(layer)
        param = next(gen.parameters())
        if param.device != features.device or param.dtype != features.dtype:
            gen.to(device=features.device, dtype=features.dtype)
        with model_state(gen, mode="eval", freeze=False):
            return gen(features)

    @torch.no_grad()
    def generate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        layers: Sequence[str | nn.Module] | None = None,
        *,
        batch_size: int = 256,
    ) -> dict[str, torch.Tensor]:
        """``{layer: images generated from model's features of x}`` (the model is borrowed:
        eval mode, state restored)."""
        check_images(x)
        check_same_device(model, x)
        modules = resolve_layers(model, layers if layers is not None else self.layers)
        names = list(modules)
        for name in names:
            self._generator(name)
        with model_state(model, mode="eval", freeze=True):
            feats, _ = capture_features(model, modules, x, batch_size=batch_size)
        return {name: self.decode(name, feats[name]) for name in names}

    def save(self, path: str | Path) -> Path:
        """Write generators, discriminators and metadata (a weights-only checkpoint)."""
        return _io.atomic_write(path, lambda f: torch.save(_payload(self), f))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> InterpretGAN:
        """Read a checkpoint written by :meth:`save` or :func:`train_interpretgan`."""
        payload = _read(Path(path))
        gan = _from_payload(payload)
        for module in [*gan.generators.values(), *gan.discriminators.values()]:
            module.to(device).eval()
        return gan


def _payload(gan: InterpretGAN, **training: Any) -> dict[str, Any]:
    def states(modules: dict[str, nn.Module]) -> dict[str, Any]:
        return {
            k: {
                "config": dict(m.config),  # type: ignore[arg-type]
                "state_dict": {n: v.detach().cpu() for n, v in m.state_dict().items()},
            }
            for k, m in modules.items()
        }

    return {
        "format": FORMAT,
        "underfire_version": __version__,
        "layers": gan.layers,
        "generators": states(gan.generators),  # type: ignore[arg-type]
        "discriminators": states(gan.discriminators),  # type: ignore[arg-type]
        "meta": gan.meta,
        "training": training or None,
    }


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(
            f"InterpretGAN checkpoint {path} not found; train one with `underfire train-interpretgan`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(
            f"{path} is not a readable InterpretGAN checkpoint ({type(err).__name__}); it may be "
            "truncated, or hold pickled code, which is never executed"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an InterpretGAN checkpoint (no '{FORMAT}' marker)")
    for key in ("layers", "generators", "discriminators"):
        if key not in payload:
            raise CheckpointError(f"{path} is missing its {key!r} entry; the file is damaged")
    return payload


def _from_payload(payload: dict[str, Any]) -> InterpretGAN:
    gens: dict[str, FeatureGenerator] = {}
    discs: dict[str, Discriminator] = {}
    try:
        for name in payload["layers"]:
            g = payload["generators"][name]
            gen = FeatureGenerator(
                g["config"]["feature_shape"], g["config"]["image_shape"], width=g["config"]["width"]
            )
            gen.load_state_dict(g["state_dict"])
            gens[name] = gen
            if name in payload["discriminators"]:
                d = payload["discriminators"][name]
                disc = Discriminator(d["config"]["image_shape"], width=d["config"]["width"])
                disc.load_state_dict(d["state_dict"])
                discs[name] = disc
    except (KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"InterpretGAN checkpoint does not fit its networks: {err}") from err
    return InterpretGAN(gens, discriminators=discs, meta=payload.get("meta") or {})


def _signature(cfg: InterpretGANConfig) -> dict[str, Any]:
    sig = asdict(cfg)
    sig.pop("checkpoint_every")
    sig.pop("steps")  # a finished run may be continued with more steps
    return sig


def _generator_loss(
    fake_logit: torch.Tensor,
    feat_fake: torch.Tensor,
    feat_real: torch.Tensor,
    logits_fake: torch.Tensor,
    logp_real: torch.Tensor,
    x_hat: torch.Tensor,
    x: torch.Tensor,
    cfg: InterpretGANConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    adv = F.softplus(-fake_logit).mean()
    ref = feat_real.flatten(1)
    feat = ((feat_fake.flatten(1) - ref).pow(2).sum(1) / ref.pow(2).sum(1).clamp_min(1e-8)).mean()
    pred = F.kl_div(
        F.log_softmax(logits_fake, 1), logp_real, log_target=True, reduction="batchmean"
    )
    rec = (x_hat - x).pow(2).mean()
    loss = (
        cfg.adversarial * adv
        + cfg.feature * feat
        + cfg.prediction * pred
        + cfg.reconstruction * rec
    )
    parts = {
        "g_adv": float(adv.detach()),
        "feature": float(feat.detach()),
        "prediction": float(pred.detach()),
        "rec": float(rec.detach()),
    }
    return loss, parts


def train_interpretgan(
    model: nn.Module,
    data: Any,
    layers: Sequence[str | nn.Module] | None = None,
    config: InterpretGANConfig | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> tuple[InterpretGAN, list[dict[str, float]]]:
    """Train one generator (and discriminator) per layer of the frozen classifier ``model``.

    Args:
        model: trained classifier; borrowed in eval mode, parameters frozen, ``.grad`` and
            modes restored afterwards.
        data: an :class:`~underfire.data.ImageDataset` (``.x``, ``.y``) or a pair (x, y)
            of clean training images in [0, 1].
        layers: layer names or modules of ``model`` (default:
            :func:`underfire.diagnosis.default_layers`).
        config: training settings.
        device: where to train (default: the model's device).
        checkpoint: a path: saved every ``config.checkpoint_every`` steps and at the end;
            an existing file from the same run (settings, layers, classifier) is resumed.
        progress: show a progress bar (CLI and experiments).
        meta: extra metadata stored with the generators.

    Returns:
        (the InterpretGAN, history: one dict of mean losses per 50 steps).
    """
    cfg = config or InterpretGANConfig()
    x_all = data.x if hasattr(data, "x") else data[0]
    check_images(x_all, "training images")
    if x_all.shape[0] < 2:
        raise ValueError("InterpretGAN needs at least 2 training images")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    training = _Training.build(model, resolve_layers(model, layers), x_all, cfg, dev, meta)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        training.resume(path)
    bar = None
    if progress and training.step < cfg.steps:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.steps,
            initial=training.step,
            desc="interpretgan",
            unit="step",
            mininterval=1.0,
        )
    try:
        training.run(x_all, path, bar)
    finally:
        if bar is not None:
            bar.close()
        for module in [*training.gens.values(), *training.discs.values()]:
            module.eval()
            for p in module.parameters():
                p.grad = None
    training.save(path, finished=True)
    return training.gan, training.history


@dataclass
class _Training:
    """One InterpretGAN training run: the networks, their optimizers, the data order and
    the history, with one step, the loop, checkpointing and resuming."""

    model: nn.Module
    modules: dict[str, nn.Module]
    cfg: InterpretGANConfig
    device: torch.device
    gan: InterpretGAN
    opt_g: dict[str, torch.optim.Optimizer]
    opt_d: dict[str, torch.optim.Optimizer]
    sampler: torch.Generator
    fingerprint: str
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    seconds: float = 0.0

    @classmethod
    def build(
        cls,
        model: nn.Module,
        modules: dict[str, nn.Module],
        x_all: torch.Tensor,
        cfg: InterpretGANConfig,
        dev: torch.device,
        meta: dict[str, Any] | None,
    ) -> _Training:
        names = list(modules)
        image_shape = tuple(x_all.shape[1:])
        fingerprint = classifier_fingerprint(model)
        with model_state(model, mode="eval", freeze=True):
            probe, _ = capture_features(model, modules, x_all[:2].to(dev))
        torch.manual_seed(cfg.seed)  # network initialization
        gens = {
            n: FeatureGenerator(probe[n].shape[1:], image_shape, width=cfg.width).to(dev)
            for n in names
        }
        discs = {
            n: Discriminator(image_shape, width=cfg.discriminator_width).to(dev) for n in names
        }
        opt_g: dict[str, torch.optim.Optimizer] = {
            n: torch.optim.Adam(gens[n].parameters(), cfg.lr, betas=(0.5, 0.999)) for n in names
        }
        opt_d: dict[str, torch.optim.Optimizer] = {
            n: torch.optim.Adam(discs[n].parameters(), cfg.lr_discriminator, betas=(0.5, 0.999))
            for n in names
        }
        info = {
            "classifier": dict(getattr(model, "config", {}) or {}),
            "classifier_fingerprint": fingerprint,
            "config": asdict(cfg),
            "feature_shapes": {n: list(probe[n].shape[1:]) for n in names},
        }
        gan = InterpretGAN(gens, discriminators=discs, meta=dict(meta or {}) | info)
        sampler = torch.Generator().manual_seed(cfg.seed)
        return cls(model, modules, cfg, dev, gan, opt_g, opt_d, sampler, fingerprint)

    @property
    def names(self) -> list[str]:
        return list(self.modules)

    @property
    def gens(self) -> dict[str, FeatureGenerator]:
        return self.gan.generators

    @property
    def discs(self) -> dict[str, Discriminator]:
        return self.gan.discriminators

    def run(self, x_all: torch.Tensor, path: Path | None, bar: Any) -> None:
        """Train until ``cfg.steps``, checkpointing to ``path`` every ``checkpoint_every``."""
        cfg, n_all = self.cfg, x_all.shape[0]
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter() - self.seconds
        with model_state(self.model, mode="eval", freeze=True):
            for module in [*self.gens.values(), *self.discs.values()]:
                module.train()
            while self.step < cfg.steps:
                idx = torch.randint(0, n_all, (min(cfg.batch_size, n_all),), generator=self.sampler)
                parts = self.train_step(x_all[idx].to(self.device))
                self.step += 1
                count += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.step % 50 == 0 or self.step == cfg.steps:
                    self.history.append(
                        {"step": self.step} | {k: v / count for k, v in sums.items()}
                    )
                    sums, count = {}, 0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        g=f"{parts['g_loss']:.3f}", d=f"{parts['d_loss']:.3f}", refresh=False
                    )
                self.seconds = time.perf_counter() - t0
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save(path, finished=False)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One discriminator and one generator step for every layer on the batch ``x``;
        returns the losses averaged over the layers."""
        names, model, cfg = self.names, self.model, self.cfg
        with torch.no_grad():
            real, logits = capture_features(model, self.modules, x)
            logp_real = F.log_softmax(logits, 1)
        fakes = {n: self.gens[n](real[n]) for n in names}
        parts: dict[str, float] = {}
        for n in names:  # discriminator step
            disc = self.discs[n]
            loss_d = F.softplus(-disc(x)).mean() + F.softplus(disc(fakes[n].detach())).mean()
            d_params = list(disc.parameters())
            for p, g in zip(d_params, torch.autograd.grad(loss_d, d_params), strict=True):
                p.grad = g
            self.opt_d[n].step()
            parts["d_loss"] = parts.get("d_loss", 0.0) + float(loss_d.detach()) / len(names)
        # one classifier pass over every layer's generated batch; each generator's
        # consistency terms use its own slice (the layers are independent problems)
        batch = torch.cat([fakes[n] for n in names])
        with capture_layers(self.modules) as outs:
            logits_fake = model(batch)
        b = x.shape[0]
        for i, n in enumerate(names):
            sl = slice(i * b, (i + 1) * b)
            loss_g, g_parts = _generator_loss(
                self.discs[n](fakes[n]),
                outs[n][0][sl],
                real[n],
                logits_fake[sl],
                logp_real,
                fakes[n],
                x,
                cfg,
            )
            g_params = list(self.gens[n].parameters())
            grads = torch.autograd.grad(loss_g, g_params, retain_graph=i + 1 < len(names))
            for p, g in zip(g_params, grads, strict=True):
                p.grad = g
            self.opt_g[n].step()
            parts["g_loss"] = parts.get("g_loss", 0.0) + float(loss_g.detach()) / len(names)
            for k, v in g_parts.items():
                parts[k] = parts.get(k, 0.0) + v / len(names)
        return parts

    def save(self, path: Path | None, *, finished: bool) -> None:
        """A checkpoint that resumes this run exactly (weights, optimizers, data order)."""
        if path is None:
            return
        self.gan.meta |= {"steps": self.step, "seconds": self.seconds}
        payload = _payload(
            self.gan,
            signature=_signature(self.cfg),
            step=self.step,
            finished=finished,
            history=self.history,
            sampler=self.sampler.get_state(),
            opt_g={n: o.state_dict() for n, o in self.opt_g.items()},
            opt_d={n: o.state_dict() for n, o in self.opt_d.items()},
        )
        _io.atomic_write(path, lambda f: torch.save(payload, f))

    def resume(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``, which must be of this run."""
        names = self.names
        payload = _read(path)
        training = payload.get("training") or {}
        if training.get("signature") != _signature(self.cfg) or payload["layers"] != names:
            raise CheckpointError(
                f"{path} was written by a different InterpretGAN run (other settings or layers); "
                "delete it or choose another output folder"
            )
        if (payload.get("meta") or {}).get("classifier_fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"{path} was trained for another classifier (its weights differ); "
                "delete it or choose another output folder"
            )
        loaded = _from_payload(payload)
        for n in names:
            self.gens[n].load_state_dict(loaded.generators[n].state_dict())
            self.discs[n].load_state_dict(loaded.discriminators[n].state_dict())
            self.opt_g[n].load_state_dict(training["opt_g"][n])
            self.opt_d[n].load_state_dict(training["opt_d"][n])
        self.sampler.set_state(training["sampler"])
        self.gan.meta |= payload.get("meta") or {}
        self.step = int(training["step"])
        self.history = list(training.get("history", []))
        self.seconds = float((payload.get("meta") or {}).get("seconds", 0.0))


@torch.no_grad()
def evaluate_interpretgan(
    gan: InterpretGAN,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    batch_size: int = 256,
) -> dict[str, dict[str, float]]:
    """Per layer: how faithful the generated images are to ``model`` on ``x``.

    Returns:
        ``{layer: {"consistency": fraction of generated images the classifier labels as it
        labels the source image, "accuracy": fraction labelled ``y`` (when given),
        "fvu": information loss (fraction of variance unexplained), "n"}}``.
    """
    images = gan.generate(model, x, batch_size=batch_size)
    with model_state(model, mode="eval", freeze=True):
        source = torch.cat([model(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])
        out: dict[str, dict[str, float]] = {}
        for name, x_hat in images.items():
            pred = torch.cat(
                [model(x_hat[s : s + batch_size]) for s in range(0, len(x), batch_size)]
            ).argmax(1)
            row = {
                "consistency": float((pred == source.argmax(1)).double().mean()),
                "fvu": fraction_unexplained(x_hat, x),
                "n": int(x.shape[0]),
            }
            if y is not None:
                row["accuracy"] = float((pred == y.to(pred.device)).double().mean())
            out[name] = row
    return out
