"""core.state's reversible model changes: patch_forward and freeze restore what they change,
also when the block raises, and nest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.core import freeze, patch_forward


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_patch_forward_runs_the_new_forward_and_restores_the_class_forward() -> None:
    net = _net()
    layer = net[0]
    x = torch.randn(5, 3)
    before = net(x)
    with patch_forward(layer, lambda inp: torch.zeros(inp.shape[0], 4)) as same:
        assert same is layer
        assert torch.equal(net(x), net[2](torch.zeros(5, 4)))
    assert "forward" not in layer.__dict__
    assert torch.equal(net(x), before)


def test_patch_forward_restores_after_an_exception() -> None:
    layer = nn.Linear(3, 4)
    with pytest.raises(RuntimeError, match="boom"), patch_forward(layer, lambda inp: inp):
        raise RuntimeError("boom")
    assert "forward" not in layer.__dict__
    assert layer(torch.zeros(2, 3)).shape == (2, 4)


def test_patch_forward_nests_and_each_exit_restores_the_enclosing_patch() -> None:
    layer = nn.Linear(3, 4)
    x = torch.zeros(2, 3)

    def one(inp: torch.Tensor) -> torch.Tensor:
        return torch.ones(inp.shape[0], 4)

    def two(inp: torch.Tensor) -> torch.Tensor:
        return torch.full((inp.shape[0], 4), 2.0)

    with patch_forward(layer, one):
        with pytest.raises(ValueError), patch_forward(layer, two):
            assert float(layer(x)[0, 0]) == 2.0
            raise ValueError
        assert layer.__dict__["forward"] is one
        assert float(layer(x)[0, 0]) == 1.0
    assert "forward" not in layer.__dict__


def test_patch_forward_refuses_what_is_not_a_module_or_a_callable() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"), patch_forward("layer", print):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError, match="callable"), patch_forward(nn.Linear(2, 2), 3):  # type: ignore[arg-type]
        pass


def test_freeze_as_a_statement_freezes_every_parameter_for_good() -> None:
    net = _net()
    freeze(net)
    assert not any(p.requires_grad for p in net.parameters())


def test_freeze_block_restores_each_flag_also_after_an_exception() -> None:
    net = _net()
    net[2].bias.requires_grad_(False)  # a mixed state must come back exactly
    flags = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RuntimeError), freeze(net) as same:
        assert same is net
        assert not any(p.requires_grad for p in net.parameters())
        raise RuntimeError
    assert [p.requires_grad for p in net.parameters()] == flags


def test_freeze_blocks_nest() -> None:
    net = _net()
    with freeze(net):
        net[0].weight.requires_grad_(True)
        with freeze(net):
            assert not net[0].weight.requires_grad
        assert net[0].weight.requires_grad  # the inner block gives back the outer block's state
    assert all(p.requires_grad for p in net.parameters())


def test_freeze_refuses_a_non_module() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        freeze(object())  # type: ignore[arg-type]
