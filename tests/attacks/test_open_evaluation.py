"""Evaluating only what is still open (underfire.attacks.cascade, robust_accuracy's default):
exact worst case, valid kept examples, batch-independent PGD, CW's compacted early abort."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks import CW, FGSM, PGD
from underfire.attacks.cascade import attack_open, by_cost
from underfire.robustness import robust_accuracy

EPS = [0.05, 0.1, 0.2, 0.3]


@pytest.fixture(scope="module")
def digits(trained_digits):
    model, test = trained_digits
    return model, test.x[:160], test.y[:160]


def test_open_worst_case_is_never_above_running_everything_per_eps(digits) -> None:
    model, x, y = digits
    attacks = [PGD(eps=0.3, steps=8, seed=0), FGSM(eps=0.3)]
    full = robust_accuracy(model, attacks, (x, y), EPS, exhaustive=True, batch_size=64)
    fast = robust_accuracy(model, attacks, (x, y), EPS, batch_size=64)
    assert full["mode"] == "exhaustive" and fast["mode"] == "open"
    for e, a_fast, a_full in zip(EPS, fast["accuracy"], full["accuracy"], strict=True):
        assert a_fast <= a_full, f"open mode higher at ε={e}"
    # the model is not trivially robust or broken: the comparison says something
    assert 0 < full["accuracy"][1] < full["clean_accuracy"]
    # cheap first, and far fewer samples attacked than N per attack per ε
    assert list(fast["attacked"]) == ["fgsm", "pgd"]
    assert sum(fast["attacked"]["pgd"]) < 0.6 * len(EPS) * x.shape[0]


def test_each_robust_sample_survives_every_attack_run_alone(digits) -> None:
    """Per sample: robust in the open mode ⇒ each attack, run on the whole batch, left it
    correct (the worst case is exact, not just its mean)."""
    model, x, y = digits
    pgd = PGD(eps=0.3, steps=8, seed=0)
    clean = model(x).argmax(1) == y
    prior = clean[None].expand(len(EPS), -1).clone()
    res = attack_open(pgd, model, x, y, EPS, prior)
    for i, e in enumerate(EPS):
        alone = model(pgd.with_eps(e)(model, x, y)).argmax(1) == y
        assert not bool((res.robust[i] & ~alone).any()), f"open mode kept a broken sample at ε={e}"


def test_kept_examples_of_broken_samples_are_misclassified_and_inside_the_ball(digits) -> None:
    model, x, y = digits
    out = robust_accuracy(
        model, [FGSM(eps=0.3), PGD(eps=0.3, steps=8, seed=0)], (x, y), EPS, keep_examples=160
    )
    x_adv = out["examples"]["x_adv"]
    for i, e in enumerate(EPS):
        pred = model(x_adv[i]).argmax(1)
        dist = (x_adv[i] - x).flatten(1).abs().amax(1)
        assert bool((dist <= e + 1e-6).all()), f"an example leaves the ε={e} ball"
        assert x_adv[i].min() >= 0 and x_adv[i].max() <= 1
        # the accuracy counts exactly the samples whose kept example is classified right
        assert (pred == y).double().mean().item() == pytest.approx(out["accuracy"][i])


def test_pgd_on_a_subset_equals_the_whole_batch_run_on_those_samples(digits) -> None:
    model, x, y = digits
    x, y = x[:24], y[:24]
    pgd = PGD(eps=0.1, steps=5, seed=3)
    whole = pgd(model, x, y)
    idx = torch.tensor([1, 4, 5, 11, 20])
    part = pgd(model, x, y, subset=idx)
    torch.testing.assert_close(part[idx], whole[idx], rtol=0, atol=1e-6)
    left = torch.ones(24, dtype=torch.bool)
    left[idx] = False
    assert torch.equal(part[left], x[left])
    with pytest.raises(TypeError, match="subset"):
        pgd(model, x, y, subset=[1, 2])


def test_targeted_evaluation_falls_back_to_running_everything(digits) -> None:
    model, x, y = digits
    out = robust_accuracy(model, PGD(eps=0.1, steps=3, seed=0), (x[:32], y[:32]), target="next")
    assert out["mode"] == "exhaustive"


def test_several_attacks_need_each_an_eps_and_one_norm(digits) -> None:
    model, x, y = digits
    with pytest.raises(ValueError, match="each needs an ε"):
        robust_accuracy(model, [FGSM(eps=0.1), CW(steps=2)], (x[:8], y[:8]))
    with pytest.raises(ValueError, match="one norm"):
        robust_accuracy(model, [FGSM(eps=0.1), PGD(eps=1.0, norm="l2")], (x[:8], y[:8]), [0.1])


def test_attacks_run_cheapest_first() -> None:
    pgd, fgsm, cw = PGD(steps=20), FGSM(), CW(steps=10, binary_search_steps=5)
    assert by_cost([cw, pgd, fgsm]) == [fgsm, pgd, cw]


def _cw_reference(model, x, y, *, steps, bs_steps, const, lr):
    """CW L2 with the per-sample early abort done by masking (every sample stays in the
    batch, aborted ones frozen), torch.optim.Adam on the whole batch: the uncompacted
    version the compacted attack must reproduce."""
    w0 = torch.atanh((2 * x - 1) * 0.999999)
    c = torch.full((x.shape[0],), const)
    lo, hi = torch.zeros_like(c), torch.full_like(c, 1e10)
    best, best_l2 = x.clone(), torch.full_like(c, float("inf"))
    every = max(steps // 10, 1)
    for _ in range(bs_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        done = torch.zeros_like(c, dtype=torch.bool)
        ok_any = torch.zeros_like(done)
        prev = torch.full_like(c, float("inf"))
        for step in range(steps):
            xa = 0.5 * (torch.tanh(w) + 1)
            l2 = (xa - x).flatten(1).pow(2).sum(1)
            z = model(xa)
            other = z.masked_fill(torch.nn.functional.one_hot(y, 10).bool(), -1e9).amax(1)
            loss = l2 + c * (z.gather(1, y[:, None])[:, 0] - other).clamp_min(0)
            opt.zero_grad()
            loss.sum().backward()
            with torch.no_grad():
                ok = (z.argmax(1) != y) & ~done
                ok_any |= ok
                better = ok & (l2 < best_l2)
                best_l2[better], best[better] = l2[better], xa[better]
                w.grad[done] = 0
                keep = w.detach().clone()
            opt.step()
            with torch.no_grad():
                w[done] = keep[done]
                if step % every == 0:
                    stalled = loss.detach() > prev * 0.9999
                    done |= stalled
                    prev = torch.where(stalled, prev, loss.detach())
        hi = torch.where(ok_any, torch.minimum(hi, c), hi)
        lo = torch.where(ok_any, lo, torch.maximum(lo, c))
        c = torch.where(hi < 1e10, (lo + hi) / 2, torch.where(ok_any, c, c * 10))
    return best


def test_cw_compacted_early_abort_matches_the_masked_reference_within_two_percent(
    digits,
) -> None:
    model, x, y = digits
    x, y = x[:48], y[:48]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        ref = _cw_reference(model, x, y, steps=60, bs_steps=3, const=1.0, lr=0.05)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    fast = CW(steps=60, binary_search_steps=3, const=1.0, lr=0.05)(model, x, y)
    right = model(x).argmax(1) == y
    stats = []
    for x_adv in (ref, fast):
        flipped = (model(x_adv).argmax(1) != y) & right
        stats.append((int(flipped.sum()), (x_adv - x).flatten(1).norm(dim=1)[flipped].median()))
    (n_ref, l2_ref), (n_fast, l2_fast) = stats
    assert n_ref > 0.9 * int(right.sum())
    assert abs(n_fast - n_ref) <= 0.02 * n_ref
    assert abs(float(l2_fast) - float(l2_ref)) <= 0.02 * float(l2_ref)


def test_an_attack_fitted_on_its_batch_runs_exhaustively(digits) -> None:
    from underfire.attacks import SubstituteAttack
    from underfire.attacks.cascade import openable

    assert openable(PGD(seed=0)) and openable(FGSM()) and openable(CW())
    assert not openable(SubstituteAttack())
