"""Contract tests, parametrized over every registered attack (timm-style registry-wide tests)."""

from __future__ import annotations

import inspect

import pytest
import torch

import underfire.attacks as A
from underfire.attacks import JSMA, PGD, Attack
from underfire.core.registry import UnknownNameError

from .attack_cases import FACTORIES

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_every_registered_attack_is_covered():
    """Fails if an attack is registered without a contract case here, or if the test said
    to cover ADV² (tests/attacks/test_adv2.py::test_contract) is gone."""
    from . import test_adv2

    covered = {f().name for f in FACTORIES.values()}
    # ADV² needs an interpreter and a target: tests/attacks/test_adv2.py::test_contract runs
    # this contract for it, once per interpreter.
    assert callable(getattr(test_adv2, "test_contract", None))
    assert covered | {"adv2"} == set(A.names())
    assert covered == {
        *("fgsm", "tgsm", "bim", "pgd", "jsma", "cw", "ddn", "substitute"),
        *("apgd", "apgdt", "fab", "square", "autoattack"),
    }


def _budget_ok(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if attack.eps is not None and attack.norm == "linf":
        assert delta.abs().max() <= attack.eps + 1e-6
    elif attack.eps is not None and attack.norm == "l2":
        assert (delta.norm(dim=1) <= attack.eps + 1e-5).all()
    if isinstance(attack, JSMA):
        budget = 2 * attack.max_iterations(x[0].numel())
        assert ((delta != 0).sum(1) <= budget).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("key", list(FACTORIES))
def test_contract(key, device, tiny_model, batch):
    attack = FACTORIES[key]()
    model = tiny_model.to(device).train()  # the attack must use eval mode and restore train mode
    x, y = batch[0].to(device), batch[1].to(device)
    x_before = x.clone()
    sentinel = {name: torch.full_like(p, 0.5) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = sentinel[name]
    model.net.features.block1[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    running = model.net.features.block1[1].running_mean.clone()

    x_adv = attack(model, x, y)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert torch.equal(x, x_before), "input mutated"
    _budget_ok(attack, x, x_adv)
    assert model.training
    assert torch.equal(model.net.features.block1[1].running_mean, running), "BN statistics changed"
    for name, p in model.named_parameters():
        assert p.grad is sentinel[name] and bool((p.grad == 0.5).all()), f"{name}.grad changed"
        assert p.requires_grad == (name != "net.features.block1.0.weight")
    assert x_adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("key", [k for k in FACTORIES if FACTORIES[k]().deterministic])
def test_batched_equals_per_sample(key, tiny_model, batch):
    # float64 so that batch-size-dependent kernels do not flip argmax decisions (JSMA, CW)
    model = tiny_model.double()
    x, y = batch[0].double(), batch[1]
    attack = FACTORIES[key]()
    whole = attack(model, x, y)
    single = torch.cat([attack(model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(whole, single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("key", list(FACTORIES))
def test_seeded_determinism(key, tiny_model, batch):
    x, y = batch
    torch.manual_seed(123)
    first = FACTORIES[key]()(tiny_model, x, y)
    torch.manual_seed(456)  # the global RNG must not matter once a seed is given
    second = FACTORIES[key]()(tiny_model, x, y)
    torch.testing.assert_close(first, second, atol=0, rtol=0)


@pytest.mark.parametrize("key", list(FACTORIES))
def test_empty_batch(key, tiny_model):
    x, y = torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)
    assert FACTORIES[key]()(tiny_model, x, y).shape == (0, 1, 8, 8)


def test_eps_zero_returns_input(tiny_model, batch):
    x, y = batch
    for attack in (A.FGSM(eps=0.0), A.PGD(eps=0.0), A.BIM(eps=0.0)):
        assert torch.equal(attack(tiny_model, x, y), x)


def test_registry_create_and_errors():
    assert isinstance(A.create("PGD", eps=0.1, steps=2), PGD)
    with pytest.raises(
        UnknownNameError, match="choose one of: adv2, apgd, apgdt, autoattack, bim, cw"
    ):
        A.create("deepfool")
    with pytest.raises(TypeError, match="bad arguments for attack 'fgsm'"):
        A.create("fgsm", steps=3)


@pytest.mark.parametrize("name", ["fgsm", "tgsm", "bim", "pgd", "jsma", "cw", "ddn", "substitute"])
def test_constructor_is_keyword_only(name):
    factory = A.ATTACKS.get(name)
    params = list(inspect.signature(factory).parameters.values())
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError):
        factory(0.1)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: A.FGSM(eps=-0.1), "eps must be ≥ 0"),
        (lambda: A.PGD(steps=0), "steps must be ≥ 1"),
        (lambda: A.PGD(norm="l1"), "norm must be one of"),
        (lambda: A.PGD(restarts=0), "restarts must be ≥ 1"),
        (lambda: A.PGD(step_size=0.0), "step_size must be > 0"),
        (lambda: A.PGD(restarts=3, random_start=False), "set random_start=True"),
        (lambda: A.JSMA(theta=0), "theta must be a nonzero number"),
        (lambda: A.JSMA(gamma=1.5), "gamma must be ≤ 1"),
        (lambda: A.TGSM(target="nearest"), "target rule must be"),
        (lambda: A.CW(lr=0), "lr must be > 0"),
        (lambda: A.SubstituteAttack(rounds=0), "rounds must be ≥ 1"),
    ],
)
def test_constructor_validation(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_call_validation(tiny_model, batch):
    x, y = batch
    attack = A.FGSM(eps=0.1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        attack(tiny_model, x * 2, y)
    with pytest.raises(ValueError, match="add a batch dimension"):
        attack(tiny_model, x[0], y)
    with pytest.raises(ValueError, match="must have shape"):
        attack(tiny_model, x, y[:2])
    with pytest.raises(ValueError, match="unknown target rule 'nearest'"):
        attack(tiny_model, x, y, target="nearest")
    with pytest.raises(ValueError, match="target must be in"):
        attack(tiny_model, x, y, target=torch.full_like(y, 10))


def test_target_rules(tiny_model, batch):
    x, y = batch
    assert torch.equal(A.resolve_target(tiny_model, x, y, "next"), (y + 1) % 10)
    with torch.no_grad():
        assert torch.equal(
            A.resolve_target(tiny_model, x, y, "least-likely"), tiny_model(x).argmin(1)
        )
    g = torch.Generator().manual_seed(0)
    rand = A.resolve_target(tiny_model, x, y, "random", generator=g)
    assert (rand != y).all() and rand.min() >= 0 and rand.max() < 10
    assert A.resolve_target(tiny_model, x, y, None) is None


@pytest.mark.parametrize("key", list(FACTORIES))
def test_config_is_json_and_rebuilds(key):
    import json

    attack = FACTORIES[key]()
    config = json.loads(json.dumps(attack.config()))
    assert config["name"] == attack.name
    if attack.name not in ("substitute",):
        rebuilt = A.create(attack.name, **{k: v for k, v in config.items() if k in _params(attack)})
        assert rebuilt.config() == attack.config()


def _params(attack: Attack) -> set[str]:
    return set(inspect.signature(type(attack)).parameters)
