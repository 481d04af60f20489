"""Robust accuracy of PGD-20 over an ε list: underfire's open evaluation vs a torchattacks loop.

On MNIST (1,000 test images by default), for a normally trained Ross CNN and an
adversarially trained one (which breaks slowly), the two run interleaved (alternating which
goes first, so that load on a shared machine hits both alike):

* ours: ``robust_accuracy(model, PGD(steps=20), data, eps)``, the default open mode (fooled
  samples leave the batch, ε ascending, a sample broken at ε counts as broken above it);
* theirs: for each ε, ``torchattacks.PGD(model, eps, alpha, steps=20)`` on every batch.

Same steps and step size (α = 2.5·ε/20, Madry et al.), random start for both. Reported: the
time ratio (theirs / ours, > 1 means underfire is faster) and the robust accuracies side by
side (ours must be equal or lower at every ε: it is a per-sample worst case). With
``--audit N`` it also times ``audit`` on the normal model, exhaustive and open, per part.

The models are trained once with small budgets and cached (``--models``, not committed):

    python bench/evaluation.py                      # trains if needed, then measures
    python bench/evaluation.py --n 300 --repeats 1 --audit 200

Writes bench/results/evaluation.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from underfire.attacks import PGD
from underfire.data import load_dataset
from underfire.defenses import create as create_defense
from underfire.models import create_model
from underfire.robustness import robust_accuracy
from underfire.train import TrainConfig, Trainer

EPS = (0.05, 0.1, 0.2, 0.3)
STEPS = 20


def ross_cnn() -> torch.nn.Module:
    return create_model("ross-cnn", in_channels=1, input_size=28, num_classes=10)


def trained(models: Path, name: str, root: str, steps: int) -> torch.nn.Module:
    """The cached model, or one trained now: "normal" (cross-entropy) or "adversarial"
    (PGD-3 adversarial training at ε = 0.3, fine-tuned from the normal model)."""
    path = models / f"{name}.pt"
    model = ross_cnn()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train = load_dataset("mnist", "train", root=root)
    if name == "adversarial":
        model.load_state_dict(trained(models, "normal", root, steps).state_dict())
        objective = create_defense("pgd-adversarial", adv_eps=0.3, adv_steps=3)
    else:
        objective = None
    torch.manual_seed(0)
    config = TrainConfig(steps=steps, batch_size=64, lr=1e-3, seed=0)
    Trainer(model, objective, config=config, progress=True).fit(train)
    models.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def theirs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> list[float]:
    import torchattacks

    accs = []
    for e in EPS:
        atk = torchattacks.PGD(model, eps=e, alpha=2.5 * e / STEPS, steps=STEPS, random_start=True)
        right = 0
        for i in range(0, x.shape[0], batch):
            xa = atk(x[i : i + batch], y[i : i + batch])
            with torch.no_grad():
                right += int((model(xa).argmax(1) == y[i : i + batch]).sum())
        accs.append(right / x.shape[0])
    return accs


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> list[float]:
    attack = PGD(eps=max(EPS), steps=STEPS, seed=0)  # α = 2.5·ε/steps at every ε
    out = robust_accuracy(model, attack, (x, y), list(EPS), batch_size=batch, check=False)
    return out["accuracy"]


def compare(model: torch.nn.Module, x, y, batch: int, repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"ours": [], "torchattacks": []}
    accs: dict[str, list[float]] = {}
    runs = [("ours", ours), ("torchattacks", theirs)]
    for r in range(repeats):
        for name, fn in runs if r % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            accs[name] = fn(model, x, y, batch)
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.1f} s, accuracy {accs[name]}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "seconds": times,
        "ratio": med["torchattacks"] / med["ours"],
        "accuracy": {"eps": list(EPS), **accs},
        "ours_not_higher": all(
            o <= t + 1e-9 for o, t in zip(accs["ours"], accs["torchattacks"], strict=True)
        ),
    }


def audit_both(model: torch.nn.Module, root: str, n: int, lite: bool) -> dict[str, Any]:
    """The audit exhaustive, then open; ``lite``: only what the mode changes (the attacks;
    maps of 4 images by plain gradients, no surrogate)."""
    from underfire.studies.audit import audit

    test = load_dataset("mnist", "test", root=root)
    out: dict[str, Any] = {"lite": lite}
    options: dict[str, Any] = (
        {"interpreters": ("grad",), "n_maps": 4, "surrogate": False} if lite else {}
    )
    for mode in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = audit(model, test, out=tmp, n=n, exhaustive=mode, **options)
            seconds = time.perf_counter() - start
        parts = {k: v["seconds"] for k, v in res.items() if isinstance(v, dict) and "seconds" in v}
        out["exhaustive" if mode else "open"] = {
            "seconds": round(seconds, 1),
            "parts": parts,
            "worst_case": res["worst_case"]["accuracy"],
            "cw": {k: res["attack-cw"][k] for k in ("success_rate", "median")}
            if "attack-cw" in res
            else None,
        }
        print(f"  audit ({'exhaustive' if mode else 'open'}): {seconds:.0f} s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="/work/shared/data", help="folder holding mnist/")
    p.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "underfire-bench")
    p.add_argument("--n", type=int, default=1000, help="test images")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=600, help="steps of the normal model")
    p.add_argument("--adv-steps", type=int, default=200, help="adversarial fine-tuning steps")
    p.add_argument("--audit", type=int, default=0, help="also time audit on this many images")
    p.add_argument(
        "--audit-lite", action="store_true", help="audit only the parts the mode changes"
    )
    p.add_argument("--skip-compare", action="store_true", help="only the audit")
    p.add_argument("--only", choices=["normal", "adversarial"], default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results/evaluation.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    test = load_dataset("mnist", "test", root=args.data)
    x, y = test.x[: args.n], test.y[: args.n]
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "n": args.n,
        "steps": STEPS,
        "load_average_before": load_before,
        "models": {},
    }
    models = {
        name: trained(args.models, name, args.data, steps)
        for name, steps in (("normal", args.train_steps), ("adversarial", args.adv_steps))
    }
    for name, model in models.items():
        if args.only and name != args.only:
            continue
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).double().mean())
        print(f"{name} (clean {clean:.3f}):", flush=True)
        for prm in model.parameters():
            prm.requires_grad_(False)
        if not args.skip_compare:
            result["models"][name] = {
                "clean": clean,
                **compare(model, x, y, args.batch, args.repeats),
            }
        if name == "normal" and args.audit:
            for prm in model.parameters():
                prm.requires_grad_(True)
            both = audit_both(model, args.data, args.audit, args.audit_lite)
            result["audit"] = {"n": args.audit, **both}
    result["load_average_after"] = os.getloadavg()
    for name, r in result["models"].items():
        print(
            f"{name}: torchattacks / ours = {r['ratio']:.2f}×, ours ≤ theirs at every ε: "
            f"{r['ours_not_higher']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
