"""The Zhang et al. (2020) ADV² reproduction: end to end on digits (test profile and the
documented quick profile), resumption keyed on the settings and on the classifier's identity,
config, findings and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from underfire.checkpoint import CHECKSUM_ALGORITHM, checksum, read_checkpoint
from underfire.studies import run_study
from underfire.studies.zhang2020 import PROFILES, Zhang2020Config, configure, resolve_config
from underfire.studies.zhang2020.claims import evaluate_claims

FIGURES = ["pgd_vs_adv2.png", "transfer.png", "countermeasures.png", "samples_ross-cnn.png"]
#: The sub-parts of one classifier, each stored in OUT/parts as CLASSIFIER__NAME.pt (.json for
#: the test accuracy).
SUB_PARTS = [
    "test-accuracy",
    "rts",
    "benign",
    "noise",
    "pgd",
    "adv2-grad",
    "adv2-gradcam",
    "adv2-mask",
    "adv2-rts",
    "ensemble",
    "rtsa-train",
    "rtsa",
    "rtsa-eval",
]


def _reproduce(
    out: Path, profile: str = "test", config: Zhang2020Config | None = None, **options: Any
) -> dict[str, Any]:
    """``run_study`` on digits with the profile's config, or ``config`` when given."""
    threads = torch.get_num_threads()
    config = config or configure(dataset="digits", profile=profile)
    try:  # one thread: tiny models on a shared 2-core machine
        return run_study("zhang2020", config, out=out, threads=1, **options)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(
    scope="module",
    params=["test", pytest.param("quick", marks=pytest.mark.slow)],
    ids=["test-profile", "quick"],
)
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("zhang2020")
    _reproduce(out, request.param)
    results = json.loads((out / "results.json").read_text())
    return out, results, request.param


def test_outputs_are_complete(run: tuple[Path, dict, str]) -> None:
    out, results, _ = run
    for name in ("results.json", "config.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for fig in FIGURES:
        assert (out / "figures" / fig).stat().st_size > 2000, fig
    assert (out / "models" / "ross-cnn.pt").exists()
    assert (out / "models" / "ross-cnn.rts.pt").exists()
    assert (out / "models" / "ross-cnn.rtsa.pt").exists()
    r = results["classifiers"]["ross-cnn"]
    assert r["test_accuracy"] > 0.8
    # the Ross CNN has no GAP head: Grad-CAM stands in for CAM, and the report says so
    assert r["interpreters"] == ["grad", "gradcam", "mask", "rts"]
    assert "cam" in r["notes"]
    assert "adv2_skipped" not in r
    for k in r["interpreters"]:
        a, p = r["adv2"][k], r["pgd"]["maps"][k]
        assert 0 <= a["success"] <= 1 and 0 <= a["confidence"] <= 1
        assert 0 <= a["maps"][k]["l1"] <= 1 and 0 <= a["maps"][k]["iou"] <= 1
        assert 0 <= p["l1"] <= 1 and 0 <= p["iou"] <= 1
        # every interpreter judges every ADV² attack (the transfer table)
        assert set(a["maps"]) == set(r["interpreters"])
        # the attack's own record agrees with the reproduction's success measure
        assert a["attack_record"]["success"] == pytest.approx(a["success"])
    assert r["n_per_interpreter"]["mask"] == results["config"]["mask_eval"]
    # MASK's own "deletion found" flags are kept for benign, PGD and every ADV² run
    assert {"benign", "pgd", "adv2-mask"} <= set(r["mask_found"])
    assert all(0 <= v <= 1 for v in r["mask_found"].values())
    assert set(r["ensemble"]["attack_on_member"]) == {"grad", "gradcam", "rts"}
    assert {"rts", "rtsa"} <= set(r["rtsa"]) and r["rtsa"]["n_train_adv"] > 0
    claims = results["claims"]
    assert [c["id"] for c in claims] == ["1", "2", "3", "4", "5", "6"]
    assert all(c["held"] in (True, False) for c in claims)
    assert all(c["rule"] and c["evidence"] for c in claims)
    config = json.loads((out / "config.json").read_text())
    assert Zhang2020Config.from_dict(config) == resolve_config("digits", config["profile"])
    report = (out / "report.md").read_text()
    for c in claims:
        assert f"**Finding {c['id']}**" in report
    for section in (
        "Transfer across interpreters",
        "ensemble interpretation",
        "RTS^A",
        "paper ADV²",
    ):
        assert section in report
    assert "data:image/png;base64" in (out / "report.html").read_text()


def test_quick_profile_reaches_the_papers_direction(run: tuple[Path, dict, str]) -> None:
    """On the documented quick profile, ADV² fools the classifier and keeps maps closer to the
    benign ones than PGD does (the paper's central finding). Its wall time is measured in
    docs/zhang2020.md, not asserted here (timings belong to benchmarks)."""
    _out, results, profile = run
    if profile != "quick":
        pytest.skip("the test profile's attacks are too short to expect the paper's direction")
    r = results["classifiers"]["ross-cnn"]
    for k in ("grad", "gradcam", "rts"):
        assert r["adv2"][k]["success"] >= 0.8, k
        assert r["adv2"][k]["maps"][k]["l1"] < r["pgd"]["maps"][k]["l1"], k


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    """The measurements of a run without its bookkeeping (timings, reuse flags)."""
    r = copy.deepcopy(results["classifiers"]["ross-cnn"])
    for key in ("timings", "training", "rts_training"):
        r.pop(key)
    r["rtsa"].pop("training")
    for row in r["adv2"].values():
        for key in ("seconds", "seconds_per_image", "reused"):
            row.pop(key)
    return r


def _parts(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / "parts").glob("ross-cnn__*")}


def test_resume_recomputes_nothing(run: tuple[Path, dict, str]) -> None:
    """Fails if a second run in the same folder recomputes a finished part, retrains a model,
    or reports other numbers."""
    out, results, profile = run
    if profile != "test":
        pytest.skip("resumption is checked once, on the fast profile")
    stamps = _parts(out)
    assert sorted(p.stem for p in stamps) == sorted(f"ross-cnn__{k}" for k in SUB_PARTS)
    models = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.pt")}
    again = _reproduce(out)
    assert _parts(out) == stamps
    assert {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.pt")} == models
    assert sorted(again["run"]["reused"]) == sorted(f"ross-cnn/{k}" for k in SUB_PARTS)
    assert results["run"]["reused"] == []
    assert _numbers(again) == _numbers(results)
    assert again["claims"] == results["claims"]
    b = again["classifiers"]["ross-cnn"]
    assert all(b["adv2"][k]["reused"] for k in b["adv2"])
    assert b["rts_training"]["reused"] and b["rtsa"]["training"]["reused"]
    # the classifier is reused, and its training time is the first run's, not ~0 s
    first = results["classifiers"]["ross-cnn"]["training"]
    assert not first["reused"] and b["training"]["reused"]
    assert b["training"]["training_seconds"] == first["training_seconds"] > 0


def test_a_replaced_classifier_recomputes_every_part_that_uses_it(
    run: tuple[Path, dict, str], tmp_path: Path
) -> None:
    """The bug of reporting one model's results for another: fails if, after the classifier's
    checkpoint is replaced by other weights, any part computed for the old weights is reused."""
    out, results, profile = run
    if profile != "test":
        pytest.skip("checked once, on the fast profile")
    import shutil

    folder = tmp_path / "replaced"
    shutil.copytree(out, folder)
    ckpt = folder / "models" / "ross-cnn.pt"
    payload = read_checkpoint(ckpt)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first] = payload["state_dict"][first] * 0.5
    payload["checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "digest": checksum(payload)}
    torch.save(payload, ckpt)
    again = _reproduce(folder)  # the same settings: no force needed, and nothing reused
    assert again["run"]["reused"] == []
    b, a = again["classifiers"]["ross-cnn"], results["classifiers"]["ross-cnn"]
    assert not any(row["reused"] for row in b["adv2"].values())
    assert not b["rts_training"]["reused"]
    assert b["pgd"]["maps"] != a["pgd"]["maps"]


def test_a_setting_recomputes_only_the_parts_that_read_it(run: tuple[Path, dict, str]) -> None:
    """Fails if a part's key misses a config field it reads (the noise baseline reads
    noise_samples) or holds one it does not read (n_figure is read by the figures only)."""
    out, _results, profile = run
    if profile != "test":
        pytest.skip("checked once, on the fast profile")
    figures = _reproduce(out, config=resolve_config("digits", "test", n_figure=1), force=True)
    assert sorted(figures["run"]["reused"]) == sorted(f"ross-cnn/{k}" for k in SUB_PARTS)
    noise = _reproduce(out, config=resolve_config("digits", "test", noise_samples=2), force=True)
    assert "ross-cnn/noise" not in noise["run"]["reused"]
    assert sorted(noise["run"]["reused"]) == sorted(
        f"ross-cnn/{k}" for k in SUB_PARTS if k != "noise"
    )


def test_a_changed_attack_default_recomputes_only_the_parts_that_run_it(
    run: tuple[Path, dict, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a part's key holds only the config fields and the part's own code: a new
    default of an attack the part builds (PGD's step count, ADV²-GRAD's κ, as a later
    underfire might change them) must recompute the parts that run it, and only those."""
    out, _results, profile = run
    if profile != "test":
        pytest.skip("checked once, on the fast profile")
    import shutil

    import underfire.studies.zhang2020.classifier as classifier

    folder = tmp_path / "changed"
    shutil.copytree(out, folder)
    pgd_attack, adv2_attack = classifier.pgd_attack, classifier.adv2_attack

    def pgd_changed(cfg: Any, seed: int) -> Any:
        attack = pgd_attack(cfg, seed)
        attack.steps += 1
        return attack

    def adv2_changed(interp: Any, cfg: Any, seed: int, size: int) -> Any:
        attack, info = adv2_attack(interp, cfg, seed, size)
        if interp.name == "grad":
            attack.kappa = min(1.0, attack.kappa + 0.01)
        return attack, info

    monkeypatch.setattr(classifier, "pgd_attack", pgd_changed)
    monkeypatch.setattr(classifier, "adv2_attack", adv2_changed)
    reused = set(_reproduce(folder, force=True)["run"]["reused"])
    # the ADV² parts are handed their attack and keyed on its settings: only GRAD's changed
    assert "ross-cnn/pgd" not in reused and "ross-cnn/adv2-grad" not in reused
    unchanged = {"benign", "adv2-gradcam", "adv2-mask", "adv2-rts", "test-accuracy", "rts"}
    assert {f"ross-cnn/{k}" for k in unchanged} <= reused


def test_findings_follow_the_numbers(run: tuple[Path, dict, str]) -> None:
    _out, results, _ = run
    r = copy.deepcopy(results)
    row = r["classifiers"]["ross-cnn"]
    # make ADV² maps far from benign (worse than PGD) everywhere: finding 1 must fail
    for k, a in row["adv2"].items():
        a["maps"][k]["l1"] = 1.0
        a["maps"][k]["iou"] = 0.0
        a["maps"][k]["l1_all"] = [1.0] * a["maps"][k]["n"]
    assert evaluate_claims(r)[0]["held"] is False
    # and perfect: ADV² identical to benign, PGD far away
    for k, a in row["adv2"].items():
        a["success"] = 1.0
        a["maps"][k] |= {"l1": 0.0, "iou": 1.0, "l1_all": [0.0] * a["maps"][k]["n"]}
        row["pgd"]["maps"][k] |= {
            "l1": 0.5,
            "iou": 0.1,
            "l1_all": [0.5] * row["pgd"]["maps"][k]["n"],
        }
    claims = evaluate_claims(r)
    assert claims[0]["held"] is True and claims[2]["held"] is True
    # the RTS^A rule: a smaller gap under RTS^A holds, a larger one does not
    row["rtsa"]["rts"]["gap"] = 0.2
    row["rtsa"]["rtsa"]["gap"] = 0.1
    assert evaluate_claims(r)[5]["held"] is True
    row["rtsa"]["rtsa"]["gap"] = 0.19
    assert evaluate_claims(r)[5]["held"] is False
    # without ADV², findings that need it are "not evaluated", never "held"
    for c in r["classifiers"].values():
        c.pop("adv2"), c.pop("ensemble"), c.pop("rtsa")
    held = {c["id"]: c["held"] for c in evaluate_claims(r)}
    assert held["1"] is None and held["2"] is None and held["3"] is None and held["6"] is None


def test_profiles_and_bad_input() -> None:
    assert set(PROFILES) == {"full", "cpu", "quick", "test"}
    cpu = resolve_config("cifar10", "cpu")
    assert cpu.classifiers == ("resnet-small", "densenet-small") and cpu.eps == pytest.approx(0.031)
    assert resolve_config("digits", "quick").interpreters == ("grad", "cam", "mask", "rts")
    assert resolve_config("cifar-10", "quick").dataset == "cifar10"
    with pytest.raises(ValueError, match="profile"):
        resolve_config("digits", "fast")
    with pytest.raises(ValueError, match="dataset"):
        resolve_config("svhn")
    with pytest.raises(ValueError, match="--weights"):
        resolve_config("imagenet", "test")
    with pytest.raises(ValueError, match="interpreters"):
        resolve_config("digits", "test", interpreters=("grad", "lime"))
    with pytest.raises(ValueError, match="ensemble"):
        resolve_config("digits", "test", ensemble=("grad", "mask"))
    with pytest.raises(ValueError, match="eps"):
        resolve_config("digits", "test", eps=0.0)
    with pytest.raises(ValueError, match="--weights is for --dataset imagenet"):
        configure(dataset="digits", weights=["w.pt"])
    assert configure(dataset="digits", quick=True) == resolve_config("digits", "quick")
    assert configure(dataset="digits", quick=True, profile="test").profile == "test"
    cfg = configure(
        dataset="imagenet", profile="test", weights=["resnet50=a.pt"], n_images=3, seed=2
    )
    assert cfg.weights == {"resnet50": "a.pt"} and cfg.classifiers == ("resnet50",)
    assert cfg.n_eval == 3 and cfg.seed == 2


def test_cpu_profile_trains_cifar10_with_the_standard_recipe() -> None:
    """Issue 24: crop-flip, steps of 64, ResNet-20 30 epochs and the DenseNet 13 epochs of the
    45,000 training images, accuracy on the whole test set; ``--steps`` applies to both."""
    cpu = resolve_config("cifar10", "cpu")
    assert cpu.augment == "crop-flip" and cpu.batch_size == 64 and cpu.n_test is None
    assert cpu.model_kwargs["resnet-small"] == {"depth": 20}
    assert cpu.steps_for("resnet-small") == 21_000 and cpu.steps_for("densenet-small") == 18_000
    assert resolve_config("cifar10", "full").augment == "crop-flip"
    assert resolve_config("cifar10", "quick").augment == "none"  # 200 steps: nothing to gain
    assert resolve_config("digits", "cpu").augment == "none"  # mirrored digits are other digits
    short = configure(dataset="cifar10", profile="cpu", steps=50)
    assert short.steps_for("resnet-small") == short.steps_for("densenet-small") == 50
    assert Zhang2020Config.from_dict(cpu.to_dict()) == cpu
    with pytest.raises(ValueError, match="augment must be one of"):
        resolve_config("cifar10", "cpu", augment="mixup")
    with pytest.raises(ValueError, match="classifier_steps must be ints ≥ 1"):
        resolve_config("cifar10", "cpu", classifier_steps={"densenet-small": 0})


@pytest.mark.slow
def test_imagenet_plumbing_with_random_weights(shared_data: Path, tmp_path: Path) -> None:
    """The ImageNet path (224×224, torchvision ResNet-50, CAM on its GAP head) runs end to end on
    the 1000-image sample; with random weights the report must say the numbers mean nothing."""
    if not (shared_data / "imagenet-sample" / "labels.csv").exists():
        pytest.skip("no ImageNet sample in the shared data")
    config = configure(
        dataset="imagenet", profile="test", weights=["resnet50=random"], data_root=shared_data
    )
    _reproduce(tmp_path, config=config)
    results = json.loads((tmp_path / "results.json").read_text())
    r = results["classifiers"]["resnet50"]
    assert r["training"]["weights"] == "random"
    assert r["interpreters"] == ["grad", "cam"] and "cam" not in r["notes"]
    assert set(r["adv2"]) == {"grad", "cam"}
    assert r["adv2"]["grad"]["settings"]["preset"] == "imagenet"
    report = (tmp_path / "report.md").read_text()
    assert "Plumbing run" in report and "random weights" in report
    assert (tmp_path / "figures" / "samples_resnet50.png").stat().st_size > 2000


def test_blank_mask_pairs_are_left_out_and_confidence_is_over_successes() -> None:
    from underfire.studies.zhang2020.measure import attack_row, usable_pairs

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    x_adv = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 1.0, 0, 0]]).view(3, 1, 2, 2)
    t = torch.tensor([0, 0, 1])  # the first and last reach their target
    benign = {"mask": torch.zeros(3, 1, 2, 2)}
    maps = {"mask": torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])}
    usable = usable_pairs(
        {"mask": torch.tensor([1.0, 1.0, 0.0])}, {"mask": torch.tensor([1.0, 1.0, 1.0])}
    )
    assert usable["mask"].tolist() == [True, True, False]
    row = attack_row(model, x_adv, t, benign, maps, 2, usable)
    p = torch.softmax(torch.tensor([[5.0, 0], [0, 5.0], [0, 1.0]]), 1)
    assert row["success"] == pytest.approx(2 / 3)
    assert row["confidence_successful"] == pytest.approx(float((p[0, 0] + p[2, 1]) / 2))
    assert row["confidence"] == pytest.approx(float((p[0, 0] + p[1, 0] + p[2, 1]) / 3))
    m = row["maps"]["mask"]
    assert (m["n"], m["blank"], m["l1"]) == (2, 1, pytest.approx(0.5))  # the blank pair left out
    assert m["l1_all"][2] is None


def test_reference_summary_holds_the_reports_numbers_without_per_sample_data(
    run: tuple[Path, dict, str], tmp_path: Path
) -> None:
    """Fails if the summary for docs/results/ drops a number the docs quote (accuracy,
    success, confidence over successes, map L1 and blank counts, the findings) or keeps
    per-sample lists (``l1_all``)."""
    from underfire.studies.zhang2020.reference import main, reference_summary

    out, results, _ = run
    summary = reference_summary(out, command="underfire reproduce zhang2020 ...")
    assert summary["command"] == "underfire reproduce zhang2020 ..."
    assert [f["held"] for f in summary["findings"]] == [c["held"] for c in results["claims"]]
    for c, full in results["classifiers"].items():
        row = summary["classifiers"][c]
        assert row["test_accuracy"] == pytest.approx(full["test_accuracy"], abs=1e-4)
        assert row["pgd"]["success"] == pytest.approx(full["pgd"]["success"], abs=1e-4)
        for k, a in full["adv2"].items():
            mine = row["adv2"][k]
            assert mine["success"] == pytest.approx(a["success"], abs=1e-4)
            assert ("confidence_successful" in mine) and mine["maps"][k]["blank"] == a["maps"][k][
                "blank"
            ]
            assert "l1_all" not in mine["maps"][k]
    assert "l1_all" not in json.dumps(summary)
    dest = tmp_path / "zhang2020-test.json"
    assert main([str(out), str(dest), "--command", "c", "--wall-seconds", "60"]) == 0
    assert json.loads(dest.read_text())["wall_seconds"] == 60.0
    with pytest.raises(FileNotFoundError, match="run the reproduction first"):
        reference_summary(tmp_path / "nothing", command="c")
