"""transfer_matrix's inputs and bookkeeping: how models are named, how bad ones are refused,
that a target reaches the attack, clean accuracy per victim, and that the white-box soundness
check runs by default; and the default target rule of a targeted attack in robust_accuracy."""

from __future__ import annotations

import warnings

import pytest
import torch

from underfire.attacks import FGSM, TGSM, Attack, SoundnessWarning
from underfire.robustness import robust_accuracy, transfer_matrix


@pytest.fixture(scope="module")
def setup(trained_digits):
    model, test = trained_digits
    return model, (test.x[:60], test.y[:60])


class Inverted(Attack):
    """A broken attack: FGSM at small ε, a no-op at large ε (accuracy rises with ε)."""

    name = "inverted"
    norm = "linf"

    def __init__(self, *, eps: float = 0.3) -> None:
        self.eps = eps

    def _perturb(self, model, x, y, target):  # type: ignore[no-untyped-def]
        return FGSM(eps=self.eps)(model, x, y) if self.eps < 0.2 else x.clone()


def test_models_given_as_sequences_are_named_by_role_and_position(setup):
    """Fails if sequence models are not named source0.., victim0.. (the result's keys)."""
    model, data = setup
    result = transfer_matrix([model, model], [model], FGSM(), data, eps=0.1)
    assert result["sources"] == ["source0", "source1"] and result["victims"] == ["victim0"]
    assert list(result["clean_accuracy"]) == ["victim0"]


@pytest.mark.parametrize(
    ("sources", "victims", "kwargs", "error", "message"),
    [
        (
            "one",
            "list",
            {},
            TypeError,
            "sources must be a mapping or a sequence of models, not one model",
        ),
        (
            "list",
            "one",
            {},
            TypeError,
            "victims must be a mapping or a sequence of models, not one model",
        ),
        ("list", [], {}, ValueError, "need at least one victim model"),
        ({}, "list", {}, ValueError, "need at least one source model"),
        ({"a": "model"}, "list", {}, TypeError, "source 'a' must be a torch.nn.Module, got str"),
        ("list", {"v": 3}, {}, TypeError, "victim 'v' must be a torch.nn.Module, got int"),
        ("list", "list", {"batch_size": 0}, ValueError, "batch_size must be ≥ 1, got 0"),
        (
            "list",
            "list",
            {"target": torch.zeros(3, dtype=torch.long)},
            ValueError,
            "target must have shape (60,) to match the batch, got (3,)",
        ),
    ],
)
def test_bad_inputs_are_refused_naming_the_role(setup, sources, victims, kwargs, error, message):
    """Fails if a bad source, victim, batch size or target is accepted or its message loses
    the role (source/victim), the model's name or the expected size."""
    model, data = setup

    def resolve(spec):
        return {"one": model, "list": [model]}.get(spec, spec) if isinstance(spec, str) else spec

    with pytest.raises(error) as info:
        transfer_matrix(resolve(sources), resolve(victims), FGSM(), data, eps=0.1, **kwargs)
    assert str(info.value) == message


def test_a_target_reaches_the_attack(setup):
    """Fails if transfer_matrix drops ``target`` (untargeted examples instead): its white-box
    cell equals robust_accuracy with the same target."""
    model, data = setup
    t = (data[1] + 1) % 10
    targeted = transfer_matrix({"m": model}, {"m": model}, FGSM(), data, eps=[0.2], target=t)
    assert (
        targeted["accuracy"][0][0]
        == robust_accuracy(model, FGSM(), data, [0.2], target=t)["accuracy"]
    )
    untargeted = transfer_matrix({"m": model}, {"m": model}, FGSM(), data, eps=[0.2])
    assert targeted["accuracy"] != untargeted["accuracy"]  # the case tells the two apart


def test_white_box_cells_are_checked_by_default_and_not_when_asked(setup):
    """Fails if the soundness check (accuracy rising with ε on a white-box cell) is off by
    default, or still runs with check=False."""
    model, data = setup
    with pytest.warns(SoundnessWarning, match="accuracy rises with ε"):
        transfer_matrix({"m": model}, {"m": model}, Inverted(), data, eps=[0.1, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoundnessWarning)
        transfer_matrix({"m": model}, {"m": model}, Inverted(), data, eps=[0.1, 0.3], check=False)


def test_clean_accuracy_is_each_victims_own(setup):
    """Fails if a victim's clean accuracy is not the fraction it classifies right (a count
    overwritten per batch, subtracted, or of the mistakes)."""
    model, data = setup
    result = transfer_matrix([model], {"v": model}, FGSM(), data, eps=0.1, batch_size=25)
    with torch.no_grad():
        expected = float((model(data[0]).argmax(1) == data[1]).double().mean())
    assert result["clean_accuracy"] == {"v": pytest.approx(expected)}
    assert expected > 0.5


def test_float64_data_for_a_float32_model_is_refused(setup):
    """Fails if transfer_matrix skips the dtype check of the data against each model."""
    model, (x, y) = setup
    with pytest.raises(TypeError, match=r"^input has dtype torch.float64 but the model"):
        transfer_matrix([model], [model], FGSM(), (x.double(), y), eps=0.1)


def test_robust_accuracy_counts_success_by_the_attacks_default_rule(setup):
    """Fails if a targeted attack's own rule ("next" for TGSM) is not used to count success
    when the call gives no target."""
    model, data = setup
    result = robust_accuracy(model, TGSM(eps=0.3), data, eps=[0.3])
    x_adv = TGSM(eps=0.3)(model, *data)
    with torch.no_grad():
        hit = float((model(x_adv).argmax(1) == (data[1] + 1) % 10).double().mean())
    assert result["success_rate"][0] == pytest.approx(hit)
