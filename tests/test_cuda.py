"""The GPU paths: run only where CUDA is there (they skip elsewhere, so CI on a CPU machine skips them).

Each checks that a GPU gives what the CPU gives: the augmentation, the models' outputs in bf16, training
that learns (also compiled, mixed precision, from a uint8 image folder), and a checkpoint that resumes.
"""

from __future__ import annotations

import pytest
import torch

from cnnlab import TrainConfig, create_model, fit
from cnnlab.augment import Augment

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cfg(**kw):
    base = dict(epochs=3, batch_size=64, lr=3e-3, progress=False, checkpoint_every=0, device="cuda")
    return TrainConfig(**{**base, **kw})


def test_augmentation_on_the_gpu_matches_the_cpu():
    aug = Augment.lesson(fill_mode="reflect")
    x = torch.rand(64, 1, 28, 28) * 255
    params = aug.random_params(64, 28, 28, generator=torch.Generator().manual_seed(3))
    on_gpu = aug.apply(x.cuda(), {k: v.cuda() if torch.is_tensor(v) else v for k, v in params.items()})
    assert on_gpu.device.type == "cuda"
    # float32 bilinear sampling: the same maps, rounding may differ by a few ulps of 255
    torch.testing.assert_close(on_gpu.cpu(), aug.apply(x, params), atol=1e-3, rtol=0)
    g = torch.Generator(device="cuda")
    first = aug(x.cuda(), generator=g.manual_seed(1))
    assert torch.equal(first, aug(x.cuda(), generator=g.manual_seed(1)))  # seeded on the GPU too


@pytest.mark.parametrize("name", ["lenet5", "alexnet_bn"])
def test_bf16_autocast_on_the_gpu_stays_close_to_fp32(name):
    torch.manual_seed(0)
    model = create_model(name).cuda().eval().to(memory_format=torch.channels_last)
    c, h, w = {"lenet5": (1, 28, 28), "alexnet_bn": (3, 227, 227)}[name]
    x = torch.randn(8, c, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(x).float()
    assert (bf16.argmax(1) == fp32.argmax(1)).float().mean() >= 0.75
    assert (bf16 - fp32).abs().max() <= 0.05 * fp32.abs().max() + 0.05


@pytest.mark.parametrize("precision,compiled", [("fp32", False), ("bf16", False), ("bf16", True)])
def test_training_on_the_gpu_learns(synthetic_dataset, precision, compiled):
    train, val = synthetic_dataset
    torch.manual_seed(0)
    model = create_model("lenet5")
    history = fit(model, train, val, _cfg(precision=precision, compile=compiled))
    assert history["val_accuracy"][-1] >= 0.9, history.history
    assert next(model.parameters()).device.type == "cuda"
    assert all(k.startswith(("features", "classifier")) for k in model.state_dict())  # no compile prefixes


def test_gpu_run_resumes_from_its_checkpoint(synthetic_dataset, tmp_path):
    train, val = synthetic_dataset
    torch.manual_seed(0)
    model = create_model("lenet5")
    fit(model, train, val, _cfg(epochs=1, checkpoint_every=1), run_dir=tmp_path)
    resumed = create_model("lenet5")
    history = fit(resumed, train, val, _cfg(epochs=2, checkpoint_every=1), run_dir=tmp_path, resume=True)
    assert len(history["val_accuracy"]) == 2 and history["val_accuracy"][-1] >= 0.9


def test_image_folder_batches_arrive_on_the_gpu_as_uint8(tmp_path):
    from PIL import Image

    from cnnlab.data.imagedata import FolderSource
    from cnnlab.train import TrainConfig

    for i in range(8):
        for name, colour in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            Image.new("RGB", (64, 48), colour).save(tmp_path / f"{name}.{i}.jpg")
    cfg = TrainConfig(
        dataset="folder", data=str(tmp_path), image_size=40, crop=32, cache_dir=str(tmp_path / "cache"), progress=False
    )
    source = FolderSource.open(cfg, echo=lambda *a: None)
    images, labels = next(iter(source.loader("train", 8, torch.device("cuda"), train=True, seed=1).epoch(0)))
    assert images.device.type == "cuda" and images.dtype == torch.uint8 and labels.device.type == "cuda"
    assert images.shape == (8, 3, 32, 32)
