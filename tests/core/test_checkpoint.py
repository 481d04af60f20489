import pickle

import pytest
import torch

from underfire.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from underfire.models import create_model, model_for_dataset


def test_roundtrip_rebuilds_the_model_with_metadata(tmp_path):
    model = model_for_dataset("ross-cnn", "digits", pooling="avg").eval()
    path = save_checkpoint(tmp_path / "m.pt", model, meta={"dataset": "digits", "accuracy": 0.9})
    loaded = load_checkpoint(path)
    assert loaded.meta == {"dataset": "digits", "accuracy": 0.9}
    assert loaded.model.config == model.config
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert not loaded.model.training


def test_model_without_registry_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="create_model"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2))


def test_missing_corrupted_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(junk)
    good = save_checkpoint(tmp_path / "good.pt", create_model("ross-cnn"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "state_dict.pt"
    torch.save(create_model("ross-cnn").state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not an underfire checkpoint"):
        load_checkpoint(foreign)


class _Exploit:
    def __reduce__(self):
        return (
            exec,
            ("import pathlib; pathlib.Path(__file__ if False else 'PWNED').write_text('x')",),
        )


def test_pickled_code_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "underfire.checkpoint/1", "payload": _Exploit()}, f)
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    assert not (tmp_path / "PWNED").exists()


def test_weights_that_do_not_fit(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", create_model("ross-cnn"))
    payload = torch.load(path, weights_only=True)
    payload["model"]["kwargs"] = {"hidden": 16}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)
