"""CAM (Zhou, Khosla, Lapedriza, Oliva & Torralba, CVPR 2016) and Grad-CAM (Selvaraju et al.,
ICCV 2017): class activation maps on the last convolutional block ``model.target_layer``.

CAM:      M_c = Σ_k w_{c,k} A_k, for networks whose logits are fc(global-average-pool(A)).
Grad-CAM: M_c = ReLU(Σ_k α_k A_k), α_k = mean_{ij} ∂f_c/∂A_{k,ij}; on a GAP→FC network
          α_k = w_{c,k}/(h·w), so Grad-CAM = ReLU(CAM)/(h·w).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.autograd.capture import capture_layer as core_capture_layer
from underfire.core.state import model_state
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    class_scores,
    input_leaf,
    resize_maps,
)

__all__ = [
    "CAM",
    "GradCAM",
    "cam_weights",
    "capture_layer",
    "declared_target_layer",
    "find_target_layer",
    "resolve_layer",
    "check_layer",
    "LayerChoice",
]


def declared_target_layer(model: nn.Module) -> str | None:
    """The layer the model names: ``model.target_layer``, else that of the shallowest
    submodule declaring one, prefixed with its name (a user's wrapper around an underfire
    model, e.g. ``Normalized(net)`` → ``"net." + net.target_layer``); None if none does."""
    for prefix, module in model.named_modules():
        name = getattr(module, "target_layer", None)
        if isinstance(name, str) and name:
            return f"{prefix}.{name}" if prefix else name
    return None


def find_target_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The declared target layer (:func:`declared_target_layer`), else found by one forward
    pass on the probe batch ``x``: the module that finishes last among those whose output is a
    4-D (N, K, h, w) feature map with h·w > 1. Forward hooks fire when a module returns, so a
    block outlives its children and the block (``net.layer4`` of a torchvision ResNet, not its
    last ReLU) is found; global pooling (h·w = 1) is passed over. If no layer keeps h·w > 1,
    the last 4-D output is taken (its Grad-CAM maps are then constant).

    Raises:
        ValueError: no module outputs a 4-D tensor (e.g. an MLP): CAM methods do not apply.
    """
    declared = declared_target_layer(model)
    if declared is not None:
        return declared
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []

    def hook(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                seen.append((name, tuple(out.shape[2:])))

        return record

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook(name)))
        with torch.no_grad(), model_state(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError(
            f"{type(model).__name__} has no layer with a 4-D (N, K, h, w) output, so CAM and "
            "Grad-CAM do not apply; use another interpreter (grad, ig, smoothgrad)"
        )
    spatial = [name for name, (h, w) in seen if h * w > 1]
    return spatial[-1] if spatial else seen[-1][0]


#: model → {probe shape: layer found}, so an interpreter called at every step of an attack
#: searches once.
_FOUND: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def resolve_layer(
    model: nn.Module, target_layer: str | nn.Module | None, x: torch.Tensor | None = None
) -> nn.Module:
    """The module whose output the map is built from: a module of ``model``, a name, or else
    the model's declared layer, or else the one :func:`find_target_layer` finds on the probe
    ``x``.

    Raises:
        KeyError: a name or module that is not part of ``model``.
    """
    from underfire.models import get_layer

    if isinstance(target_layer, nn.Module):
        return get_layer(model, target_layer)
    name = target_layer or declared_target_layer(model)
    if not name and x is not None:
        found = _FOUND.setdefault(model, {})
        key = tuple(x.shape[1:])
        if key not in found:
            found[key] = find_target_layer(model, x[:1].detach())
        name = found[key]
    if not name:
        raise ValueError(
            f"{type(model).__name__} has no target_layer; pass target_layer='<module name>' "
            "naming its last convolutional block"
        )
    return get_layer(model, name)


def check_layer(layer: object, what: str) -> str | nn.Module | None:
    """None (the model's default), a non-empty module name, or a module object (as Captum's
    ``LayerGradCam(model, layer)`` and pytorch-grad-cam's ``target_layers`` take it)."""
    if layer is None or isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str) or not layer.strip():
        raise TypeError(
            f"{what} must be None, the name of a module (see model.layer_names()) or the "
            f"module itself, got {layer!r}"
        )
    return layer


class LayerChoice:
    """Mixin for interpreters that read a layer: ``layer_used`` names the one the last call
    read (the model's declared or found layer when none was given)."""

    _layer_used: str | None = None

    @property
    def layer_used(self) -> str | None:
        """Name of the layer the last call read, in the model it was called with."""
        return self._layer_used

    def _resolve(
        self, model: nn.Module, given: str | nn.Module | None, x: torch.Tensor | None = None
    ) -> nn.Module:
        from underfire.models import layer_name

        layer = resolve_layer(model, given, x)
        self._layer_used = given if isinstance(given, str) else layer_name(model, layer)
        return layer

    def config(self) -> dict[str, object]:
        """As :meth:`Interpreter.config`, with a layer given as a module shown by the name it
        had in the last call (before any call: its class)."""
        cfg: dict[str, object] = super().config()  # type: ignore[misc]
        for key in ("target_layer", "fc_layer"):
            value = getattr(self, key, None)
            if isinstance(value, nn.Module):
                known = key == "target_layer" and self._layer_used
                cfg[key] = self._layer_used if known else f"<{type(value).__name__} module>"
        return cfg


def _feature_map(_name: str, out: torch.Tensor) -> None:
    if out.dim() != 4:
        raise ValueError(
            f"target layer must output a (N, K, h, w) feature map, got {tuple(out.shape)}"
        )


@contextmanager
def capture_layer(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the (N, K, h, w) feature map of ``layer`` on each forward pass inside the block."""
    with core_capture_layer(layer, _feature_map) as outputs:
        yield outputs


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "CAM needs a final nn.Linear layer after global average pooling; use GradCAM"
        )
    return linears[-1]


def cam_weights(fc: nn.Linear, target: torch.Tensor) -> torch.Tensor:
    """CAM weights w_{c,k}: the rows of the final linear layer for each target class, (N, K)."""
    return fc.weight[target]


@INTERPRETERS.register("cam")
class CAM(LayerChoice, Interpreter):
    """Class activation mapping (Zhou et al. 2016) for global-average-pooling networks.

    The network must compute its logits as ``fc(mean_{ij} A)`` (or ``fc(mean_{ij} ReLU(A))``,
    as torchvision's DenseNet does with a functional ReLU) from the output A of
    ``target_layer``; this is checked on every call against the model's own logits, and a
    network without that structure (e.g. ross-cnn) raises ``ValueError`` — use
    :class:`GradCAM` there. ``attribute`` gives the signed (N, 1, h, w) map Σ_k w_{c,k} A_k;
    the map is it upsampled bilinearly to H×W (then min–max normalized, as ADV² does).

    Args:
        target_layer: the last conv block, as a module of the model (``model.net.layer4``) or
            its name (default: the model's declared ``target_layer``, else the one
            :func:`find_target_layer` finds); ``layer_used`` names it after a call.
        fc_layer: the final linear layer, module or name (default: the last ``nn.Linear``).
    """

    name = "cam"
    absolute = False
    empty_channels = 1

    def __init__(
        self,
        *,
        target_layer: str | nn.Module | None = None,
        fc_layer: str | nn.Module | None = None,
    ) -> None:
        self.target_layer = check_layer(target_layer, "target_layer")
        self.fc_layer = check_layer(fc_layer, "fc_layer")

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        from underfire.models import get_layer

        layer = self._resolve(model, self.target_layer, x)
        fc = get_layer(model, self.fc_layer) if self.fc_layer is not None else _last_linear(model)
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"fc_layer {self.fc_layer!r} is not an nn.Linear")
        xs = x if create_graph else x.detach()
        with torch.set_grad_enabled(create_graph), capture_layer(layer) as outs:
            logits = model(xs)
        feats = outs[-1]
        if feats.shape[1] != fc.in_features:
            raise ValueError(
                f"CAM needs logits = fc(global-average-pool(target layer)); the target layer has "
                f"{feats.shape[1]} channels but the last linear layer takes {fc.in_features} features. "
                "This network has no GAP→FC head: use GradCAM"
            )
        feats = self._check_gap_head(feats, fc, logits)
        w = cam_weights(fc, target).to(feats.dtype)
        return (w[:, :, None, None] * feats).sum(dim=1, keepdim=True)

    @staticmethod
    def _check_gap_head(feats: torch.Tensor, fc: nn.Linear, logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = logits.detach()
            tol = 1e-3 * (1 + ref.abs().max())
            for candidate in (feats, F.relu(feats)):
                if (fc(candidate.detach().mean(dim=(2, 3))) - ref).abs().max() <= tol:
                    break
            else:
                raise ValueError(
                    "CAM needs logits = fc(global-average-pool(target layer)) and this model's logits differ "
                    "from that; check target_layer or use GradCAM"
                )
        return feats if candidate is feats else F.relu(feats)

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return resize_maps(attr, tuple(x.shape[-2:]))


@INTERPRETERS.register("gradcam")
class GradCAM(LayerChoice, Interpreter):
    """Grad-CAM (Selvaraju et al. 2017): gradient-weighted class activation map.

    ``attribute`` returns ReLU(Σ_k α_k A_k) of shape (N, 1, h, w), α_k the spatial mean of
    ∂f_c/∂A_k (Captum's ``LayerGradCam(model, layer).attribute(x, target,
    relu_attributions=True)``); the map upsamples it bilinearly to H×W.

    Args:
        target_layer: the last conv block, as a module of the model (``model.net.layer4``, as
            Captum's ``LayerGradCam(model, layer)``) or its name (default: the model's declared
            ``target_layer``, else the one :func:`find_target_layer` finds); ``layer_used``
            names it after a call.
        relu: apply the final ReLU (Selvaraju et al.); False keeps the signed map.
    """

    name = "gradcam"
    _second_order = True
    absolute = False
    empty_channels = 1

    def __init__(self, *, target_layer: str | nn.Module | None = None, relu: bool = True) -> None:
        self.target_layer = check_layer(target_layer, "target_layer")
        if not isinstance(relu, bool):
            raise TypeError(f"relu must be True or False, got {type(relu).__name__}")
        self.relu = relu

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        layer = self._resolve(model, self.target_layer, x)
        # x need not require grad when the weights do (the usual case): the backward pass then
        # stops at the target layer's inputs' producers without an input-gradient branch.
        needs_leaf = not any(p.requires_grad for p in model.parameters())
        x_in = (
            input_leaf(x, create_graph)
            if needs_leaf or (create_graph and x.requires_grad)
            else x.detach()
        )
        with capture_layer(layer) as outs:
            scores = class_scores(model(x_in), target)
        feats = outs[-1]
        (grads,) = torch.autograd.grad(scores.sum(), feats, create_graph=create_graph)
        alpha = grads.mean(dim=(2, 3), keepdim=True)
        cam = (alpha * feats).sum(dim=1, keepdim=True)
        return F.relu(cam) if self.relu else cam

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return resize_maps(attr, tuple(x.shape[-2:]))
