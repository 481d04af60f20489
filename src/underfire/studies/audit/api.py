"""`underfire.audit(model, data)`: how attackable is a classifier, and how attackable are its
explanations?

One call (or ``underfire audit``) runs, on the user's own model and data:

* clean accuracy;
* white-box robust accuracy vs ε for each attack, with an AutoAttack-style worst case: a
  sample counts as robust at ε only if *every* attack failed on it (Croce & Hein 2020 report
  the per-sample minimum over an ensemble of attacks the same way);
* minimal-perturbation attacks (DDN, CW, JSMA): success and median L0/L2/L∞ perturbation norms;
  their examples also count towards the worst case at ε when their L∞ norm is ≤ ε;
* transfer: the same attacks crafted on a surrogate trained here on the model's own labels;
* gradient-masking soundness checks with verdicts (Carlini et al. 2019, "On Evaluating
  Adversarial Robustness"): iterative not weaker than single-step, accuracy non-increasing
  in ε, white-box not weaker than transfer, an unbounded attack reaching ~0% accuracy,
  healthy input gradients;
* explanations: each interpreter's maps on benign vs PGD examples (and ADV² where it is
  available), with L1 distance and top-k IoU — the stability of the explanation under
  attack; constant maps are reported and left out of those statistics;
* the per-layer diagnosis, where :mod:`underfire.diagnosis` is available.

The audit is a study (:mod:`underfire.studies`): every part is saved under ``out/parts/`` as
it finishes, keyed on the settings, the model's weights and the data, so a killed audit run
again continues where it stopped, and a replaced model is audited anew; ``n`` and
``time_budget`` bound the cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from underfire.robustness import collect_data
from underfire.studies.audit.config import AuditConfig
from underfire.studies.runner import run_study

__all__ = ["audit"]


def audit(
    model: nn.Module,
    data: Any,
    *,
    config: AuditConfig | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    force: bool = False,
    command: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    argv: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Audit ``model`` (any ``nn.Module`` taking [0, 1] NCHW images, returning logits).

    Args:
        model: the classifier; normalization inside it, as everywhere in underfire.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair; the first ``config.n`` samples
            are audited.
        config: what to run (:class:`AuditConfig`); keyword ``overrides`` replace its fields,
            e.g. ``audit(model, data, attacks=("fgsm", "pgd"), n=500)``. A layer
            (``target_layer``, or one in ``interpreter_options``) may be given as a module of
            ``model``: it is recorded by its name.
        out: folder for results.json, report.md/html, figures and the resumable parts; None
            keeps everything in memory. A folder in use by a live run, or holding the results
            of another audit (other settings, model or data), is refused unless ``force``.
        progress: show progress bars with ETA (the CLI turns them on).
        force: replace another run's results in ``out``.
        command, arguments, argv: how the command line records its run in ``out``.

    Returns:
        The results (also written to ``out/results.json``, without per-sample lists).
    """
    from underfire.studies.audit.study import STUDY

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    base = config or AuditConfig()
    overrides = _layers_named(model, overrides)
    if overrides:
        tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        config = AuditConfig(**{**asdict(base), **tuples})
    else:
        config = base
    x, y = collect_data(data, config.n)
    param = next(model.parameters(), None)
    return run_study(
        STUDY,
        config,
        inputs={"model": model, "data": (x, y)},
        out=out,
        force=force,
        device=param.device if param is not None else "cpu",
        progress=progress,
        command=command,
        arguments=arguments,
        argv=argv,
    )


def _layers_named(model: nn.Module, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with every layer given as a module object replaced by its name in
    ``model`` (the config is data: it is written to results.json and keys the part cache)."""
    from underfire.models import layer_name

    named = dict(overrides)
    if isinstance(named.get("target_layer"), nn.Module):
        named["target_layer"] = layer_name(model, named["target_layer"])
    options = named.get("interpreter_options")
    if isinstance(options, Mapping):
        named["interpreter_options"] = {
            interp: {
                k: layer_name(model, v) if isinstance(v, nn.Module) else v
                for k, v in kwargs.items()
            }
            if isinstance(kwargs, Mapping)
            else kwargs
            for interp, kwargs in options.items()
        }
    return named
