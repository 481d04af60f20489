"""`underfire explain`: interpretation maps of a checkpoint's predictions, as a figure grid."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_force,
    add_out,
    checkpoint_and_data,
    device_of,
    guarded_output,
    positive_int,
    say,
)
from underfire.plotting import save_grid

#: One line for `underfire --help` (read without building the full parser).
HELP = "interpretation maps (grad, smoothgrad, ig, cam, gradcam, mask, rts, ensemble) as a figure"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help=HELP,
        description="Explain a checkpoint's predictions on N images of a dataset split with one or more "
        "interpreters. Writes OUT/explain.png (image, prediction, one map per interpreter), "
        "OUT/explain.json and OUT/maps.pt.",
    )
    add_checkpoint(p)
    p.add_argument(
        "--interpreter",
        default="grad,gradcam,mask",
        help="comma-separated interpreter names (default: grad,gradcam,mask)",
    )
    p.add_argument("--n", type=positive_int, default=16, help="number of images (default: 16)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument(
        "--rts-checkpoint",
        type=Path,
        default=None,
        help="masking network from `underfire train-rts` (for rts)",
    )
    p.add_argument(
        "--mask-steps",
        type=positive_int,
        default=300,
        help="MASK optimizer iterations (default: 300)",
    )
    p.add_argument("--seed", type=int, default=0)
    add_data(p)
    add_out(p, "runs/explain")
    add_force(p, "replace the results of a different run already in --out")
    add_device(p)
    p.set_defaults(func=run)


def build_interpreters(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from underfire.core.errors import CommandError
    from underfire.interpreters import create_interpreter, interpreter_names

    known = interpreter_names()
    built = {}
    for name in names:
        if name not in known:
            raise CommandError(f"unknown interpreter {name!r}; choose from: {', '.join(known)}")
        kwargs: dict[str, Any] = {}
        if name == "mask":
            kwargs = {"steps": args.mask_steps, "seed": args.seed}
        elif name == "smoothgrad":
            kwargs = {"seed": args.seed}
        elif name == "rts":
            if args.rts_checkpoint is None:
                raise CommandError(
                    "the rts interpreter needs --rts-checkpoint (train one with `underfire train-rts`)"
                )
            kwargs = {"checkpoint": args.rts_checkpoint}
        built[name] = create_interpreter(name, **kwargs)
    return built


def run(args: argparse.Namespace) -> int:
    import torch

    from underfire.core import io as _io
    from underfire.core.errors import CommandError

    names = [s.strip().lower() for s in args.interpreter.split(",") if s.strip()]
    if not names:
        raise CommandError("--interpreter needs at least one name")
    device = device_of(args)
    ckpt, dataset, data = checkpoint_and_data(args, args.split)
    model = ckpt.model
    interpreters = build_interpreters(names, args)
    n = min(args.n, len(data))
    x = torch.stack([data[i][0] for i in range(n)]).to(device)
    y = torch.tensor([int(data[i][1]) for i in range(n)], device=device)
    with torch.no_grad():
        probs = model(x).softmax(1)
    conf, pred = probs.max(1)

    with guarded_output(args, "explain", ("explain.png", "maps.pt", "explain.json")) as out:
        maps: dict[str, torch.Tensor] = {}
        info: dict[str, Any] = {}
        for name, interp in interpreters.items():
            say(f"explain: {name} on {n} images")
            t0 = time.perf_counter()
            try:
                maps[name] = interp(model, x, pred).detach()
            except ValueError as err:  # e.g. CAM on a network without a GAP→FC head
                say(f"explain: skipping {name}: {err}")
                info[name] = {"skipped": str(err)}
                continue
            info[name] = {"seconds": round(time.perf_counter() - t0, 3), "config": interp.config()}
        if not maps:
            raise CommandError(
                "no interpreter applies to this model: "
                + "; ".join(f"{k}: {v['skipped']}" for k, v in info.items())
            )

        figure = save_grid(
            out / "explain.png",
            x,
            y,
            pred,
            conf,
            maps,
            data.classes if hasattr(data, "classes") else None,
        )
        _io.atomic_write(
            out / "maps.pt", lambda f: torch.save({k: v.cpu() for k, v in maps.items()}, f)
        )
        summary = {
            "checkpoint": str(args.checkpoint),
            "dataset": dataset,
            "split": args.split,
            "n": n,
            "labels": y.tolist(),
            "predictions": pred.tolist(),
            "confidence": [round(c, 4) for c in conf.tolist()],
            "interpreters": info,
            "figure": str(figure),
        }
        _io.write_json(out / "explain.json", summary)
        print(
            json.dumps(
                {
                    "figure": str(figure),
                    "interpreters": {
                        k: ("skipped" if "skipped" in v else v["seconds"]) for k, v in info.items()
                    },
                },
                indent=2,
            )
        )
    return 0
