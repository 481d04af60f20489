"""torchattacks' calling style on every attack: the model bound at construction.

``PGD(model, eps=..., alpha=..., steps=...)(x, y)`` (Kim 2020, torchattacks) equals
torchattacks' result on the same model and start, and equals our own
``PGD(eps=..., step_size=...)(model, x, y)``.
"""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

import underfire.attacks as A
from underfire.attacks import BIM, FGSM, PGD


@pytest.fixture
def xy(tiny_model):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = tiny_model(x).argmax(1)
    return x, y


def test_bound_fgsm_equals_torchattacks(tiny_model, xy):
    x, y = xy
    ref = torchattacks.FGSM(tiny_model, eps=0.07)(x, y)
    torch.testing.assert_close(FGSM(tiny_model, eps=0.07)(x, y), ref, atol=1e-6, rtol=0)


def test_bound_pgd_equals_torchattacks(tiny_model, xy):
    x, y = xy
    kw = {"eps": 0.1, "alpha": 0.02, "steps": 10, "random_start": False}
    ref = torchattacks.PGD(tiny_model, **kw)(x, y)
    ours = PGD(tiny_model, **kw)(x, y)
    assert (ours != x).any()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    # targeted, both libraries by label
    t = (y + 1) % 10
    atk = torchattacks.PGD(tiny_model, **kw)
    atk.set_mode_targeted_by_label(quiet=True)
    torch.testing.assert_close(PGD(tiny_model, **kw)(x, y, t), atk(x, t), atol=1e-6, rtol=0)


def test_bound_bim_equals_torchattacks(tiny_model, xy):
    x, y = xy
    ref = torchattacks.BIM(tiny_model, eps=0.1, alpha=0.03, steps=5)(x, y)
    ours = BIM(tiny_model, eps=0.1, alpha=0.03, steps=5)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", A.names())
def test_every_attack_binds_and_equals_the_unbound_call(name, tiny_model, xy):
    """Fails if an attack's bound form (``Cls(model, **settings)``) differs from the unbound
    call, e.g. if binding drops the settings (the substitute's small training run included)."""
    x, y = xy[0][:4], xy[1][:4]
    settings = {
        "cw": {"steps": 5, "binary_search_steps": 1},
        "ddn": {"steps": 5},
        "jsma": {"gamma": 0.05},
        "substitute": {"n_seed": 8, "rounds": 2, "epochs": 2, "seed": 0},
        "apgd": {"steps": 5},
        "apgdt": {"steps": 3, "n_target_classes": 2},
        "fab": {"steps": 5},
        "square": {"n_queries": 30},
        "autoattack": {"steps": 3, "n_queries": 10, "n_target_classes": 2},
    }.get(name, {})
    if name == "pgd":
        settings = {"random_start": False, "steps": 3}
    cls = A.ATTACKS.get(name)
    if name == "adv2":  # its interpreter is its own positional argument, after the model
        settings = {"interpreter": "grad", "steps": 2, "warm_steps": 1}
        bound = cls(tiny_model, "grad", **{k: v for k, v in settings.items() if k != "interpreter"})
    else:
        bound = cls(tiny_model, **settings)
    assert bound.model is tiny_model
    unbound = A.create(name, **settings)
    assert unbound.model is None
    t = {"target": "next"} if name == "adv2" else {}  # ADV² is targeted only
    same = {"atol": 0, "rtol": 0}
    torch.testing.assert_close(bound(x, y, **t), unbound(tiny_model, x, y, **t), **same)
    torch.testing.assert_close(unbound.bind(tiny_model)(x, y, **t), bound(x, y, **t), **same)
    # keyword forms of both
    torch.testing.assert_close(bound(x=x, y=y, **t), unbound(model=tiny_model, x=x, y=y, **t))


def test_alpha_is_step_size(tiny_model):
    assert PGD(eps=0.1, alpha=0.02).step_size == 0.02
    assert A.create("bim", alpha=0.01).step_size == 0.01
    with pytest.raises(TypeError, match="both alpha and step_size"):
        PGD(alpha=0.01, step_size=0.02)
    with pytest.raises(TypeError, match="alpha"):
        FGSM(alpha=0.1)  # FGSM has no step size


def test_binding_errors_name_the_fix(tiny_model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="not bound to a model"):
        PGD(eps=0.1)(x, y)
    with pytest.raises(TypeError, match="only positional argument"):
        PGD(0.1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="only positional argument"):
        PGD(tiny_model, nn.Identity())  # type: ignore[misc]
    with pytest.raises(TypeError, match="at most 3"):
        FGSM(tiny_model)(x, y, None, 1)


def test_explicit_model_wins_over_the_bound_one(tiny_model, xy):
    x, y = xy
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    bound = FGSM(other, eps=0.05)
    torch.testing.assert_close(bound(tiny_model, x, y), FGSM(eps=0.05)(tiny_model, x, y))
    assert bound.config() == FGSM(eps=0.05).config()  # the model is not a setting


def test_robustness_accepts_a_dataloader_and_a_dataset(tiny_model, xy):
    from torch.utils.data import DataLoader, TensorDataset

    from underfire.robustness import robust_accuracy, transfer_matrix

    x, y = xy
    attack = FGSM(eps=0.1)
    ref = robust_accuracy(tiny_model, attack, (x, y), eps=[0.05, 0.1])
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=5)):
        got = robust_accuracy(tiny_model, attack, data, eps=[0.05, 0.1])
        assert got["accuracy"] == ref["accuracy"] and got["n"] == 16
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    models = {"a": tiny_model, "b": other}
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    assert (
        transfer_matrix(models, models, attack, loader, eps=0.1)["accuracy"]
        == transfer_matrix(models, models, attack, (x, y), eps=0.1)["accuracy"]
    )
    with pytest.raises(TypeError, match="DataLoader"):
        robust_accuracy(tiny_model, attack, 42)


def test_audit_collect_data_is_the_robustness_one():
    from underfire import robustness
    from underfire.studies import audit as auditing

    assert auditing.collect_data is robustness.collect_data
