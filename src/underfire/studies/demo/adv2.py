"""Demo section: ADV² (Zhang et al., "Interpretable Deep Learning under Fire", USENIX Security
2020) against the demo classifier and two of its interpreters, next to PGD.

Both attacks are targeted ((y + 1) mod 10) with the same ε, step and number of steps; the
question is what the interpreter shows afterwards. PGD reaches the target and changes the map;
ADV² reaches it while keeping the map close to the benign one. ε = 0.3: the 8×8 digits have 17
grey levels and the paper's ε = 0.031 moves no prediction there.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from underfire.attacks import ADV2, PGD
from underfire.interpreters import GradCAM, Interpreter, Saliency
from underfire.metrics import l1_distance, topk_iou
from underfire.plotting import new_figure, save_figure
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.demo.sections import cached_section, one_thread, section_part

__all__ = ["PARTS", "evaluation", "write"]

N_IMAGES = 6
EPS, STEP = 0.3, 0.01


def evaluation(run: StudyRun) -> dict[str, Any]:
    """ADV² and PGD against two interpreters of the demo model: their numbers and figure."""
    with one_thread(run):
        return _evaluation(run)


def _evaluation(run: StudyRun) -> dict[str, Any]:
    model, device, test = run.state["model"].eval(), run.device, run.state["test"]
    x = test.x[:N_IMAGES].to(device)
    y = test.y[:N_IMAGES].to(device)
    t = (y + 1) % 10
    with torch.no_grad():
        pred = model(x).argmax(1)
    interpreters: dict[str, Interpreter] = {"grad": Saliency(), "gradcam": GradCAM()}
    rows: list[dict[str, Any]] = []
    images: dict[str, torch.Tensor] = {"clean": x}
    maps: dict[str, dict[str, torch.Tensor]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for name, interp in interpreters.items():
        run.log(f"adv2: attacking {name}")
        start = time.perf_counter()
        attack = ADV2(interp, preset="small", eps=EPS, step_size=STEP, seed=run.config.seed)
        x_adv = attack(model, x, y, target=t)
        seconds = time.perf_counter() - start
        settings[name] = attack.config()  # what ran (after the preset was applied)
        steps = attack.warm_steps + len(attack.lambdas())
        x_pgd = PGD(eps=EPS, step_size=STEP, steps=steps, random_start=False)(model, x, y, target=t)
        with torch.no_grad():
            p_pgd = model(x_pgd).softmax(1)
        benign = interp(model, x, pred)
        pgd_map = interp(model, x_pgd, t)
        r = attack.result
        assert r is not None
        images["PGD"] = x_pgd  # the same for every interpreter
        images[f"ADV² ({name})"] = x_adv
        maps[name] = {
            "benign": benign,
            "PGD": pgd_map,
            "ADV²": interp(model, x_adv, t),
        }
        for label, success, conf, l1, iou in (
            (
                "PGD",
                (p_pgd.argmax(1) == t).float().mean(),
                p_pgd.gather(1, t[:, None]).mean(),
                l1_distance(pgd_map, benign).mean(),
                topk_iou(pgd_map, benign).mean(),
            ),
            ("ADV²", r.success.float().mean(), r.confidence.mean(), r.l1.mean(), r.iou.mean()),
        ):
            rows.append(
                {
                    "interpreter": name,
                    "attack": label,
                    "success": round(float(success), 3),
                    "confidence": round(float(conf), 3),
                    "map_l1": round(float(l1), 4),
                    "map_iou": round(float(iou), 4),
                }
            )
        rows[-1]["seconds"] = round(seconds, 2)

    if run.out is not None:
        _figure(run, images, maps, y, t)
    return {
        "n_images": N_IMAGES,
        "eps": EPS,
        "step_size": STEP,
        "target": "(y + 1) mod 10",
        "rows": rows,
        "settings": settings,
    }


def _figure(
    run: StudyRun,
    images: dict[str, torch.Tensor],
    maps: dict[str, dict[str, torch.Tensor]],
    y: torch.Tensor,
    t: torch.Tensor,
) -> None:
    columns: list[tuple[str, torch.Tensor, bool]] = [(k, v, False) for k, v in images.items()]
    for name, by_attack in maps.items():
        columns += [(f"{name}: {k}", v, True) for k, v in by_attack.items()]
    n, cols = images["clean"].shape[0], len(columns)
    fig = new_figure(1.3 * cols, 1.35 * n + 0.4)
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        for j, (title, tensor, is_map) in enumerate(columns):
            ax = axes[i][j]
            img = tensor[i].detach().cpu().permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(img, cmap="jet" if is_map else "gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{int(y[i])} → {int(t[i])}", fontsize=8)
    save_figure(fig, run.figure_path("adv2.png"))


def adv2(run: StudyRun) -> dict[str, Any]:
    run.log("section: adv2")
    return cached_section(run, "adv2", evaluation, uses=("model", "test"))


def write(report: Report, run: StudyRun) -> None:
    """The "ADV²" section of the report."""
    r = run.results["adv2"]
    report.section("ADV²: fooling the classifier and its interpreter")
    report.text(
        f"ADV² (Zhang et al., USENIX Security 2020) against the demo classifier on {r['n_images']} test "
        f"images, target (y + 1) mod 10, L∞ ε = {r['eps']} (the 8×8 digits have 17 grey levels; the "
        "paper's 0.031 moves nothing here), next to PGD with the same ε, step and number of steps. "
        "Success: prediction equals the target; L1 and top-k IoU compare the interpreter's map "
        "of the adversarial example (for the target class) with the benign map (for the clean "
        "prediction): ADV² should reach the target like PGD while keeping the map closer "
        "(lower L1, higher IoU)."
    )
    report.table(r["rows"])
    report.figure(
        run.figure_path("adv2.png"),
        "Clean, PGD and ADV² images (first columns) and each interpreter's benign, PGD and ADV² maps",
    )


PARTS = (section_part("adv2", "adv2", adv2),)
