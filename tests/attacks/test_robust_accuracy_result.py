"""Every field of ``robust_accuracy``'s result against values computed independently, attack
by attack and ε by ε, on a tiny fixed model (no training; fast enough for mutation runs)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from underfire.attacks import CW, FGSM, PGD, SoundnessWarning
from underfire.robustness import robust_accuracy, transfer_matrix

EPS = [0.0, 0.05, 0.2, 0.6]
N = 40


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:6] = (y[:6] + 1) % 3  # six samples misclassified from the start
    return model, x, y


class _Flip(torch.autograd.Function):  # identity forward, the gradient's sign flipped
    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return -g


class Misled(nn.Module):
    """``net`` with its input gradient pointing the wrong way: FGSM on it lowers the loss,
    so its white-box accuracy rises with ε."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(_Flip.apply(t))


def fgsm_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    x_adv = FGSM(eps=eps)(model, x, y)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def test_the_exhaustive_result_holds_each_attacks_curve_and_the_worst_case(setup) -> None:
    """Fails if a field is missing, misnamed or computed from other counts (accuracy, success
    rate, clean accuracy, n, mode, the per-attack curves and their names, the kept examples,
    the per-sample worst case)."""
    model, x, y = setup
    one, two = FGSM(eps=0.1), FGSM(eps=0.1)
    result = robust_accuracy(
        model,
        [one, two],
        (x, y),
        eps=EPS,
        exhaustive=True,
        keep_examples=3,
        per_sample=True,
        batch_size=16,
    )
    correct = torch.stack([fgsm_correct(model, x, y, e) for e in EPS])
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    expected_acc = correct.double().mean(1).tolist()
    assert result["accuracy"] == pytest.approx(expected_acc, abs=1e-12)
    assert result["success_rate"] == pytest.approx([1 - a for a in expected_acc], abs=1e-12)
    assert result["clean_accuracy"] == pytest.approx(float(clean.double().mean()), abs=1e-12)
    assert result["n"] == N and result["mode"] == "exhaustive" and result["eps"] == EPS
    assert result["attack"] == [one.config(), two.config()]
    assert set(result["per_attack"]) == {"fgsm#0", "fgsm#1"}
    for curve in result["per_attack"].values():
        assert curve == pytest.approx(expected_acc, abs=1e-12)
    assert "attacked" not in result
    assert torch.equal(result["per_sample"]["correct"], correct)
    assert torch.equal(result["per_sample"]["success"], ~correct)
    assert torch.equal(result["per_sample"]["clean"], clean)
    examples = result["examples"]
    assert torch.equal(examples["x"], x[:3]) and torch.equal(examples["y"], y[:3])
    assert examples["x_adv"].shape == (len(EPS), 3, 1, 4, 4)
    for i, e in enumerate(EPS):
        torch.testing.assert_close(examples["x_adv"][i], FGSM(eps=e)(model, x[:3], y[:3]))


def test_the_open_result_is_cumulative_over_eps_and_counts_what_was_attacked(setup) -> None:
    """Fails if a sample broken at a smaller ε counts as robust at a larger one, if the open
    mode is not reported as such, or if the attacked counts are not the samples still robust
    (correctly classified and unbroken) when each ε > 0 starts."""
    model, x, y = setup
    result = robust_accuracy(model, FGSM(eps=0.1), (x, y), eps=EPS, per_sample=True, batch_size=16)
    correct = torch.stack([fgsm_correct(model, x, y, e) for e in EPS])
    robust = torch.cummin(correct.int(), dim=0).values.bool()  # broken once, broken above
    assert result["mode"] == "open" and result["attack"] == FGSM(eps=0.1).config()
    assert result["accuracy"] == pytest.approx(robust.double().mean(1).tolist(), abs=1e-12)
    assert result["per_attack"] == {"fgsm": pytest.approx(result["accuracy"], abs=1e-12)}
    assert torch.equal(result["per_sample"]["correct"], robust)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    before = torch.cat([clean[None], robust[:-1]])  # robust when each ε starts
    # ε = 0 attacks nothing: the clean prediction stands
    assert EPS[0] == 0 and result["attacked"] == {"fgsm": [0, *before[1:].sum(1).tolist()]}
    assert robust[-1].sum() < robust[1].sum() < clean.sum()  # the ε grid breaks samples


def test_an_iterative_attack_weaker_than_fgsm_is_reported_once_at_the_first_such_eps(setup) -> None:
    """A one-step PGD with a step of 1e-4 is weaker than FGSM: one SoundnessWarning, at the
    first ε where its accuracy exceeds FGSM's by more than max(0.02, 1/N), with both values.

    Fails if the check is skipped, compares with another attack or tolerance, warns at every ε,
    or misreports the values."""
    model, x, y = setup
    weak = PGD(eps=0.6, steps=1, step_size=1e-4, random_start=False)
    acc = {}
    for e in EPS:
        for name, attack in (
            ("pgd", PGD(eps=e, steps=1, step_size=1e-4, random_start=False)),
            ("fgsm", FGSM(eps=e)),
        ):
            x_adv = attack(model, x, y)
            with torch.no_grad():
                acc[name, e] = float((model(x_adv).argmax(1) == y).float().mean())
    first = next(e for e in EPS if acc["pgd", e] > acc["fgsm", e] + max(0.02, 1 / N))
    with pytest.warns(SoundnessWarning) as seen:
        robust_accuracy(model, weak, (x, y), eps=EPS, exhaustive=True, batch_size=N)
    said = [str(w.message) for w in seen if issubclass(w.category, SoundnessWarning)]
    assert said == [
        f"PGD at ε={first:g} leaves accuracy {acc['pgd', first]:.3f} on the first batch, more "
        f"than single-step FGSM ({acc['fgsm', first]:.3f}); an iterative attack should be at "
        "least as strong — check the step size and number of steps, or suspect gradient masking"
    ]


def test_a_strong_iterative_attack_raises_no_soundness_warning(setup) -> None:
    model, x, y = setup
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoundnessWarning)
        robust_accuracy(
            model,
            PGD(eps=0.6, steps=10, random_start=False),
            (x, y),
            eps=EPS,
            exhaustive=True,
            batch_size=N,
        )


def test_transfer_matrix_reports_each_field_cell_by_cell(setup) -> None:
    """Two distinct models: every field of the result against FGSM crafted on the source and
    scored on the victim. Fails if a field is misnamed, the clean accuracy is summed over the
    wrong axis, or per-sample results are added unasked or under other names."""
    model, x, y = setup
    torch.manual_seed(1)
    other = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    models = {"a": model, "b": other}
    attack = FGSM(eps=0.1)
    result = transfer_matrix(
        models, models, attack, (x, y), eps=EPS, per_sample=True, batch_size=16
    )
    assert result["attack"] == attack.config() and result["n"] == N and result["eps"] == EPS
    assert result["sources"] == ["a", "b"] and result["victims"] == ["a", "b"]
    for i, (sname, source) in enumerate(models.items()):
        for j, (vname, victim) in enumerate(models.items()):
            cell = []
            for e in EPS:
                x_adv = FGSM(eps=e)(source, x, y)
                with torch.no_grad():
                    cell.append(victim(x_adv).argmax(1) == y)
            right = torch.stack(cell)
            assert torch.equal(result["per_sample"]["correct"][i, j], right), (sname, vname)
            assert result["accuracy"][i][j] == pytest.approx(right.double().mean(1).tolist())
    for j, (vname, victim) in enumerate(models.items()):
        with torch.no_grad():
            clean = victim(x).argmax(1) == y
        assert torch.equal(result["per_sample"]["clean"][j], clean)
        assert result["clean_accuracy"][vname] == pytest.approx(float(clean.double().mean()))
    assert "per_sample" not in transfer_matrix(models, models, attack, (x, y), eps=EPS)


def test_a_transfer_accuracy_rising_with_eps_names_the_attack_and_the_pair(setup) -> None:
    """Fails if the monotonicity warning of a white-box cell does not name the attack and the
    pair (the transferred cells need not fall with ε and are not checked)."""
    model, x, y = setup

    models = {"src": model, "vic": Misled(model).eval()}
    with pytest.warns(SoundnessWarning, match=r"^FGSM vic→vic: accuracy rises with ε"):
        transfer_matrix(models, models, FGSM(eps=0.1), (x, y), eps=EPS)


@pytest.mark.parametrize(
    "attack, eps, error, message",
    [
        (
            "fgsm",
            0.1,
            TypeError,
            "attack must be an underfire Attack or a non-empty list of them, got str",
        ),
        (
            [],
            0.1,
            TypeError,
            "attack must be an underfire Attack or a non-empty list of them, got list",
        ),
        (
            FGSM,
            0.1,
            TypeError,
            "attack must be an underfire Attack, got the class FGSM; create one, e.g. FGSM(eps=...)",
        ),
        (
            [FGSM(eps=0.1), CW(steps=2)],
            0.1,
            ValueError,
            "several attacks are combined per ε: each needs an ε (evaluate CW or JSMA alone)",
        ),
        (
            [FGSM(eps=0.1), PGD(eps=0.5, norm="l2")],
            0.1,
            ValueError,
            "several attacks must share one norm, got ['l2', 'linf']",
        ),
        (
            [FGSM(eps=0.1), FGSM(eps=0.2)],
            None,
            ValueError,
            "the attacks have different ε: pass eps= to evaluate them together",
        ),
        (
            CW(steps=2),
            0.1,
            ValueError,
            "CW has no ε (it is not an Lp-ball attack); call without eps",
        ),
        (FGSM(eps=0.1), "0.1", TypeError, "eps must be a number or a sequence of numbers, got str"),
        (FGSM(eps=0.1), [], ValueError, "eps must list at least one value"),
        (FGSM(eps=0.1), [0.1, 2.0], ValueError, "eps[1]"),
    ],
)
def test_bad_attacks_and_eps_are_refused_with_the_fix(setup, attack, eps, error, message) -> None:
    """Fails if a bad attack list or ε list is accepted, or refused with another message."""
    model, x, y = setup
    with pytest.raises(error, match=re.escape(message)):
        robust_accuracy(model, attack, (x, y), eps=eps)


def test_an_l2_attack_takes_l2_radii_above_one(setup) -> None:
    """Fails if ε values are checked as L∞ radii whatever the attack's norm."""
    model, x, y = setup
    result = robust_accuracy(model, PGD(eps=0.5, norm="l2", steps=2), (x, y), eps=[0.5, 1.5])
    assert result["eps"] == [0.5, 1.5]


def test_keep_examples_must_not_be_negative(setup) -> None:
    model, x, y = setup
    with pytest.raises(ValueError, match="keep_examples must be ≥ 0, got -1"):
        robust_accuracy(model, FGSM(eps=0.1), (x, y), keep_examples=-1)


def test_accuracy_rising_with_eps_is_reported_with_the_attacks_and_values(setup) -> None:
    """A model whose input gradient points the wrong way: FGSM lowers its loss, so accuracy
    rises with ε. Exhaustive with checks: one SoundnessWarning naming the attacks and the
    first rising pair; with check=False, none.

    Fails if the warning is skipped, names other attacks, reports other values, or fires
    without checks."""
    model, x, y = setup

    misled = Misled(model).eval()
    attacks = [FGSM(eps=0.1), FGSM(eps=0.1)]
    acc = robust_accuracy(misled, attacks, (x, y), eps=EPS, exhaustive=True, check=False)[
        "accuracy"
    ]
    tol = max(0.01, 1 / N)
    e0, e1 = next(
        (a, b)
        for a, b in zip(EPS, EPS[1:], strict=False)
        if acc[EPS.index(b)] > acc[EPS.index(a)] + tol
    )
    a0, a1 = acc[EPS.index(e0)], acc[EPS.index(e1)]
    with pytest.warns(SoundnessWarning) as seen:
        robust_accuracy(misled, attacks, (x, y), eps=EPS, exhaustive=True)
    said = [str(w.message) for w in seen if "rises" in str(w.message)]
    assert said == [
        f"FGSM+FGSM: accuracy rises with ε ({a0:.3f} at ε={e0:g} → {a1:.3f} at ε={e1:g}); a larger "
        "ball contains the smaller one, so a working attack cannot do worse — suspect gradient "
        "masking, too few steps or a bad step size"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoundnessWarning)
        robust_accuracy(misled, attacks, (x, y), eps=EPS, exhaustive=True, check=False)


def test_examples_and_per_sample_results_only_when_asked(setup) -> None:
    model, x, y = setup
    result = robust_accuracy(model, FGSM(eps=0.1), (x, y), eps=EPS)
    assert "examples" not in result and "per_sample" not in result
