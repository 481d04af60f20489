"""The Zheng et al. (2020) reproduction: `--quick` on digits end to end (as CI runs it), resuming,
results recomputed for a replaced model, the computed verdicts, the configuration."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from underfire.studies import run_study
from underfire.studies.zheng2020.claims import headline, robust_score, seed_stats, verdict
from underfire.studies.zheng2020.config import (
    DATASETS,
    PROFILES,
    Zheng2020Config,
    configure,
    resolve_config,
)

FIGURES = [
    "robust_accuracy.png",
    "seed_scores.png",
    "layer_diagnosis.png",
    "interpretgan_max-seed0.png",
    "interpretgan_avg-seed0.png",
]


def _run(out: Path, **options: object) -> dict:
    """What `underfire reproduce zheng2020 --dataset digits ... --out OUT` runs."""
    threads = torch.get_num_threads()
    try:  # one thread: tiny models on a shared 2-core machine
        return run_study("zheng2020", out=out, device="cpu", threads=1, dataset="digits", **options)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("zheng2020")
    _run(out, quick=True)
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_quick_run_writes_results_report_and_figures(quick: tuple[Path, dict]) -> None:
    out, results = quick
    cfg = Zheng2020Config.from_dict(json.loads((out / "config.json").read_text()))
    assert cfg == resolve_config("digits", "quick")
    for name in ("results.json", "config.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for fig in FIGURES:
        assert (out / "figures" / fig).stat().st_size > 5000, fig
    names = {f"{p}-seed{s}" for p in ("max", "avg") for s in cfg.seeds}
    assert set(results["models"]) == names
    assert {p.stem for p in (out / "models").glob("*.pt")} == names
    for name, m in results["models"].items():
        assert len(m["fgsm"]) == len(m["pgd"]) == len(cfg.eps)
        # ε = 0 leaves the attacked images unchanged; the models learned digits
        assert m["fgsm"][0] == m["pgd"][0] > 0.9 and m["clean"] > 0.9, name
        # both attacks hurt at the largest ε, PGD at least as much as FGSM (small tolerance)
        assert m["pgd"][-1] < 0.5 * m["pgd"][0]
        assert all(p <= f + 0.03 for p, f in zip(m["pgd"], m["fgsm"], strict=True)), name
    comp = results["comparison"]
    for key in ("clean", "fgsm", "pgd"):
        v = comp[key]
        assert v["winner"] in ("avg", "max", "within spread")
        # the stored verdict is the rule applied to the stored numbers
        score = (
            (lambda r: r["clean"])
            if key == "clean"
            else (lambda r, k=key: robust_score(r[k], cfg.eps))
        )
        avg = [score(results["models"][f"avg-seed{s}"]) for s in cfg.seeds]
        mx = [score(results["models"][f"max-seed{s}"]) for s in cfg.seeds]
        assert verdict(avg, mx)["winner"] == v["winner"]
        assert v["difference"] == pytest.approx(sum(avg) / len(avg) - sum(mx) / len(mx))
    assert comp["headline"] == headline(comp["fgsm"]["winner"], comp["pgd"]["winner"])

    diag = results["diagnosis"]
    layers = diag["summary"]["layers"]
    assert [n.rsplit(".", 1)[-1] for n in layers[:4]] == ["block1", "pool1", "block2", "pool2"]
    for name, d in diag["models"].items():
        assert d["layers"] == layers and d["n"] == cfg.n_diag
        assert all(0 <= v < 1.5 for v in d["information_loss"]), name
        # a linear probe recovers more of the input from early layers than from the last one
        assert d["information_loss"][0] < d["information_loss"][-1]
        assert d["adversarial_accuracy"] < d["clean_accuracy"]
    for pool in ("max", "avg"):
        assert all(s is not None for s in diag["summary"]["stats"][pool]["information_loss"])
    # InterpretGAN of each variant's first-seed model: every layer, images the classifier
    # labels as it labels the source far above chance (10 classes) at the first layer
    assert set(diag["interpretgan"]) == {"max-seed0", "avg-seed0"}
    for name, g in diag["interpretgan"].items():
        assert (out / "interpretgan" / f"{name}.pt").exists()
        assert list(g["layers"]) == layers
        first = g["layers"][layers[0]]
        assert first["clean_consistency"] > 0.5, (name, first)
        assert all(0 <= v["adv_true"] <= 1 and v["fvu"] >= 0 for v in g["layers"].values())

    report = (out / "report.md").read_text()
    assert "Did average pooling come out more robust?" in report
    assert "Per-layer diagnosis" in report
    assert "InterpretGAN: what each layer sees" in report
    assert f"average − max pooling: FGSM {comp['fgsm']['difference']:+.3f}" in report
    assert "data:image/png;base64" in (out / "report.html").read_text()


@pytest.mark.slow
def test_second_run_reuses_models_and_sections(
    quick: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reuse is proven by the saved files' identity and a count of InterpretGAN steps.

    Fails if the second run retrains a model, recomputes a robustness or diagnosis section,
    or trains an InterpretGAN again instead of resuming its finished checkpoint.
    """
    import underfire.diagnosis.interpretgan as interpretgan

    out, first = quick
    models = list((out / "models").glob("*.pt"))
    assert len(models) == 6  # 6 models
    files = [*models, *(out / "parts").glob("*")]
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    assert first["run"]["reused"] == []
    gan_steps: list[int] = []
    generator_loss = interpretgan._generator_loss

    def counted(*args, **kwargs):
        gan_steps.append(1)
        return generator_loss(*args, **kwargs)

    monkeypatch.setattr(interpretgan, "_generator_loss", counted)
    again = _run(out, quick=True)
    # nothing recomputed: the same files, untouched, and every cached result reused
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files} == stamps
    assert gan_steps == []  # both InterpretGANs resumed at their last step, not retrained
    names = [f"{p}-seed{s}" for s in (0, 1, 2) for p in ("max", "avg")]
    assert again["run"]["reused"] == (
        [f"robust/{n}" for n in names]
        + [f"diagnosis/{n}" for n in names]
        + ["interpretgan/max-seed0", "interpretgan/avg-seed0"]
    )
    assert again["models"] == first["models"]
    assert again["diagnosis"] == first["diagnosis"]


def _replace_classifier_weights(path: Path, source: Path) -> None:
    """Put the weights of the checkpoint ``source`` into the checkpoint ``path``, keeping
    its settings: a valid, finished checkpoint of the same run holding another model."""
    from underfire.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    payload, ckpt = read_checkpoint(path), load_checkpoint(path)
    ckpt.model.load_state_dict(load_checkpoint(source).model.state_dict())
    save_checkpoint(
        path,
        ckpt.model,
        meta=payload["meta"],
        optimizer_state=payload["optimizer_state"],
        trainer_state=payload["trainer_state"],
    )


@pytest.mark.slow
def test_a_replaced_model_or_interpretgan_recomputes_only_the_results_that_use_it(
    tmp_path: Path,
) -> None:
    """Fails if a result computed for one model is reused for a replaced one (the cache
    must be keyed on the classifiers' and the InterpretGANs' weights, not on the settings)."""
    first = _run(tmp_path, profile="test")
    assert first["run"]["reused"] == []
    _replace_classifier_weights(
        tmp_path / "models" / "avg-seed1.pt", tmp_path / "models" / "max-seed1.pt"
    )
    gan_path = tmp_path / "interpretgan" / "max-seed0.pt"
    gan = torch.load(gan_path, weights_only=True)
    for g in gan["generators"].values():
        g["state_dict"] = {
            k: v * 0.5 if v.is_floating_point() else v for k, v in g["state_dict"].items()
        }
    torch.save(gan, gan_path)

    again = _run(tmp_path, profile="test")
    replaced = {"robust/avg-seed1", "diagnosis/avg-seed1", "interpretgan/max-seed0"}
    every = {
        f"{kind}/{p}-seed{s}"
        for kind in ("robust", "diagnosis")
        for s in (0, 1)
        for p in ("max", "avg")
    } | {"interpretgan/max-seed0", "interpretgan/avg-seed0"}
    assert set(again["run"]["reused"]) == every - replaced
    assert again["models"]["avg-seed1"] != first["models"]["avg-seed1"]
    assert again["models"]["max-seed0"] == first["models"]["max-seed0"]
    assert again["diagnosis"]["models"]["avg-seed1"] != first["diagnosis"]["models"]["avg-seed1"]
    gans = again["diagnosis"]["interpretgan"], first["diagnosis"]["interpretgan"]
    assert gans[0]["max-seed0"]["layers"] != gans[1]["max-seed0"]["layers"]
    assert gans[0]["avg-seed0"] == gans[1]["avg-seed0"]
    # a third run with nothing replaced reuses every result
    assert set(_run(tmp_path, profile="test")["run"]["reused"]) == every


def test_verdict_rule() -> None:
    # ranges disjoint → a winner; overlapping → within spread; one seed → undecidable
    assert verdict([0.5, 0.6, 0.55], [0.3, 0.4, 0.45])["winner"] == "avg"
    assert verdict([0.3, 0.4], [0.5, 0.6])["winner"] == "max"
    v = verdict([0.5, 0.6, 0.35], [0.3, 0.4, 0.45])
    assert v["winner"] == "within spread" and v["seeds_favouring_avg"] == 2
    assert v["paired_differences"] == pytest.approx([0.2, 0.2, -0.1])
    assert verdict([0.9], [0.1])["winner"] == "one seed"
    with pytest.raises(ValueError, match="one score per seed"):
        verdict([0.1, 0.2], [0.3])
    s = seed_stats([1.0, 2.0, 3.0])
    assert (s["mean"], s["std"], s["min"], s["max"]) == (2.0, 1.0, 1.0, 3.0)
    assert robust_score([1.0, 0.5, 0.3], [0.0, 0.1, 0.2]) == pytest.approx(0.4)
    assert headline("avg", "avg") == {
        "outcome": "avg",
        "fgsm": "avg",
        "pgd": "avg",
        "paper_claim_held": True,
    }
    assert headline("avg", "within spread")["outcome"] == "partial-avg"
    assert headline("max", "avg")["outcome"] == "mixed"
    assert headline("within spread", "within spread")["paper_claim_held"] is False


def test_compare_variants_follows_the_numbers() -> None:
    from underfire.studies.zheng2020.claims import compare_variants

    eps = [0.0, 0.1, 0.2]
    per = {}
    for s in (0, 1, 2):
        per[f"max-seed{s}"] = {
            "clean": 0.99,
            "fgsm": [0.99, 0.5, 0.2],
            "pgd": [0.99, 0.3, 0.1 + s / 100],
        }
        per[f"avg-seed{s}"] = {
            "clean": 0.98,
            "fgsm": [0.98, 0.7, 0.4],
            "pgd": [0.98, 0.3, 0.1 + s / 50],
        }
    c = compare_variants(per, [0, 1, 2], eps)
    assert c["fgsm"]["winner"] == "avg" and c["pgd"]["winner"] == "within spread"
    assert c["clean"]["winner"] == "max"
    assert c["headline"]["outcome"] == "partial-avg"
    assert c["per_eps"]["fgsm"] == ["max", "avg", "avg"]
    assert c["curves"]["fgsm"]["avg"]["mean"] == pytest.approx([0.98, 0.7, 0.4])


def test_outcome_sentence_is_chosen_by_the_verdict() -> None:
    from underfire.studies.zheng2020.claims import compare_variants
    from underfire.studies.zheng2020.report import outcome_sentence

    def per(max_score: float, avg_score: float) -> dict:
        return {
            f"{p}-seed{s}": {"clean": 0.9, "fgsm": [0.9, v + s / 100], "pgd": [0.9, v + s / 100]}
            for s in (0, 1)
            for p, v in (("max", max_score), ("avg", avg_score))
        }

    yes = outcome_sentence(compare_variants(per(0.2, 0.5), [0, 1], [0.0, 0.1]), 2)
    no = outcome_sentence(compare_variants(per(0.5, 0.2), [0, 1], [0.0, 0.1]), 2)
    tie = outcome_sentence(compare_variants(per(0.2, 0.205), [0, 1], [0.0, 0.1]), 2)
    assert yes.startswith("**Yes") and "FGSM +0.300" in yes
    assert no.startswith("**No") and "FGSM -0.300" in no
    assert tie.startswith("**Not established")
    one = {k: v for k, v in per(0.2, 0.5).items() if k.endswith("seed0")}
    assert outcome_sentence(compare_variants(one, [0], [0.0, 0.1]), 1).startswith("**Not decidable")


def test_config_profiles_and_validation() -> None:
    assert set(PROFILES) >= {"full", "cpu", "quick", "test"} and DATASETS == (
        "mnist",
        "cifar10",
        "digits",
    )
    cifar = resolve_config("cifar-10", "cpu")
    assert cifar.dataset == "cifar10" and cifar.eps[-1] == pytest.approx(8 / 255)
    assert len(cifar.seeds) >= 3 and len(resolve_config("mnist", "cpu").seeds) >= 3
    assert resolve_config("digits", "quick", steps=7, seeds=[4, 5]).seeds == (4, 5)
    with pytest.raises(ValueError, match="profile"):
        resolve_config("mnist", "huge")
    with pytest.raises(ValueError, match="dataset"):
        resolve_config("svhn")
    with pytest.raises(ValueError, match="eps"):
        resolve_config("mnist", eps=(0.1, 0.3))
    with pytest.raises(ValueError, match="seeds"):
        resolve_config("mnist", seeds=(1, 1))
    cfg = resolve_config("cifar10", "quick", layers=["net.features.pool1"])
    assert Zheng2020Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_options_of_other_studies_are_refused(tmp_path: Path) -> None:
    # `underfire reproduce` tells the user "--X does not apply" for options configure lacks
    accepted = set(inspect.signature(configure).parameters)
    assert {"paper_lambda", "weights", "n_images", "models", "seed"}.isdisjoint(accepted)
    assert {
        "dataset",
        "profile",
        "quick",
        "seeds",
        "gan_steps",
        "data_root",
        "training",
    } <= accepted
    with pytest.raises(TypeError, match="paper_lambda"):
        _run(tmp_path, profile="test", paper_lambda=3)
    assert not (tmp_path / "results.json").exists()
    assert configure(dataset="digits", quick=True) == resolve_config("digits", "quick")
    assert configure(dataset="digits", quick=True, profile="test").profile == "test"


def test_pgd_training_option_trains_on_pgd_examples_at_the_grids_largest_eps() -> None:
    # issue 24 item 6: the authors' own MNIST recipe (ATTA, Madry et al.) is PGD training
    import torch.nn.functional as F

    from underfire.defenses import AdversarialTraining
    from underfire.models import model_for_dataset
    from underfire.studies.zheng2020 import STUDY
    from underfire.studies.zheng2020.parts import training_objective
    from underfire.train import CrossEntropy

    natural = resolve_config("mnist", "cpu")
    assert natural.training == "natural" and isinstance(training_objective(natural), CrossEntropy)
    # natural runs record no training keys, so folders written before the option stay valid
    assert {"training", "adv_steps"}.isdisjoint(natural.to_dict())
    assert STUDY.default_out is not None
    assert STUDY.default_out(natural).name == "zheng2020-mnist"

    pgd = configure(dataset="mnist", profile="cpu", training="pgd")
    assert configure(dataset="mnist", training="pgd", adv_steps=10).adv_steps == 10
    assert (pgd.training, pgd.adv_steps) == ("pgd", 40)
    assert Zheng2020Config.from_dict(json.loads(json.dumps(pgd.to_dict()))) == pgd
    assert STUDY.default_out(pgd).name == "zheng2020-mnist-pgd"
    objective = training_objective(pgd)
    assert isinstance(objective, AdversarialTraining)
    assert objective.ratio == 1.0 and objective.labels == "true"
    assert objective.config()["attack"]["eps"] == pytest.approx(0.3)
    cifar = training_objective(resolve_config("cifar10", "cpu", training="pgd", adv_steps=7))
    assert cifar.config()["attack"]["eps"] == pytest.approx(8 / 255)

    torch.manual_seed(0)
    model = model_for_dataset("ross-cnn", "digits", pooling="avg", hidden=16).eval()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    quick = resolve_config("digits", "test", training="pgd", adv_steps=3)
    x_adv = training_objective(quick).adversarial_examples(model, x, y)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and (x_adv - x).abs().max() > 0.1
    assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    with pytest.raises(ValueError, match="training must be one of natural, pgd"):
        resolve_config("mnist", training="trades")
    with pytest.raises(ValueError, match="adv_steps"):
        resolve_config("mnist", training="pgd", adv_steps=0)
