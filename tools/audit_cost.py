"""What an audit cost and found, per part, from the results.json of finished audit runs.

For the cost table of docs/audit.md: each run's seconds per part (the attacks, transfer, maps,
the rest), the whole run, its mode, the worst-case robust accuracy per ε, the minimal attack's
success and median norms, the map distances of PGD and ADV², and how many samples the open
mode attacked. Written atomically as one JSON file.

    python tools/audit_cost.py RUN_DIR... --label "quiet, 1 thread" \\
        --out docs/results/audit-mnist-n500.json
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path
from typing import Any

import torch

from underfire.core import io as _io


def summary(folder: Path) -> dict[str, Any]:
    r = json.loads((folder / "results.json").read_text())
    parts = {k: v["seconds"] for k, v in r.items() if isinstance(v, dict) and "seconds" in v}
    minimal = {
        k.removeprefix("attack-"): {
            "success_rate": v["success_rate"],
            "n_right": v["n_right"],
            "median": v["median"],
        }
        for k, v in r.items()
        if k.startswith("attack-") and "success_rate" in v
    }
    attacked = {
        k: v["attacked"] for k, v in r.items() if isinstance(v, dict) and "attacked" in v
    } | {
        f"{a} (transferred)": t["attacked"]
        for a, t in r.get("transfer", {}).get("attacks", {}).items()
        if "attacked" in t
    }
    maps = {
        k.removeprefix("maps-"): {
            label: {"l1": a["l1"], "iou": a["iou"], "reached_target": a["reached_target"]}
            for label, a in v["attacks"].items()
        }
        for k, v in r.items()
        if k.startswith("maps-")
    }
    return {
        "folder": str(folder),
        "mode": r["worst_case"]["mode"],
        "n": r["clean"]["n"],
        "clean_accuracy": r["clean"]["accuracy"],
        "seconds": r["seconds"],
        "part_seconds": parts,
        "eps": r["worst_case"]["eps"],
        "worst_case": r["worst_case"]["accuracy"],
        "worst_case_over": r["worst_case"]["attacks"],
        "minimal": minimal,
        "attacked": attacked,
        "maps": maps,
        "soundness": {c["check"]: c["passed"] for c in r["soundness"]},
        "config": r["config"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="audit output folders")
    p.add_argument("--label", default="", help="how the machine was (quiet, loaded, threads)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    out = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads available",
        "conditions": args.label,
        "torch": torch.__version__,
        "runs": [summary(f) for f in args.runs],
    }
    _io.write_json(args.out, out)
    for run in out["runs"]:
        print(f"{run['folder']}: {run['mode']}, {run['seconds']:.1f} s, worst {run['worst_case']}")


if __name__ == "__main__":
    main()
