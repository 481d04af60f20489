"""The code version follows the underfire code a part reaches, not only the part's own function:
a changed default, algorithm or preset table of an attack it builds is recomputed."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from underfire.attacks import BIM, CW, FGSM
from underfire.attacks.adv2 import presets
from underfire.studies.cache import code_version

transfer_accuracy = importlib.import_module(
    "underfire.studies.ross2018.evaluation"
).transfer_accuracy
adv2_attack = importlib.import_module("underfire.studies.zhang2020.measure").adv2_attack
audit_attacks = importlib.import_module("underfire.studies.audit.attacks")
zhang2020_report = importlib.import_module("underfire.studies.zhang2020.report")


def test_a_changed_default_of_an_attack_the_part_builds_changes_its_code_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the key covers only the part's own bytecode: ross2018's transfer matrix builds
    FGSM with its library defaults, and those decide the result."""
    before = code_version(transfer_accuracy)
    monkeypatch.setattr(FGSM.__init__, "__kwdefaults__", {"eps": 0.25})
    assert code_version(transfer_accuracy) != before
    monkeypatch.undo()
    assert code_version(transfer_accuracy) == before


def test_a_changed_algorithm_reached_through_a_class_changes_the_code_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if class members (the attack's step, reached through the class, not by name) or
    base classes are left out of the walk."""
    before = code_version(audit_attacks.run_attacks)
    original = CW.__init__.__kwdefaults__
    monkeypatch.setattr(CW.__init__, "__kwdefaults__", {**original, "warm_start": True})
    assert code_version(audit_attacks.run_attacks) != before
    monkeypatch.undo()

    # ross2018's iterated TGSM is BIM, whose step is PGD's (its base class)
    before = code_version(transfer_accuracy)
    monkeypatch.setattr(BIM.__mro__[1], "_perturb", lambda self, *a, **k: None)
    assert code_version(transfer_accuracy) != before


def test_a_changed_preset_table_changes_the_code_version_of_a_part_that_imports_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if module-level tables (ADV²'s presets) or functions imported inside the part's
    function (``from underfire.attacks import ADV2``) are not followed."""
    before = code_version(adv2_attack)
    family = next(iter(presets.PRESETS["small"]))
    changed = {**presets.PRESETS["small"][family], "pgd_steps_for_test": 7}
    monkeypatch.setitem(presets.PRESETS["small"], family, changed)
    assert code_version(adv2_attack) != before


def test_code_the_part_cannot_reach_leaves_its_code_version_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the walk spreads to unrelated code (a report's layout), which would recompute
    every finished part after any edit."""
    before = code_version(transfer_accuracy)
    for name, value in list(vars(zhang2020_report).items()):
        if callable(value) and getattr(value, "__module__", "") == zhang2020_report.__name__:
            monkeypatch.setattr(zhang2020_report, name, lambda *a, **k: None)
    assert code_version(transfer_accuracy) == before


_PROGRAM = """
import importlib, json
from underfire.studies.cache import code_version
targets = [
    ("underfire.studies.ross2018.evaluation", "transfer_accuracy"),
    ("underfire.studies.zhang2020.measure", "adv2_attack"),
    ("underfire.studies.audit.attacks", "run_attacks"),
    ("underfire.studies.zheng2020.diagnosis", "_diagnose"),
]
print(json.dumps([code_version(getattr(importlib.import_module(m), f)) for m, f in targets]))
"""


def test_the_code_version_is_the_same_in_every_process() -> None:
    """Fails if the digest picks up memory addresses, hash-seeded set or dict orders, or the
    state a process builds up, so that a resumed run never found its finished parts."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", _PROGRAM],
            capture_output=True,
            text=True,
            check=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert json.loads(runs[0]) == json.loads(runs[1])


_LATE_IMPORT = """
import sys
from underfire.studies.cache import code_version
module = "underfire.studies.ross2018.figures"
assert module not in sys.modules, "pick a module the cache does not import"
namespace = {}
exec("def f(run):\\n    from underfire.studies.ross2018.figures import make_figures\\n"
     "    return make_figures\\n", namespace)
before = code_version(namespace["f"])
__import__(module)
assert code_version(namespace["f"]) == before
print("ok")
"""


def test_a_part_that_imports_inside_its_body_has_one_version_before_and_after_it_ran() -> None:
    """Fails if the modules a part imports in its body are walked only once something else
    imported them: its key would change between a fresh and a resumed run."""
    done = subprocess.run(
        [sys.executable, "-c", _LATE_IMPORT], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "ok"
