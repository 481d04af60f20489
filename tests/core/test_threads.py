"""The thread policy: one thread for small jobs or a loaded machine, the idle cores for big
ones, ``--threads`` above both, torch's setting restored after a job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from underfire.core import threads
from underfire.core.threads import choose_threads, forward_macs, job_threads, set_override


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    """The policy itself: no --threads and no OMP_NUM_THREADS (the suite sets it to 1)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
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


def test_busy_cores_reads_the_cpus_of_this_process_from_proc_stat(tmp_path) -> None:
    stat = tmp_path / "stat"
    # cpu0 and cpu1 are ours, cpu2 is not; fields: user nice system idle iowait irq softirq steal
    stat.write_text(
        "cpu  90 0 0 90 0 0 0 0 0 0\n"
        "cpu0 30 0 0 10 0 0 0 0 0 0\n"
        "cpu1 10 0 0 25 5 0 0 0 0 0\n"
        "cpu2 50 0 0 55 0 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    assert threads._cpu_jiffies({0, 1}, str(stat)) == (80, 40)
    assert threads._cpu_jiffies({0, 1}, str(tmp_path / "missing")) is None
    # 40 of 80 jiffies busy on two cores: one core, less the quarter this process used
    assert threads._others_busy((1000, 500), (1080, 540), 2, 0.25) == pytest.approx(0.75)
    assert threads._others_busy((1000, 500), (1080, 500), 2, 0.0) == pytest.approx(2.0)
    assert threads._others_busy((1000, 500), (1000, 500), 2, 0.0) is None  # no tick elapsed
    assert threads._others_busy((1000, 500), (1080, 580), 2, 0.3) == 0.0


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_busy_cores_sees_a_process_that_keeps_a_core_busy() -> None:
    """The policy's measure of load reacts at once (the load average lags a minute)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.8


def test_a_declared_omp_num_threads_wins_over_the_policy_and_threads_over_it(
    monkeypatch,
) -> None:
    monkeypatch.setattr(threads, "other_load", lambda: 0.0)
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    assert choose_threads(1e10) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tests' cli_env, a job runner's budget
    assert choose_threads(1e10) == 1 and threads.override() == 1
    set_override(3)
    assert choose_threads(1e10) == 3
    set_override(None)
    for junk in ("", "0", "two", "-1"):  # not a count: the policy decides
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert choose_threads(1e10) == 4


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
