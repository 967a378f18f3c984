import pickle

import pytest
import torch

from cnnlab import TrainConfig, create_model, fit
from cnnlab.checkpoint import (
    CheckpointError,
    flatten_state,
    latest_checkpoint,
    list_checkpoints,
    load_weights_into,
    save_weights,
    unflatten_state,
)


def test_weights_round_trip_with_metadata(tmp_path):
    model = create_model("lenet5")
    save_weights(tmp_path / "w.safetensors", model, {"model": "lenet5", "epoch": 3})
    other = create_model("lenet5", init="torch")
    meta = load_weights_into(other, tmp_path / "w.safetensors")
    assert meta == {"model": "lenet5", "epoch": 3}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_pickle_with_a_payload_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps({"weight": Payload()}))
    torch.save({"x": Payload()}, tmp_path / "evil.pt")  # torch.save's zip format
    for name in ("evil.safetensors", "evil.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: a pickle/zip file"):
            load_weights_into(create_model("lenet5"), tmp_path / name)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_wrong_shape_and_other_model_are_refused(tmp_path):
    save_weights(tmp_path / "w.safetensors", create_model("lenet5"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors: not a valid safetensors file"):
        load_weights_into(create_model("lenet5"), tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="has shape .* the model expects"):
        load_weights_into(create_model("lenet5", num_classes=3), tmp_path / "w.safetensors")
    save_weights(tmp_path / "other.safetensors", {"fc.weight": torch.zeros(2, 2)}, {"model": "other"})
    with pytest.raises(CheckpointError, match="weights of other do not fit lenet5"):
        load_weights_into(create_model("lenet5"), tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="file not found"):
        load_weights_into(create_model("lenet5"), tmp_path / "absent.safetensors")


def test_optimizer_state_round_trips_without_pickle():
    model = create_model("lenet5")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    tensors, skeleton = flatten_state({"optimizer": opt.state_dict(), "note": (1, "a", None, 2.5)})
    import json

    restored = unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert restored["note"] == (1, "a", None, 2.5)
    original = opt.state_dict()
    assert restored["optimizer"]["param_groups"] == original["param_groups"]
    for i, state in original["state"].items():
        for k, v in state.items():
            assert torch.equal(restored["optimizer"]["state"][i][k], v)


def _data():
    from conftest import synthetic_digits

    from cnnlab.data import ArrayDataset

    images, labels = synthetic_digits(384, 3)
    ds = ArrayDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
    )
    return ds.subset(range(256)), ds.subset(range(256, 384))


def _weights(model):
    return torch.cat([t.flatten().float() for t in model.state_dict().values()])


# At an epoch boundary, inside an epoch; with augmentation and a last clean epoch (4 steps an epoch): cut
# before the clean epoch and inside it.
@pytest.mark.parametrize("stop_after_steps, augmented", [(4, False), (6, False), (6, True), (10, True)])
def test_resume_in_process_gives_identical_weights(tmp_path, stop_after_steps, augmented):
    from cnnlab.augment import Augment

    train, val = _data()
    cfg = TrainConfig(epochs=3, batch_size=64, progress=False, seed=3, checkpoint_steps=2, deterministic=True)
    augment = Augment.lesson() if augmented else None
    if augmented:
        cfg = cfg.updated(clean_epochs=1)
    torch.manual_seed(0)
    full = create_model("lenet5")
    fit(full, train, val, cfg, run_dir=tmp_path / "full", augment=augment)

    class StopAt(Exception):
        pass

    from cnnlab import Callback

    class Crash(Callback):  # dies right after the checkpoint of step N has been written
        def __init__(self):
            self.steps = 0

        def on_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == stop_after_steps + 1:
                raise StopAt

    torch.manual_seed(0)
    with pytest.raises(StopAt):
        fit(create_model("lenet5"), train, val, cfg, callbacks=[Crash()], run_dir=tmp_path / "cut", augment=augment)
    torch.manual_seed(123)  # a different fresh init: everything must come from the checkpoint
    resumed = create_model("lenet5")
    history = fit(resumed, train, val, cfg, run_dir=tmp_path / "cut", resume=True, augment=augment)
    assert torch.equal(_weights(full), _weights(resumed))
    assert len(history["val_accuracy"]) == 3


def test_damaged_newest_checkpoint_falls_back_to_previous(tmp_path):
    train, val = _data()
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False)
    fit(create_model("lenet5"), train, val, cfg, run_dir=tmp_path)
    folders = list_checkpoints(tmp_path)
    assert len(folders) == 2
    weights = folders[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    found, skipped = latest_checkpoint(tmp_path)
    assert found[0] == folders[0]
    assert len(skipped) == 1 and folders[-1].name in skipped[0] and "checksum mismatch" in skipped[0]
    # a manifest that is JSON but not a manifest is damage too (a list gave an AttributeError, {"files": {}}
    # a KeyError from state.json, and the good checkpoint before it was never tried)
    for manifest in ("[]", '{"files": {}}', '{"files": []}'):
        (folders[-1] / "MANIFEST.json").write_text(manifest)
        found, skipped = latest_checkpoint(tmp_path)
        assert found[0] == folders[0] and "MANIFEST.json: does not list model.safetensors" in skipped[0]


def test_a_signal_during_the_last_epochs_validation_stops_the_run_and_resumes_to_its_end(tmp_path):
    """SIGTERM that arrived after the last step (validation, callbacks) was noted and forgotten: the run went on
    to its test report and exited 0. It now ends there with 143 and a checkpoint, and a resume finishes."""
    import os
    import signal

    from cnnlab import Callback
    from cnnlab.errors import TrainingInterrupted

    train, val = _data()
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False)

    class TermAtTheEnd(Callback):  # a scheduler's SIGTERM while the last epoch validates
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="interrupted by SIGTERM after epoch 2") as caught:
        fit(create_model("lenet5"), train, val, cfg, callbacks=[TermAtTheEnd()], run_dir=tmp_path)
    assert caught.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    resumed = create_model("lenet5")
    history = fit(resumed, train, val, cfg, run_dir=tmp_path, resume=True)
    assert len(history["val_accuracy"]) == 2  # nothing left to train: the history comes from the checkpoint


@pytest.mark.parametrize("damage", ["removed", "shortened", "garbage"])
def test_a_resume_rewrites_a_metrics_csv_changed_since_the_checkpoint(tmp_path, damage):
    """A metrics.csv shorter than the checkpoint left it was "cut back" to its old length: padded with NUL
    bytes, without its header or its first rows, and the report showed no epochs. Its rows now come again
    from the history the checkpoint kept, and the file equals that of a run never stopped."""
    import csv

    from cnnlab import Callback
    from cnnlab.train import run_directory_callbacks

    train, val = _data()
    cfg = TrainConfig(epochs=3, batch_size=64, progress=False)

    class StopAt(Exception):
        pass

    class CrashInEpoch3(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise StopAt

    def rows(folder):
        with open(folder / "metrics.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    fit(create_model("lenet5"), train, val, cfg, run_directory_callbacks(full, {}), run_dir=full)
    with pytest.raises(StopAt):
        fit(create_model("lenet5"), train, val, cfg, [*run_directory_callbacks(cut, {}), CrashInEpoch3()], run_dir=cut)
    metrics = cut / "metrics.csv"
    if damage == "removed":
        metrics.unlink()
    elif damage == "shortened":
        metrics.write_bytes(metrics.read_bytes()[:40])
    else:
        metrics.write_bytes(b"x" * (len(metrics.read_bytes()) + 5))
    fit(create_model("lenet5"), train, val, cfg, run_directory_callbacks(cut, {}), run_dir=cut, resume=True)
    assert b"\x00" not in metrics.read_bytes()
    assert rows(cut) == rows(full) and len(rows(cut)) == 3
