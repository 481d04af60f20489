"""The thread policy: one thread for small jobs or a loaded machine, the idle cores for big
ones, ``--threads`` above both, torch's setting restored after a job."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.core import threads
from underfire.core.threads import choose_threads, forward_macs, job_threads, set_override


@pytest.fixture(autouse=True)
def no_override():
    set_override(None)
    yield
    set_override(None)


def test_small_jobs_get_one_thread_whatever_the_load() -> None:
    assert choose_threads(1e6, load=0.0) == 1


def test_big_jobs_get_the_idle_cores_and_one_under_load(monkeypatch) -> None:
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    assert choose_threads(1e10, load=0.0) == 4
    assert choose_threads(1e10, load=2.2) == 2
    assert choose_threads(1e10, load=7.0) == 1
    assert choose_threads(None, load=0.4) == 4


def test_override_wins_and_bad_counts_are_refused(monkeypatch) -> None:
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    set_override(3)
    assert choose_threads(1e3, load=9.0) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an integer"):
            set_override(bad)  # type: ignore[arg-type]


def test_job_threads_restores_torch_setting() -> None:
    before = torch.get_num_threads()
    set_override(1)
    with job_threads(1e12) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_forward_macs_counts_convolutions_and_linear_layers_per_batch() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    model.train()
    macs = forward_macs(model, torch.rand(3, 2, 8, 8), batch=10)
    conv = 4 * 6 * 6 * (2 * 3 * 3)
    assert macs == 10 * (conv + 144 * 5)
    assert model.training  # the probe gave the model back in its mode


def test_threads_option_is_validated_on_the_command_line(capsys) -> None:
    from underfire.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--threads", "0", "--checkpoint", "none.pt"])
    assert exit_.value.code == 2
    assert "--threads" in capsys.readouterr().err
