import pickle

import pytest
import torch

from underfire.checkpoint import (
    CheckpointError,
    checksum,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from underfire.core.errors import NonFiniteError
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
    _resave(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def _resave(payload, path):
    """Write an edited payload with a valid checksum (what a careful forger would do)."""
    payload["checksum"] = {"algorithm": "sha256", "digest": checksum(payload)}
    torch.save(payload, path)


def _flip_inside_tensor(path, tensor):
    """Flip bits of the first bytes of ``tensor``'s data where they lie in the saved file."""
    raw = bytearray(path.read_bytes())
    needle = tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()[:32]
    at = raw.find(needle)
    assert at > 0 and raw.find(needle, at + 1) < 0, "tensor bytes not found once in the file"
    for i in range(at, at + 8):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_flipped_bytes_inside_a_tensor_fail_the_checksum(tmp_path):
    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", model)
    assert read_checkpoint(path)["checksum"]["algorithm"] == "sha256"
    weight = max(model.parameters(), key=lambda p: p.numel())  # the largest tensor
    _flip_inside_tensor(path, weight)
    # torch itself does not notice: the file still unpickles, with other weights
    raw = torch.load(path, weights_only=True)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(raw["state_dict"].values(), model.state_dict().values(), strict=True)
    )
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("version", [None, "0.0.9"])
def test_old_checkpoints_without_a_checksum_load_with_a_warning(tmp_path, version):
    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["checksum"]
    if version is None:  # written before versions were recorded
        del payload["underfire_version"]
    else:
        payload["underfire_version"] = version
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="no checksum"):
        loaded = load_checkpoint(path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value)


@pytest.mark.parametrize("version", [None, "0.1.0", "0.2.0.dev3", "1.0+local"])
def test_a_checkpoint_whose_checksum_was_removed_is_refused_as_tampered(tmp_path, version):
    from underfire._version import __version__

    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    assert payload["underfire_version"] == __version__
    del payload["checksum"]
    if version is not None:
        payload["underfire_version"] = version
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="no checksum, but underfire .* always writes one"):
        load_checkpoint(path)


def test_negative_batch_norm_variances_are_refused_at_load(tmp_path):
    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    name = next(k for k in payload["state_dict"] if k.endswith("running_var"))
    payload["state_dict"][name][0] = -0.5
    _resave(payload, path)  # a valid checksum: only the values give it away
    with pytest.raises(CheckpointError, match=f"running variances {name} are negative"):
        load_checkpoint(path)


def test_non_finite_weights_are_refused_at_save_and_load(tmp_path):
    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="NaN"):
        save_checkpoint(tmp_path / "nan.pt", model)
    assert not (tmp_path / "nan.pt").exists()
    good = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", good)
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key][0] = float("inf")
    _resave(payload, path)
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.__setitem__("model", "ross-cnn"), "is a str, not a dict"),
        (lambda p: p.__setitem__("meta", "digits"), "'meta' entry is a str"),
        (lambda p: p["meta"].__setitem__("dataset", 3), "meta\\['dataset'\\] is a int"),
        (lambda p: p["model"]["kwargs"].__setitem__("num_classes", 10**12), "absurd"),
        (lambda p: p["model"]["kwargs"].__setitem__("hidden", -5), "hidden|negative|cannot"),
        (lambda p: p["model"]["kwargs"].__setitem__("num_classes", 11), "do not fit"),
        (lambda p: p["model"]["kwargs"].__setitem__("dropout", float("nan")), "not finite"),
        (lambda p: p["model"]["kwargs"].__setitem__("mean", {"a": 1}), "is a dict"),
        (lambda p: p["model"].__setitem__("name", "vgg99"), "unknown model 'vgg99'"),
        (lambda p: p["state_dict"].__setitem__("net.x", "oops"), "not a tensor"),
        (lambda p: p.__setitem__("state_dict", {}), "non-empty dict"),
        (lambda p: p.__setitem__("checksum", "abc"), "checksum entry is malformed"),
    ],
)
def test_schema_violations_are_checkpoint_errors(tmp_path, edit, message):
    model = model_for_dataset("ross-cnn", "digits", hidden=32)
    path = save_checkpoint(tmp_path / "m.pt", model, meta={"dataset": "digits"})
    payload = torch.load(path, weights_only=True)
    edit(payload)
    if isinstance(payload.get("checksum"), dict):
        _resave(payload, path)
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_model_for_other_images_or_classes_is_refused_before_any_forward_pass():
    from underfire.checkpoint import check_model_fits_data
    from underfire.data import load_dataset

    digits = load_dataset("digits", "test")
    check_model_fits_data(model_for_dataset("ross-cnn", "digits"), "d.pt", "digits", digits)
    mnist_model = model_for_dataset("ross-cnn", "mnist")
    with pytest.raises(CheckpointError, match=r"m.pt is a model for 1×28×28 images .* digits has"):
        check_model_fits_data(mnist_model, "m.pt", "digits", digits)
    five = create_model("ross-cnn", in_channels=1, input_size=8, num_classes=5)
    with pytest.raises(CheckpointError, match="with 5 classes"):
        check_model_fits_data(five, "f.pt", "digits", digits)
