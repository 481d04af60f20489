"""Inputs the commands refuse in one line instead of computing a meaningless result."""

from __future__ import annotations

import pytest
import torch

from tests.cli.conftest import one_line_error
from underfire.checkpoint import checksum


def test_evaluate_refuses_a_checkpoint_with_negative_batch_norm_variances(
    tmp_path, cli, trained_digits
):
    payload = torch.load(trained_digits, weights_only=True)
    name = next(k for k in payload["state_dict"] if k.endswith("running_var"))
    payload["state_dict"][name][:3] = -1.0
    payload["checksum"]["digest"] = checksum(payload)  # edited with care: the checksum holds
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    code, stdout, err = cli("evaluate", "--checkpoint", str(edited), "--device", "cpu")
    one_line_error(code, err, "batch-norm running variances", "negative")
    assert "NaN" not in stdout


@pytest.mark.parametrize("command", ["train-interpretgan", "train-rts"])
@pytest.mark.parametrize("value", ["-5", "0"])
def test_eval_n_must_be_a_positive_number_of_images(tmp_path, capsys, command, value):
    from underfire.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--checkpoint", str(tmp_path / "m.pt"), "--eval-n", value])
    err = capsys.readouterr().err
    one_line_error(info.value.code, err, "--eval-n", f"expected a positive integer, got {value}")


def test_command_error_is_a_core_error_the_cli_still_exports():
    from underfire import cli
    from underfire.core.errors import CommandError, UnderfireError

    assert cli.CommandError is CommandError and issubclass(CommandError, UnderfireError)
