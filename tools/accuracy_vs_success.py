"""How a classifier's accuracy moves ADV²'s and PGD's success and confidence (issue 24's curve).

Takes checkpoints of one zhang2020 CIFAR-10 classifier at several points of its training (the
Trainer's checkpoints, copied as training went on), and for each: test accuracy on the first
``--n-test`` test images, then the study's own attacks at the cpu profile's settings on the
first ``--n`` correctly classified test images with the study's random targets: targeted PGD
(the baseline) and ADV² against CAM. Reported per checkpoint: training step, accuracy, success
and target confidence (over successes, the paper's, and over all) of both attacks, and ADV²'s
and PGD's CAM-map L1 to the benign map.

    OMP_NUM_THREADS=1 python tools/accuracy_vs_success.py CKPT... --data-root DATA \\
        --out docs/results/zhang2020-accuracy-vs-success.json
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from underfire.checkpoint import load_checkpoint
from underfire.core import io as _io
from underfire.data import load_dataset
from underfire.robustness import collect_data
from underfire.studies.zhang2020.config import configure
from underfire.studies.zhang2020.measure import (
    adv2_attack,
    attack_row,
    build_interpreters,
    maps_of,
    pgd_attack,
    random_targets,
    run_attack,
    select_images,
)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> float:
    with torch.no_grad():
        right = sum(
            int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
            for i in range(0, x.shape[0], batch)
        )
    return right / x.shape[0]


def measure(path: Path, cfg: Any, test: tuple[torch.Tensor, torch.Tensor], n: int) -> dict:
    ckpt = load_checkpoint(path)
    model, name = ckpt.model, ckpt.model.config["name"]
    t0 = time.perf_counter()
    x_all, y_all = test
    row: dict[str, Any] = {
        "checkpoint": path.name,
        "model": name,
        "step": int((ckpt.trainer_state or {})["step"]),
        "test_accuracy": accuracy(model, x_all, y_all),
    }
    x, y, how = select_images(model, x_all, y_all, n, cfg.eval_batch)
    t = random_targets(y, 10, cfg.seed)
    interps, _notes = build_interpreters(cfg, model, x[:1], None)
    cam = interps["cam"]
    benign = {"cam": maps_of(cam, model, x, y, cfg.eval_batch)}
    pgd, _ = run_attack(pgd_attack(cfg, cfg.seed), model, x, y, t, cfg.eval_batch)
    attack, info = adv2_attack(cam, cfg, cfg.seed, int(x.shape[-1]))
    adv2, _ = run_attack(attack, model, x, y, t, cfg.eval_batch)
    for label, x_adv in (("pgd", pgd), ("adv2_cam", adv2)):
        adv_maps = {"cam": maps_of(cam, model, x_adv, t, cfg.eval_batch)}
        r = attack_row(model, x_adv, t, benign, adv_maps, cfg.eval_batch)
        row[label] = {
            "success": r["success"],
            "confidence_successful": r["confidence_successful"],
            "confidence": r["confidence"],
            "cam_l1": r["maps"]["cam"]["l1"],
        }
    row.update(images=how, n=int(x.shape[0]), adv2=info, seconds=round(time.perf_counter() - t0, 1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--n", type=int, default=16, help="attacked images (the cpu profile's)")
    ap.add_argument("--n-test", type=int, default=2000, help="test images for the accuracy")
    ap.add_argument("--out", type=Path, default=Path("accuracy-vs-success.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = configure(dataset="cifar10", profile="cpu", data_root=args.data_root)
    test = collect_data(load_dataset("cifar10", "test", root=args.data_root), args.n_test)
    rows = []
    for path in args.checkpoints:
        rows.append(measure(path, cfg, test, args.n))
        r = rows[-1]
        print(
            f"{r['model']} step {r['step']}: accuracy {r['test_accuracy']:.3f}; PGD success "
            f"{r['pgd']['success']:.2f} conf {r['pgd']['confidence_successful']}; ADV²-CAM "
            f"{r['adv2_cam']['success']:.2f}, L1 {r['adv2_cam']['cam_l1']:.3f} vs PGD "
            f"{r['pgd']['cam_l1']:.3f} ({r['seconds']} s)",
            flush=True,
        )
        _io.write_json(
            args.out,
            {
                "command": "tools/accuracy_vs_success.py",
                "date": date.today().isoformat(),
                "machine": f"{platform.processor() or platform.machine()}, 1 thread",
                "eps": cfg.eps,
                "n_test": args.n_test,
                "rows": rows,
            },
        )


if __name__ == "__main__":
    main()
