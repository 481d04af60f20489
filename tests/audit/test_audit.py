"""`underfire.audit` (underfire.studies.audit) on a digits model: complete results, worst case, resume, inputs, report."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.browser import assert_report_renders
from underfire.core.errors import UnknownNameError
from underfire.core.outputs import OutputConflictError
from underfire.studies.audit import AuditConfig, audit, collect_data

SMALL = {
    "attacks": ("fgsm", "pgd", "cw"),
    "interpreters": ("grad",),
    "eps": (0.1, 0.3),
    "n": 48,
    "n_maps": 8,
    "pgd_steps": 5,
    "cw_steps": 10,
    "surrogate_epochs": 2,
}


@pytest.fixture(scope="module")
def audited(digits_model, digits_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return out, audit(digits_model, digits_splits["test"], out=out, **SMALL)


def test_results_are_complete_and_consistent(audited) -> None:
    """The worst case equals its per-sample definition, recomputed from the saved lists.

    On this data the minimum of the per-attack accuracies happens to coincide with it;
    test_worst_case_counts_a_sample_robust_only_if_every_attack_failed_on_it separates them.
    """
    out, r = audited
    assert r["config"]["eps"] == [0.0, 0.1, 0.3]
    assert r["clean"]["n"] == 48 and r["clean"]["accuracy"] > 0.9
    worst = r["worst_case"]["accuracy"]
    correct = {name: r[f"attack-{name}"]["correct"] for name in ("fgsm", "pgd", "cw")}
    for i, w in enumerate(worst):
        # robust at ε: classified correctly when clean and under every attack at ε
        robust = torch.tensor(r["clean"]["correct"])
        for per_eps in correct.values():
            robust &= torch.tensor(per_eps[i])
        assert w == pytest.approx(robust.double().mean().item())
    for per_eps in correct.values():  # hence never above any single attack
        acc = [sum(c) / len(c) for c in per_eps]
        assert all(w <= a + 1e-9 for w, a in zip(worst, acc, strict=True))
    assert worst[0] == pytest.approx(r["clean"]["accuracy"])
    assert worst[-1] < 0.2  # ε = 0.3 breaks a normally trained digits model
    assert r["attack-cw"]["median"]["l2"] is None or r["attack-cw"]["median"]["l2"] > 0
    assert set(r["transfer"]["attacks"]) == {"fgsm", "pgd"}
    assert {c["check"] for c in r["soundness"]} >= {
        "an unbounded attack (PGD, ε = 1) drives accuracy to ~0",
    }
    # the open mode (the default): curves are cumulative, the checks comparing attacks' own
    # curves are not run and the notes say so
    assert r["worst_case"]["mode"] == "open" and r["attack-pgd"]["cumulative"] == ["fgsm"]
    assert any("--exhaustive" in note for note in r["notes"])
    maps = r["maps-grad"]["attacks"]["PGD"]
    assert 0 <= maps["l1"] <= 1 and 0 <= maps["iou"] <= 1
    saved = json.loads((out / "results.json").read_text())
    assert "correct" not in json.dumps(saved)  # per-sample lists stay in parts/
    assert set(saved["attack-cw"]["median"]) == {"l0", "l2", "linf"}  # the medians all stay
    # the surrogate's agreement is measured on images it was not trained on
    assert (
        r["transfer"]["trained_on"] == 39 and r["transfer"]["agreement_on"] == "9 held-out images"
    )
    md = (out / "report.md").read_text()
    assert "Maps of 8 images (the figures show the first 8)" in md
    # readable headers; whole-layer patching (1.00 by construction on a chain) left out, said so
    assert "information loss" in md and "information_loss" not in md and "restored_top" not in md
    if all(row["restored"] == 1 for row in r["diagnosis"]["table"]):
        assert "restored (whole layer)" not in md and "so those two columns are left out" in md
    assert_report_renders(out / "report.html", min_images=2)  # also: no table cut off


def test_exhaustive_audit_has_each_attack_on_every_sample_and_no_lower_worst_case(
    audited, digits_model, digits_splits, tmp_path: Path
) -> None:
    _, fast = audited
    full = audit(digits_model, digits_splits["test"], out=tmp_path, exhaustive=True, **SMALL)
    assert full["worst_case"]["mode"] == "exhaustive"
    for e, a_fast, a_full in zip(
        full["worst_case"]["eps"],
        fast["worst_case"]["accuracy"],
        full["worst_case"]["accuracy"],
        strict=True,
    ):
        assert a_fast <= a_full + 1e-9, f"open mode's worst case above the exhaustive one at ε={e}"
    assert "iterative PGD is not weaker than single-step FGSM" in {
        c["check"] for c in full["soundness"]
    }
    # the open mode's PGD curve is PGD after FGSM: never above either exhaustive curve
    for i in range(len(full["worst_case"]["eps"])):
        cum = fast["attack-pgd"]["accuracy"][i]
        assert cum <= min(full["attack-pgd"]["accuracy"][i], full["attack-fgsm"]["accuracy"][i])
    assert "Run exhaustively" in (tmp_path / "report.md").read_text()
    _open_transfer_is_the_exhaustive_one_on_what_white_box_left(fast, full)
    # every cached part is keyed on the mode: an open run never reuses an exhaustive part
    from underfire.studies.audit.config import RESULT_FIELDS

    assert "exhaustive" in RESULT_FIELDS


def _open_transfer_is_the_exhaustive_one_on_what_white_box_left(
    fast, full, white_box=("fgsm", "pgd", "cw")
) -> None:
    """Per sample and ε, the open mode's transfer rows are exact: robust after the white-box
    attacks (open) and after every transferred example at this or a smaller ε of the
    exhaustive run (the same surrogate, attacks and random starts). Its ``broke`` counts what
    the white-box attacks missed; the worst case is its last row."""
    n_eps = len(fast["config"]["eps"])
    white = torch.tensor(fast["clean"]["correct"])[None].repeat(n_eps, 1)
    for a in white_box:
        white &= torch.tensor(fast[f"attack-{a}"]["correct"])
    expected, prior = white.clone(), white
    for name in ("fgsm", "pgd"):  # cheapest first
        own = torch.tensor(full["transfer"]["attacks"][name]["correct"], dtype=torch.int)
        own = own.cummin(0).values.bool()
        expected &= own
        got = fast["transfer"]["attacks"][name]
        assert torch.equal(torch.tensor(got["correct"]), expected), name
        assert got["broke"] == (prior & ~expected).sum(1).tolist()
        # only the open samples: left by what ran before, and by this transfer at the
        # smaller ε; at ε = 0 none (the clean prediction stands)
        assert got["attacked"] == [0, *(prior[1:] & expected[:-1]).sum(1).tolist()]
        prior = expected.clone()
    assert fast["transfer"]["attacks"]["pgd"]["cumulative"] == ["white-box", "fgsm"]
    assert fast["worst_case"]["accuracy"] == pytest.approx(expected.double().mean(1).tolist())
    assert "pgd (transferred)" in fast["worst_case"]["attacks"]
    # what the transfer could attack: it must have had samples, or the check says nothing
    assert white[1:].sum() > 0


class _Quantized(torch.nn.Module):
    """Rounds its input to quarter steps: zero input gradients (masked gradients)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def test_open_transfer_breaks_what_masked_gradients_hide_exactly_as_the_exhaustive_one(
    digits_model, digits_splits, tmp_path: Path
) -> None:
    """On a model whose input gradients are zero the white-box attacks leave samples that a
    surrogate's examples break. The open mode must find exactly the exhaustive transfer's
    breaks among them (fails if the examples are crafted on the model itself, if the
    transfer ignores what the white-box attacks left, or if ε's carry is lost), and its
    soundness check must fail, naming the ε."""
    masked = _Quantized(digits_model).eval()
    options = {
        "attacks": ("fgsm", "pgd"),
        "interpreters": (),
        "eps": (0.1, 0.3),
        "n": 120,
        "pgd_steps": 5,
        "surrogate_epochs": 10,
    }
    with pytest.warns(Warning, match="gradients are all zero"):
        fast = audit(masked, digits_splits["test"], out=tmp_path / "open", **options)
        full = audit(
            masked, digits_splits["test"], out=tmp_path / "full", exhaustive=True, **options
        )
    _open_transfer_is_the_exhaustive_one_on_what_white_box_left(fast, full, ("fgsm", "pgd"))
    broke = [sum(t["broke"]) for t in fast["transfer"]["attacks"].values()]
    assert sum(broke) > 0.1 * options["n"], broke  # the transfer found what white-box missed
    failed = [
        c
        for c in fast["soundness"]
        if c["check"].endswith("white-box is not weaker than transfer from a surrogate")
        and not c["passed"]
    ]
    assert failed and "ε=0.3" in failed[0]["evidence"]


def test_rerun_resumes_from_saved_parts(audited, digits_model, digits_splits) -> None:
    out, first = audited
    part = out / "parts" / "attack-cw.json"
    stamp = part.stat().st_mtime_ns
    os.utime(part, ns=(stamp, stamp))
    again = audit(digits_model, digits_splits["test"], out=out, **SMALL)
    assert part.stat().st_mtime_ns == stamp  # not recomputed
    assert again["worst_case"] == first["worst_case"]
    # the header does not pass the resumed run's seconds off as the audit's cost
    assert "attack-cw" in again["resumed"] and again["part_seconds"] >= first["part_seconds"] - 0.1
    assert "it resumed an earlier one" in (out / "report.md").read_text()


def test_a_recomputed_part_equals_the_fresh_one_whatever_was_reused_before_it(
    digits_model, digits_splits, tmp_path: Path, monkeypatch
) -> None:
    """Fails if a part's result depends on how much randomness earlier parts drew: the
    transfer part's surrogate was built before it was seeded, so a resumed audit (earlier
    parts reused, drawing nothing) trained another surrogate than the fresh run had."""
    import sys

    small = SMALL | {"attacks": ("fgsm",), "interpreters": ("grad",), "n": 24}

    def inside_transfer() -> bool:
        frame = sys._getframe()
        while frame is not None:
            if frame.f_code.co_name == "_transfer":
                return True
            frame = frame.f_back
        return False

    # the fresh run's earlier parts draw from the global generator (as an attack with a random
    # start or a stochastic model would); the resumed run reuses them and draws nothing. A
    # hook on the model, not changed code: changed code would (rightly) change every key.
    def drawing(_module, _inputs):
        if not inside_transfer():
            torch.rand(7)

    hook = digits_model.register_forward_pre_hook(drawing)
    try:
        first = audit(digits_model, digits_splits["test"], out=tmp_path, **small)
    finally:
        hook.remove()
    (tmp_path / "parts" / "transfer.json").unlink()
    again = audit(digits_model, digits_splits["test"], out=tmp_path, **small)
    assert "attack-fgsm" in again["resumed"] and "transfer" not in again["resumed"]
    first["transfer"].pop("seconds")
    again["transfer"].pop("seconds")
    assert again["transfer"] == first["transfer"]


def test_worst_case_counts_a_sample_robust_only_if_every_attack_failed_on_it(
    audited, digits_model, digits_splits, tmp_path
) -> None:
    """Saved parts edited so that at ε = 0.1 FGSM fools samples 0-9 only and PGD samples
    10-19 only; the resumed audit's worst case must count all twenty as broken.

    Fails if the worst case is the minimum of the per-attack accuracies (it would count only
    ten), or ignores an attack or the clean predictions.
    """
    out, _ = audited
    folder = tmp_path / "audit"
    shutil.copytree(out, folder)
    # a stored part is {"key": what it was computed from, "value": the result}
    clean = json.loads((folder / "parts" / "clean.json").read_text())["value"]["correct"]
    fooled = {"fgsm": range(0, 10), "pgd": range(10, 20), "cw": range(0)}
    for name, samples in fooled.items():
        path = folder / "parts" / f"attack-{name}.json"
        stored = json.loads(path.read_text())
        stored["value"]["correct"][1] = [i not in samples for i in range(len(clean))]
        path.write_text(json.dumps(stored))
    r = audit(digits_model, digits_splits["test"], out=folder, **SMALL)
    assert "attack-pgd" in r["resumed"]
    robust = torch.tensor([ok and not 0 <= i < 20 for i, ok in enumerate(clean)])
    # the transfer part is keyed on what the white-box parts left, so it ran again, on
    # those samples only; the worst case also counts what it broke
    assert "transfer" not in r["resumed"]
    for t in r["transfer"]["attacks"].values():
        assert not bool((torch.tensor(t["correct"][1]) & ~robust).any())
        robust &= torch.tensor(t["correct"][1])
    assert r["worst_case"]["accuracy"][1] == pytest.approx(robust.double().mean().item())
    assert r["worst_case"]["accuracy"][1] < 38 / len(clean)  # each attack alone leaves 38


def test_other_settings_in_the_same_folder_are_refused(
    audited, digits_model, digits_splits
) -> None:
    """Fails if the Python API writes over another audit's results without force."""
    out, _ = audited
    before = (out / "results.json").read_bytes()
    with pytest.raises(OutputConflictError, match="holds the result of"):
        audit(digits_model, digits_splits["test"], out=out, **(SMALL | {"n": 40}))
    assert (out / "results.json").read_bytes() == before


def test_a_replaced_model_is_refused_then_audited_anew_never_reported_from_old_parts(
    digits_model, digits_splits, tmp_path: Path
) -> None:
    """Fails if parts computed for one model are reused for another (the part key must hold
    the model's weights, not only the settings and data): model B's audit must report B."""
    test = digits_splits["test"]
    small = SMALL | {"attacks": ("fgsm",), "interpreters": ("grad",), "surrogate": False}
    a = audit(digits_model, test, out=tmp_path, **small)
    other = copy.deepcopy(digits_model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.0)  # same architecture, other weights: a much worse classifier
    with pytest.raises(OutputConflictError):
        audit(other, test, out=tmp_path, **small)
    b = audit(other, test, out=tmp_path, force=True, **small)
    x, y = collect_data(test, small["n"])
    with torch.no_grad():
        expected = (other(x).argmax(1) == y).double().mean().item()
    assert b["clean"]["accuracy"] == pytest.approx(expected)
    assert b["clean"]["accuracy"] != a["clean"]["accuracy"]
    assert "resumed" not in b  # nothing of model A's audit was reused
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["clean"]["accuracy"] == pytest.approx(expected)


def test_time_budget_skips_later_parts(digits_model, digits_splits, tmp_path: Path) -> None:
    r = audit(digits_model, digits_splits["test"], out=tmp_path, **(SMALL | {"time_budget": 1e-9}))
    assert "clean" in r and "attack-fgsm" not in r and "attack-fgsm" in r["skipped"]
    assert "Skipped for the time budget: attack-fgsm" in (tmp_path / "report.md").read_text()


def test_data_forms_agree(digits_splits) -> None:
    test = digits_splits["test"]
    a = collect_data(test, 20)
    b = collect_data((test.x, test.y), 20)
    c = collect_data(DataLoader(test, batch_size=7), 20)
    for other in (b, c):
        assert torch.equal(a[0], other[0]) and torch.equal(a[1], other[1])
    with pytest.raises(TypeError, match="Dataset, a DataLoader"):
        collect_data(42)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="choose one of"):
        AuditConfig(attacks=("nope",))
    with pytest.raises(ValueError, match="exceeds 1"):
        AuditConfig(eps=(8.0,))
    with pytest.raises(ValueError, match="≥ 1"):
        AuditConfig(n=0)


def test_torchvision_model_from_python(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    r = audit(
        net,
        (x, y),
        attacks=("fgsm",),
        interpreters=("grad",),
        eps=(8 / 255,),
        n_maps=4,
        surrogate=False,
        out=tmp_path,
    )
    assert r["attack-fgsm"]["eps"] == [0.0, 8 / 255] and (tmp_path / "report.html").exists()


class Normalized(torch.nn.Module):
    """A user's wrapper: normalization inside, the torchvision model declares no target_layer."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / 0.25)


def _wrapped_resnet() -> torch.nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return Normalized(torchvision.models.resnet18(num_classes=3)).eval()


CAM_SMALL = {
    "attacks": ("fgsm",),
    "interpreters": ("gradcam",),
    "eps": (8 / 255,),
    "n_maps": 4,
    "pgd_steps": 2,
    "surrogate": False,
}


def test_gradcam_finds_a_target_layer_on_a_wrapped_torchvision_model(tmp_path: Path) -> None:
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    r = audit(_wrapped_resnet(), (x, y), out=tmp_path, **CAM_SMALL)
    # at 32×32 layer4 is 1×1 and global pooling follows: the last spatial map is layer3 (2×2)
    assert r["layers"]["gradcam"] == {
        "name": "net.layer3",
        "how": "found automatically: the last module with a spatial 4-D output",
        "size": [2, 2],
    }
    assert r["maps-gradcam"]["target_layer"]["name"] == "net.layer3"
    assert "net.layer3" in (tmp_path / "report.md").read_text()


def test_a_target_layer_of_another_model_is_refused_before_anything_runs() -> None:
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    with pytest.raises(KeyError, match="not a submodule"):
        audit(_wrapped_resnet(), (x, y), target_layer=_wrapped_resnet().net.layer2, **CAM_SMALL)


def test_a_given_1x1_target_layer_warns_and_its_constant_maps_are_left_out(
    tmp_path: Path,
) -> None:
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    model = _wrapped_resnet()
    with pytest.warns(UserWarning, match="1×1"):
        # the layer given as the module itself (Captum's way), recorded by its name
        r = audit(model, (x, y), out=tmp_path, target_layer=model.net.layer4, **CAM_SMALL)
    assert r["config"]["target_layer"] == "net.layer4"
    assert r["maps-gradcam"]["target_layer"]["name"] == "net.layer4"
    maps = r["maps-gradcam"]
    # float32 rounding leaves a span of ~1e-7 · max: still constant under the relative test
    assert maps["constant_maps"] == 4
    assert all(a["n_used"] == 0 and a["iou"] is None for a in maps["attacks"].values())
    assert torch.tensor(maps["benign"]).abs().max() == 0  # shown blank, not as rounding speckle
    md = (tmp_path / "report.md").read_text()
    assert "carry no spatial information" in md and "gradcam (4 benign, 8 attacked)" in md


def test_an_interpreter_that_cannot_run_stops_the_audit_before_the_attacks(
    tmp_path: Path,
) -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3)).eval()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="'gradcam' cannot run on this model.*--target-layer"):
        audit(mlp, (x, y), out=tmp_path, **CAM_SMALL)
    assert not list(tmp_path.glob("parts/attack-*.json"))


def test_interpreter_options_reach_the_interpreter(digits_model, digits_splits) -> None:
    r = audit(
        digits_model,
        digits_splits["test"],
        **(CAM_SMALL | {"n": 4, "eps": (0.1,)}),
        interpreter_options={"gradcam": {"relu": False}},
    )
    assert r["layers"]["gradcam"]["how"] == "declared by the model"
    with pytest.raises(ValueError, match="not among the audited"):
        AuditConfig(interpreter_options={"ig": {"steps": 8}}, interpreters=("grad",))


def test_cw_flips_the_correct_images_and_its_medians_skip_misclassified_ones(
    digits_model, digits_splits, tmp_path: Path
) -> None:
    x, y = digits_splits["test"].x[:12], digits_splits["test"].y[:12].clone()
    y[:2] = (y[:2] + 1) % 10  # two images the model now gets "wrong": no perturbation needed
    cw = {"attacks": ("cw",), "interpreters": ("grad",), "n_maps": 2, "surrogate": False}
    full = audit(digits_model, (x, y), out=tmp_path, **cw)
    r = full["attack-cw"]
    assert r["n_right"] == sum(full["clean"]["correct"]) <= 10
    assert r["success_rate"] >= 0.9  # the audit's CW settings (50 steps at lr 0.01 gave ~10%)
    assert r["median"]["l0"] > 0 and r["median"]["l2"] > 0.1
    assert "Warning" not in (tmp_path / "report.md").read_text()
    weak = audit(digits_model, (x, y), **(cw | {"cw_steps": 1}), out=tmp_path / "weak")
    assert weak["attack-cw"]["success_rate"] < 0.9
    assert "**Warning:** cw flipped only" in (tmp_path / "weak" / "report.md").read_text()


def test_maps_step_shows_progress_and_adv2_uses_cheaper_ig(
    digits_model, digits_splits, monkeypatch, capsys
) -> None:
    import underfire.studies.audit.config as audit_config
    import underfire.studies.audit.maps as audit_module
    from underfire.interpreters import INTERPRETERS

    created = []
    real_create = audit_module.ATTACKS.create

    def spy(name: str, **kwargs):
        created.append((name, kwargs))
        return real_create(name, **kwargs)

    monkeypatch.setattr(audit_module.ATTACKS, "create", spy)
    x, y = digits_splits["test"].x[:2], digits_splits["test"].y[:2]
    r = audit(
        digits_model,
        (x, y),
        attacks=("fgsm",),
        interpreters=("ig",),
        eps=(0.1,),
        n_maps=2,
        surrogate=False,
        progress=True,
    )
    assert "maps-ig" in capsys.readouterr().err  # a bar with ETA, not 11 silent minutes
    (adv2,) = [kw for name, kw in created if name == "adv2"]
    assert adv2["interpreter"].steps == audit_config.ADV2_IG_STEPS < 50
    assert adv2["check_every"] == audit_config.ADV2_CHECK_EVERY > 1
    # a preset that judges less often (the authors', from 32 px) keeps its own interval
    from underfire.studies.audit.maps import _adv2_check

    grad = INTERPRETERS.create("grad")
    assert _adv2_check(grad, 28) == {"check_every": audit_config.ADV2_CHECK_EVERY}
    assert _adv2_check(grad, 32) == {} and _adv2_check(grad, 224) == {}
    shown = torch.tensor(r["maps-ig"]["benign"])
    assert torch.allclose(shown, INTERPRETERS.create("ig")(digits_model, x), atol=1e-5)


def test_a_changed_attack_setting_recomputes_the_parts_that_depend_on_it(
    audited, digits_model, digits_splits, tmp_path: Path, monkeypatch
) -> None:
    """Fails if a part is reused after the attack it runs changed a setting (a new default,
    such as CW's warm start): every part that builds attacks is recomputed, the parts that
    build none (clean accuracy, gradients) are reused. The key also holds each attack part's
    settings, precisely: the attack itself and the cheaper ones before it."""
    import underfire.studies.audit.attacks as audit_attacks
    from underfire.studies.audit.config import configure as configure_audit

    out, first = audited
    folder = tmp_path / "audit"
    shutil.copytree(out, folder)
    build = audit_attacks._build_attack

    def changed(name, config, eps):
        attack = build(name, config, eps)
        if name == "cw":
            attack.warm_start = not attack.warm_start
        return attack

    monkeypatch.setattr(audit_attacks, "_build_attack", changed)
    r = audit(digits_model, digits_splits["test"], out=folder, **SMALL)
    assert not {"attack-cw", "attack-fgsm", "attack-pgd", "transfer"} & set(r["resumed"])
    assert {"clean", "gradients"} <= set(r["resumed"])

    # the settings in each attack part's key: a PGD setting reaches PGD's part, CW's (run
    # after it, on what it left robust) and the transfer part, not FGSM's (run before it)
    config = configure_audit(**SMALL)
    eps = list(SMALL["eps"])
    parts = {"fgsm": "fgsm", "pgd": "pgd", "cw": "cw", "transfer": None}
    before = {k: audit_attacks._attack_settings(config, eps, a) for k, a in parts.items()}

    def more_steps(name, config, eps):
        attack = build(name, config, eps)
        if name == "pgd":
            attack.steps += 1
        return attack

    monkeypatch.setattr(audit_attacks, "_build_attack", more_steps)
    after = {k: audit_attacks._attack_settings(config, eps, a) for k, a in parts.items()}
    assert {k for k in parts if after[k] != before[k]} == {"pgd", "cw", "transfer"}


def test_map_attacks_take_every_image_at_once_only_on_a_light_model_and_a_one_pass_map(
    digits_model,
) -> None:
    """Small batches of a light model are overhead-bound (ADV² through Grad: 12.2 s in 4s,
    8.4 s in one on 16 MNIST images); a heavy model or a many-pass map keeps batches of 4."""
    from underfire.interpreters import INTERPRETERS
    from underfire.models import create_model
    from underfire.studies.audit.maps import map_batch_size

    x = torch.rand(16, 1, 8, 8)
    assert map_batch_size(digits_model, INTERPRETERS.create("grad"), x) == 16
    assert map_batch_size(digits_model, INTERPRETERS.create("gradcam"), x) == 16
    assert map_batch_size(digits_model, INTERPRETERS.create("ig"), x) == 4
    assert map_batch_size(digits_model, INTERPRETERS.create("smoothgrad"), x) == 4
    heavy = create_model("resnet50", num_classes=10).eval()
    assert map_batch_size(heavy, INTERPRETERS.create("grad"), torch.rand(16, 3, 64, 64)) == 4
