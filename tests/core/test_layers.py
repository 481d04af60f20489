"""The import layers of DESIGN.md hold: each part imports only from its own layer or below,
and the parts form no import cycle (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import underfire

SRC = Path(underfire.__file__).parent

# Lower layers first. A part is a top-level module or subpackage of underfire.
LAYERS: list[set[str]] = [
    {"core", "_version"},
    {"data", "models", "checkpoint", "plotting", "report", "raters"},
    {"attacks", "interpreters", "metrics", "train"},
    {"defenses", "diagnosis", "robustness"},
    {"studies"},
    {"commands", "cli", "__main__", "__init__"},
]
LEVEL = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if bits[0] == "underfire" and len(bits) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every underfire module named by an import, ``__import__`` or ``import_module`` call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0]
            if name in ("__import__", "import_module") and isinstance(first, ast.Constant):
                found.add(str(first.value))
    return {m for m in found if m.startswith("underfire.")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _module_graph() -> dict[str, set[str]]:
    """Module → the underfire modules it imports (an imported name resolves to its submodule
    when one exists, else to the package it comes from)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            if _part(imported) and not any(
                m == f"underfire.{_part(imported)}" or m.startswith(f"underfire.{_part(imported)}.")
                for m in modules
            ):
                continue  # an optional part that does not exist (guarded by find_spec)
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def _graph() -> dict[str, set[str]]:
    """Part → the other parts it imports."""
    edges: dict[str, set[str]] = {}
    for src, dsts in _module_graph().items():
        src_part = _part(src) or "__init__"
        for dst in dsts:
            dst_part = _part(dst) or "__init__"
            if dst_part != src_part:
                edges.setdefault(src_part, set()).add(dst_part)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_part_has_a_layer() -> None:
    parts = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__pycache__"}
    unknown = sorted(parts - set(LEVEL))
    assert not unknown, f"add {unknown} to LAYERS in {__file__}"


def test_imports_go_down_the_layers() -> None:
    upward = [
        f"{src} (layer {LEVEL[src]}) imports {dst} (layer {LEVEL[dst]})"
        for src, dsts in _graph().items()
        for dst in dsts
        if LEVEL[dst] > LEVEL[src]
    ]
    assert not upward, "\n".join(upward)


def test_core_imports_nothing_else_of_underfire() -> None:
    assert _graph().get("core", set()) <= {"core"}


def test_no_import_cycles_between_parts() -> None:
    assert not _cycles(_graph()), f"import cycles between parts: {_cycles(_graph())}"


def test_no_import_cycles_between_modules() -> None:
    # TYPE_CHECKING imports count: a cycle there is a design smell even if it runs.
    cycles = _cycles(_module_graph())
    assert not cycles, f"import cycles between modules: {cycles}"


def _not_reexports(source: str, package: str) -> list[str]:
    """What in a package ``__init__`` is more than re-exports and registry registration: only
    a docstring, ``from __future__``, imports from the package's own modules, ``__all__`` (a
    list of the imported names) and ``<registry>.register(...)`` calls are allowed."""
    tree = ast.parse(source)
    problems: list[str] = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            if any(m.split(".")[0] == "argparse" for m in modules):
                problems.append(f"line {node.lineno}: imports argparse")
    for i, node in enumerate(tree.body):
        where = f"line {node.lineno}"
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.ImportFrom):
            own = node.level == 1 or (
                node.level == 0 and (node.module or "").startswith(f"{package}.")
            )
            if not own:
                problems.append(f"{where}: imports from {node.module}, not from {package}")
            imported.update(a.asname or a.name for a in node.names)
            continue
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            and isinstance(node.value, ast.List | ast.Tuple)
            and all(isinstance(e, ast.Constant) for e in node.value.elts)
        ):
            missing = {e.value for e in node.value.elts} - imported  # type: ignore[attr-defined]
            if missing:
                problems.append(f"{where}: __all__ names {sorted(missing)}, not imported")
            continue
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "register"
        ):
            continue
        problems.append(f"{where}: {type(node).__name__} (only imports, __all__, registration)")
    return problems


def test_defenses_init_keeps_reexports_and_the_registry_only() -> None:
    init = SRC / "defenses" / "__init__.py"
    assert _not_reexports(init.read_text(encoding="utf-8"), "underfire.defenses") == []


def test_reexport_check_catches_definitions_and_argparse() -> None:
    bad = (
        '"""doc"""\nimport argparse\nfrom underfire.defenses.base import create\n'
        "from underfire.train import Trainer\n"
        "def add_defense_arguments(p): ...\nclass Objective: ...\nX = 1\n"
        '__all__ = ["create", "Gone"]\n'
    )
    problems = "\n".join(_not_reexports(bad, "underfire.defenses"))
    for needle in (
        "imports argparse",
        "Import (only",
        "from underfire.train",
        "FunctionDef",
        "ClassDef",
        "Assign (only",
        "['Gone']",
    ):
        assert needle in problems, (needle, problems)
