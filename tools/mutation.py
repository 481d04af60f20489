"""Mutation testing of the modules every result depends on (not part of CI).

For each module listed in tools/mutation.toml, mutmut (>= 3) rewrites the module into many
mutants (an operator flipped, a constant changed, an argument dropped...) and runs, for each
mutant, the module's fast tests that call the mutated function. A mutant that no test fails on
"survives": either a test is missing or the mutant is equivalent (behaves like the original).

Each module runs in its own scratch copy of the repository (build/mutation/<module>), with
one worker process and one torch thread (the machine is shared). The script writes
docs/results/mutation.json and docs/results/mutation.md: the score per module and every
surviving mutant with its file, line and diff. Modules not run this time keep their last entry.

    python tools/mutation.py                      # every module
    python tools/mutation.py --module norms       # modules whose path contains "norms"
    python tools/mutation.py --module pgd --recheck  # rerun last run's survivors only
    python tools/mutation.py --module pgd --resume   # finish an interrupted run
    python tools/mutation.py --module base --time-limit 600  # stop after 10 minutes
    python tools/mutation.py --list               # the modules and their tests

Needs ``pip install -e .[mutation]``.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tools" / "mutation.toml"

# mutmut's exit codes per mutant (mutmut/stats.py); a timeout is a detected mutant too.
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
STATUS_BY_CODE = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    37: "caught by type check",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
    None: "not checked",
}


@dataclass(frozen=True)
class Module:
    path: str  # e.g. src/underfire/core/norms.py
    tests: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def load_config(path: Path = CONFIG) -> tuple[dict[str, Any], list[Module]]:
    data = tomllib.loads(path.read_text("utf-8"))
    settings = data.get("settings", {})
    modules = []
    for entry in data.get("module", []):
        module = Module(entry["path"], tuple(entry["tests"]))
        missing = [
            p for p in (module.path, *module.tests) if not (REPO / p.split("::")[0]).exists()
        ]
        if missing:
            raise SystemExit(f"{path}: {module.path}: no such file(s) {missing}; fix the list")
        modules.append(module)
    return settings, modules


def select(modules: list[Module], patterns: list[str]) -> list[Module]:
    if not patterns:
        return modules
    chosen = [m for m in modules if any(p in m.path for p in patterns)]
    if not chosen:
        known = ", ".join(m.path for m in modules)
        raise SystemExit(f"no module matches {patterns}; known: {known}")
    return chosen


def _toml_list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare_workdir(work: Path, module: Module, pytest_args: list[str], fresh: bool) -> None:
    """A scratch copy of src/ and tests/ with a pyproject.toml that configures only mutmut and
    pytest (the repository's addopts start xdist workers, which mutmut cannot use)."""
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    if not (work / "src").exists():
        shutil.copytree(REPO / "src", work / "src", ignore=ignore)
    # tests are refreshed on every run (a recheck sees the tests written since)
    shutil.rmtree(work / "tests", ignore_errors=True)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore)
    shutil.rmtree(work / "mutants" / "tests", ignore_errors=True)
    shutil.copytree(REPO / "tests", work / "mutants" / "tests", ignore=ignore)
    markers = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["pytest"][
        "ini_options"
    ]["markers"]
    (work / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list([module.path])}\n"
        f"pytest_add_cli_args = {_toml_list(pytest_args)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}\n"
        'process_isolation = "fork"\n'
        "use_git_change_detection = false\n"
        "\n[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        f"markers = {_toml_list(markers)}\n",
        "utf-8",
    )


def run_mutmut(work: Path, mutants: list[str], log: Path, limit: float | None = None) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)  # mutmut puts mutants/src first; the editable install is last
    mutmut = shutil.which("mutmut") or "mutmut"
    cmd = [mutmut, "run", "--max-children", "1", *mutants]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:  # results so far are saved mutant by mutant
            proc.terminate()
            return proc.wait()


def read_results(work: Path, module: Module) -> dict[str, str]:
    meta = work / "mutants" / (module.path + ".meta")
    if not meta.exists():
        raise SystemExit(f"mutmut wrote no results for {module.path} ({meta} missing); see the log")
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return {key: STATUS_BY_CODE.get(code, "suspicious") for key, code in codes.items()}


def mutant_diffs(work: Path, module: Module, keys: list[str]) -> dict[str, str]:
    """The diff of each mutant, as ``mutmut show`` prints it, read in this process (a
    ``mutmut show`` per mutant would import mutmut and libcst again each time)."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(work)
    reset_config()
    try:
        return {key: get_diff_for_mutant(key, path=Path(module.path)).strip() for key in keys}
    finally:
        os.chdir(here)
        reset_config()


def _function_spans(source: str) -> dict[str, tuple[int, int]]:
    """(first, last) line of each function, keyed as mutmut mangles it: ``x_f`` for a
    function, ``xǁClassǁmethod`` for a method."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            spans[f"x_{node.name}"] = (node.lineno, node.end_lineno or node.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    key = f"xǁ{node.name}ǁ{item.name}"
                    spans[key] = (item.lineno, item.end_lineno or item.lineno)
    return spans


def mutant_line(
    source_lines: list[str], spans: dict[str, tuple[int, int]], key: str, diff: str
) -> int | None:
    """The source line the mutant changes: the first removed line of its diff, looked up in
    the mutated function's span."""
    function = key.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    removed = [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    if function not in spans or not removed:
        return None
    first, last = spans[function]
    for number in range(first, last + 1):
        if source_lines[number - 1].strip() == removed[0].strip():
            return number
    return first


def summarize(module: Module, statuses: dict[str, str], work: Path) -> dict[str, Any]:
    source = (work / module.path).read_text("utf-8")  # the copy mutmut ran on
    lines, spans = source.splitlines(), _function_spans(source)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = []
    alive = sorted(
        (k for k, s in statuses.items() if s not in KILLED and s != "not checked"), key=_natural
    )
    diffs = mutant_diffs(work, module, alive)
    for key in alive:
        status, diff = statuses[key], diffs[key]
        survivors.append(
            {
                "mutant": key,
                "status": status,
                "file": module.path,
                "line": mutant_line(lines, spans, key, diff),
                "diff": diff,
            }
        )
    killed = sum(n for s, n in counts.items() if s in KILLED)
    total = len(statuses)
    checked = total - counts.get("not checked", 0)  # below total when a run was cut short
    return {
        "module": module.path,
        "tests": list(module.tests),
        "killed": killed,
        "checked": checked,
        "total": total,
        "score": round(100.0 * killed / checked, 1) if checked else None,
        "status_counts": counts,
        "survivors": survivors,
    }


def _report_modules(json_path: Path) -> list[dict[str, Any]]:
    if not json_path.exists():
        return []
    modules: list[dict[str, Any]] = json.loads(json_path.read_text("utf-8"))["modules"]
    return modules


def _save_statuses(work: Path, statuses: dict[str, str]) -> None:
    (work / "statuses.json").write_text(json.dumps(statuses, indent=0, sort_keys=True), "utf-8")


def _load_statuses(work: Path) -> dict[str, str]:
    path = work / "statuses.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def _natural(key: str) -> tuple[str, int]:
    stem, _, number = key.rpartition("__mutmut_")
    return (stem, int(number) if number.isdigit() else 0)


def write_reports(settings: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    json_path, md_path = REPO / settings["report_json"], REPO / settings["report_md"]
    previous = json.loads(json_path.read_text("utf-8")) if json_path.exists() else {}
    modules = {m["module"]: m for m in previous.get("modules", [])}
    modules.update(results)
    killed = sum(m["killed"] for m in modules.values())
    checked = sum(m.get("checked", m["total"]) for m in modules.values())
    report = {
        "tool": f"mutmut {_mutmut_version()}",
        "target_percent": settings["target"],
        "killed": killed,
        "checked": checked,
        "total": sum(m["total"] for m in modules.values()),
        "score": round(100.0 * killed / checked, 1) if checked else None,
        "modules": sorted(modules.values(), key=lambda m: m["module"]),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md_path.write_text(_markdown(report), "utf-8")


def _markdown(report: dict[str, Any]) -> str:
    out = [
        "# Mutation testing",
        "",
        f"Written by `python tools/mutation.py` ({report['tool']}); see docs/developing.md,"
        ' section "Mutation testing", for the equivalent survivors explained.',
        "",
        f"Overall: **{report['killed']} of {report.get('checked', report['total'])} checked"
        f" mutants killed ({report['score']} %)**, {report['total']} mutants in all;"
        f" target {report['target_percent']} %. A module with fewer checked than mutants was"
        " cut short (`--time-limit`); `--resume` finishes it.",
        "",
        "| module | killed | checked | mutants | score (killed/checked) | run on | wall time |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for m in report["modules"]:
        out.append(
            f"| `{m['module']}` | {m['killed']} | {m.get('checked', m['total'])} | {m['total']} "
            f"| {m['score']} % | {m.get('date', '')} | {m.get('wall_s', '')} s |"
        )
    for m in report["modules"]:
        if not m["survivors"]:
            continue
        out += ["", f"## Survivors in `{m['module']}`", ""]
        for s in m["survivors"]:
            out += [
                f"`{s['mutant']}` ({s['status']}), line {s['line']}:",
                "",
                "```diff",
                s["diff"],
                "```",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", default=[], help="substring of a module path")
    parser.add_argument(
        "--recheck", action="store_true", help="rerun the last run's survivors only"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the last results, test the unchecked mutants"
    )
    parser.add_argument(
        "--time-limit", type=float, help="seconds per module; then stop (finish with --resume)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the last results"
    )
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    args = parser.parse_args(argv)
    settings, modules = load_config()
    chosen = select(modules, args.module)
    if args.list:
        for m in chosen:
            print(m.path, *m.tests, sep="\n    ")
        return 0
    previous: dict[str, Any] = {}
    json_path = REPO / settings["report_json"]
    if args.recheck and json_path.exists():
        previous = {m["module"]: m for m in json.loads(json_path.read_text("utf-8"))["modules"]}
    results = {}
    for module in chosen:
        work = REPO / settings["workdir"] / module.name
        if args.report_only:
            statuses = _load_statuses(work) or read_results(work, module)
            summary = summarize(module, statuses, work)
            old = next((m for m in _report_modules(json_path) if m["module"] == module.path), {})
            summary.update({k: old[k] for k in ("date", "wall_s") if k in old})
            results[module.path] = summary
            write_reports(settings, results)
            continue
        mutants: list[str] = []
        if args.recheck:
            if not (work / "mutants").exists() or module.path not in previous:
                raise SystemExit(
                    f"no earlier run of {module.path} to recheck; run without --recheck"
                )
            mutants = [s["mutant"] for s in previous[module.path]["survivors"]]
            if not mutants:
                results[module.path] = previous[module.path]
                continue
        prepare_workdir(
            work, module, settings["pytest_args"], fresh=not (args.recheck or args.resume)
        )
        log = work / "mutmut.log"
        start = time.monotonic()
        # A recheck reruns the last survivors only; the others keep their verdict, read from
        # statuses.json (mutmut itself forgets its verdicts when the test selection changes).
        before = _load_statuses(work) or read_results(work, module) if args.recheck else {}
        code = run_mutmut(work, mutants, log, args.time_limit)
        wall = round(time.monotonic() - start)
        statuses = read_results(work, module)
        if args.recheck:
            rerun = set(mutants)
            statuses = {
                k: s if k in rerun and s != "not checked" else before.get(k, s)
                for k, s in statuses.items()
            }
        _save_statuses(work, statuses)
        summary = summarize(module, statuses, work)
        summary["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        summary["wall_s"] = wall
        if args.recheck:
            summary["wall_s"] = f"{previous[module.path].get('wall_s')} + recheck {wall}"
        elif args.resume:
            summary["wall_s"] = f"{wall} (resumed)"
        results[module.path] = summary
        print(
            f"{module.path}: {summary['killed']}/{summary['total']} killed "
            f"({summary['score']} %), {len(summary['survivors'])} survivors, {wall} s"
            + ("" if code == 0 else f" (mutmut exit {code}, see {log})"),
            flush=True,
        )
        write_reports(settings, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
