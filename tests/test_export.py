"""ONNX and pt2 export: onnxruntime against PyTorch eager for every registered model, on real images where
../shared/data has them and on random pixels always; the CLI (export, predict --runtime); the missing extra.

The oracle is PyTorch eager as ``cnnlab predict`` runs it: ``softmax(model(Preprocess(norm)(uint8 pixels)))``.
The exported file has its own normalisation and softmax inside, so a slip there (a missing /255, the wrong
mean) shows as a difference, as does any numeric difference of onnxruntime's kernels.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from PIL import Image
from torch import nn

from cnnlab import create_model, list_models
from cnnlab.cli import main
from cnnlab.data.loader import InputNorm, Preprocess
from cnnlab.models import get_model_entry

TOLERANCE = 1e-4  # max abs difference of probabilities, fp32 (the bound)

HAVE_EXTRA = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="the export extra is not installed: pip install cnnlab[export]")


def eager_probs(model: nn.Module, norm: InputNorm, pixels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(Preprocess(norm, "cpu", channels_last=False)(pixels)), dim=1).numpy()


def real_pixels(input_size) -> tuple[torch.Tensor, str] | None:
    """Real uint8 images for a model's input: MNIST test digits (grey 28x28) or Dogs vs. Cats JPEGs decoded
    as cnnlab's folder pipeline does (shorter side 256, centre crop, then the centre 227 crop); None if absent."""
    root = shared_data_dir()
    if root is None:
        return None
    c, h, w = input_size
    if (c, h, w) == (1, 28, 28):
        from cnnlab.data import load_idx_dataset

        test = load_idx_dataset("mnist", "test", root, download_missing=False)
        return test.images[:8], "MNIST test images 0-7"
    folder = root / "dogs-vs-cats-small" / "train"
    if (c, h, w) == (3, 227, 227) and folder.is_dir():
        from cnnlab.data.folders import decode

        names = ["cat.0.jpg", "cat.1.jpg", "dog.0.jpg", "dog.1.jpg"]
        off = (256 - 227) // 2
        crops = [decode(folder / n, 256)[off : off + 227, off : off + 227] for n in names]
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous(), "Dogs vs. Cats " + ", ".join(names)
    return None


def random_pixels(input_size, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *input_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def make_confident_(model: nn.Module, norm: InputNorm, pixels: torch.Tensor, logit_std: float = 2.0) -> nn.Module:
    """Give an untrained model a trained classifier's numerics on ``pixels``, so that a difference can show.

    At initialisation the probabilities are nearly uniform and hardly depend on the input (alexnet_bn: 0.501 /
    0.499 for every image; the 2012 alexnet's N(0, 0.01) weights let the signal die out): a missing /255 or a
    wrong mean would change nothing visible. So: He-normal weights that carry the signal through every layer,
    BatchNorm statistics of these images, and a last layer whose logits vary across the images with std
    ``logit_std`` around zero. Not a trained network; the weights are arbitrary, the numerics are a trained one's.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    x = Preprocess(norm, "cpu", channels_last=False)(pixels)
    model.eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass sets the statistics of this batch
        bn.train()
    model(x)
    model.eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    logits = model(x)
    mean = logits.mean(0)
    factor = logit_std / (logits - mean).std()
    last.weight.mul_(factor)
    last.bias.sub_(mean).mul_(factor)
    return model


def assert_informative(probs: np.ndarray) -> None:
    """The probabilities depend on the image: a slip in the normalisation or the network would change them."""
    assert probs.std(axis=0).max() > 0.05, probs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, norm, real images and their description or None, random images, ONNX path):
    one export per model, shared by the tests."""
    from cnnlab.export import export_onnx

    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            size = get_model_entry(name).input_size
            model = create_model(name)
            real = real_pixels(size)
            random = random_pixels(size, 4, seed=1)
            norm = InputNorm.of(real[0] if real else random)
            make_confident_(model, norm, torch.cat([real[0], random]) if real else random)
            path = export_onnx(model, norm, size, tmp_path_factory.mktemp(name) / f"{name}.onnx", {"model": name})
            cache[name] = model, norm, real, random, path
        return cache[name]

    return get


@needs_extra
@pytest.mark.parametrize("name", list_models())
def test_onnx_matches_pytorch_on_real_images(name, exported):
    from cnnlab.inference import OnnxPredictor

    model, norm, real, _, path = exported(name)
    if real is None:
        pytest.skip(f"no real images for {name} in ../shared/data")
    pixels, what = real
    expected = eager_probs(model, norm, pixels)
    got = OnnxPredictor(path).predict_proba(pixels.numpy())
    diff = float(np.abs(got - expected).max())
    print(f"onnx parity {name} on {what}: max |p_onnxruntime - p_torch| = {diff:.2e}")
    assert_informative(expected)
    assert got.shape == expected.shape and diff <= TOLERANCE
    assert (got.argmax(1) == expected.argmax(1)).all()


@needs_extra
@pytest.mark.parametrize("name", list_models())
def test_onnx_matches_pytorch_on_random_pixels_at_any_batch_size(name, exported):
    from cnnlab.inference import OnnxPredictor

    model, norm, _, random, path = exported(name)
    predictor = OnnxPredictor(path)
    assert predictor.input_size == get_model_entry(name).input_size and predictor.info["model"] == name
    assert_informative(eager_probs(model, norm, random))
    for pixels in (random[:1], random[1:]):  # the file was traced at batch 2: the batch axis is dynamic
        expected = eager_probs(model, norm, pixels)
        got = predictor.predict_proba(pixels.numpy())
        diff = float(np.abs(got - expected).max())
        print(f"onnx parity {name} on {len(pixels)} random image(s): max |p_onnxruntime - p_torch| = {diff:.2e}")
        assert got.shape == expected.shape and diff <= TOLERANCE
        assert np.allclose(got.sum(1), 1, atol=1e-5)  # probabilities, not logits


@needs_extra
def test_the_onnx_file_states_its_conventions(exported):
    import onnx

    _, norm, _, _, path = exported("lenet5")
    proto = onnx.load(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["input_size"]) == [1, 28, 28] and json.loads(meta["classes"]) == list("0123456789")
    assert json.loads(meta["input_norm"]) == norm.to_dict() and "0-255" in meta["input"]
    assert meta["output"].startswith("probabilities")
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "pixels" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    ops = {n.op_type for n in proto.graph.node}
    # the network as it is (tanh, average pooling), not cnnlab's faster CPU formulations of them
    assert {"Tanh", "AveragePool", "Softmax"} <= ops and "Sigmoid" not in ops


def test_pt2_round_trip(tmp_path):
    from cnnlab.export import export_pt2

    torch.manual_seed(0)
    size = (1, 28, 28)
    pixels = random_pixels(size, 4, seed=3)
    norm = InputNorm.of(pixels)
    model = make_confident_(create_model("lenet5"), norm, pixels)
    path = export_pt2(model, norm, size, tmp_path / "lenet5.pt2", {"classes": list("abcdefghij")})
    extra = {"cnnlab.json": ""}
    program = torch.export.load(path, extra_files=extra)  # unpickles: only for a file we just wrote ourselves
    for batch in (pixels, random_pixels(size, 5, seed=4)):
        with torch.no_grad():
            got = program.module()(batch.float()).numpy()
        assert np.abs(got - eager_probs(model, norm, batch)).max() <= 1e-5  # graph: tanh; eager: its sigmoid form
    meta = json.loads(extra["cnnlab.json"])
    assert meta["classes"] == list("abcdefghij") and meta["input_size"] == [1, 28, 28]


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def tiny_run(tmp_path, synthetic_mnist_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    out = tmp_path / "runs"
    args = ["train", "lenet5", "--data-dir", str(synthetic_mnist_dir), "--dry-run", "--out-dir", str(out)]
    assert main([*args, "--name", "tiny", "--no-progress", "--seed", "1"]) == 0
    return out / "tiny"


def without_note(err: str) -> str:
    """stderr without the one-line notice that the tiny run is a dry run (rundir.RunDir.notice_unfinished)."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("cnnlab: note:"))


def digit_files(folder, classes=(1, 4, 8)) -> list[str]:
    """Grey PNGs drawn like conftest's synthetic digits (class k: a bright bar at rows 2k+4..2k+6)."""
    paths = []
    for k in classes:
        image = np.full((28, 28), 20, np.uint8)
        image[2 * k + 4 : 2 * k + 7, 4:24] = 230
        paths.append(str(folder / f"digit{k}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def ranked(run_dir, images, runtime, **kwargs):
    from cnnlab.inference import predict_files

    return {path: dict(classes) for path, classes in predict_files(run_dir, images, top=10, runtime=runtime, **kwargs)}


@needs_extra
def test_cli_export_and_predict_in_onnxruntime_as_in_pytorch(tiny_run, tmp_path, capsys):
    from cnnlab.inference import onnx_predictor_for_run

    images = digit_files(tmp_path)
    assert onnx_predictor_for_run(tiny_run, runtime="auto") is None  # no export yet: auto means PyTorch
    capsys.readouterr()
    assert main(["export", str(tiny_run)]) == 0
    assert f"wrote {tiny_run / 'model.onnx'}" in capsys.readouterr().out
    assert onnx_predictor_for_run(tiny_run, runtime="auto") is not None  # a current export: auto takes it

    printed = {}
    for runtime in ("onnx", "torch"):
        assert main(["predict", str(tiny_run), *images, "--runtime", runtime]) == 0
        printed[runtime] = [line.split(": ")[1].split()[0] for line in capsys.readouterr().out.splitlines()]
    assert printed["onnx"] == printed["torch"] and len(printed["onnx"]) == 3  # same top class per image

    onnx, torch_ = ranked(tiny_run, images, "onnx"), ranked(tiny_run, images, "torch")
    for path in images:
        assert onnx[path].keys() == torch_[path].keys()
        assert max(abs(onnx[path][c] - torch_[path][c]) for c in onnx[path]) <= TOLERANCE

    exported = (tiny_run / "model.onnx").stat().st_mtime_ns
    (tiny_run / "weights" / "last.safetensors").rename(tmp_path / "away.safetensors")
    assert onnx_predictor_for_run(tiny_run, runtime="auto") is None  # an export without weights: auto never exports
    assert (tiny_run / "model.onnx").stat().st_mtime_ns == exported


@needs_extra
def test_predict_onnx_exports_once_and_follows_new_weights(tiny_run, tmp_path, capsys):
    from cnnlab.checkpoint import read_weights, save_weights

    images = digit_files(tmp_path)
    before = ranked(tiny_run, images, "onnx")  # no file yet: exported on the fly
    assert (tiny_run / "model.onnx").is_file() and "exported" in capsys.readouterr().err

    # new weights, as a resumed run writes them: the export is stale now
    state, meta = read_weights(tiny_run / "weights" / "last.safetensors")
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()}
    save_weights(tiny_run / "weights" / "last.safetensors", state, meta)
    torch_ = ranked(tiny_run, images, "torch")
    assert torch_ != before
    assert ranked(tiny_run, images, "auto") == torch_  # auto does not use the stale file...
    assert "holds other weights" in capsys.readouterr().err
    renewed = ranked(tiny_run, images, "onnx")  # ...onnx exports again
    assert "exporting it again" in capsys.readouterr().err
    for path in images:
        assert max(abs(renewed[path][c] - torch_[path][c]) for c in renewed[path]) <= TOLERANCE

    assert main(["predict", str(tiny_run), images[0], "--runtime", "onnx", "--weights", "best"]) == 0
    assert (tiny_run / "model-best.onnx").is_file()  # the best weights get their own file


def test_a_missing_extra_or_a_broken_file_is_one_clear_line(tiny_run, tmp_path, monkeypatch, capsys):
    image = digit_files(tmp_path, classes=(3,))[0]
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnxscript", None)  # what `import onnxscript` meets when it is not installed
        assert main(["export", str(tiny_run)]) == 2
        err = without_note(capsys.readouterr().err)
        assert err.count("\n") == 1 and "onnxscript" in err and "pip install 'cnnlab[export]'" in err
        assert not (tiny_run / "model.onnx").exists()

    (tiny_run / "model.onnx").write_bytes(b"an export from elsewhere")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnxruntime", None)
        assert main(["predict", str(tiny_run), image, "--runtime", "onnx"]) == 2
        err = without_note(capsys.readouterr().err)
        assert err.count("\n") == 1 and "onnxruntime" in err and "cnnlab[export]" in err
        assert main(["predict", str(tiny_run), image]) == 0  # auto without onnxruntime: PyTorch, silently
        assert without_note(capsys.readouterr().err) == ""

    if HAVE_EXTRA:  # a damaged file is named, not a traceback; auto passes it by
        assert main(["predict", str(tiny_run), image, "--runtime", "onnx"]) == 2
        err = without_note(capsys.readouterr().err)
        assert err.count("\n") == 1 and "model.onnx: not a readable ONNX model" in err
        assert main(["predict", str(tiny_run), image]) == 0
        assert "not a readable ONNX model" in capsys.readouterr().err


def test_a_kaggle_submission_refuses_the_onnx_runtime(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "--kaggle", str(tmp_path), "--runtime", "onnx"]) == 2
    assert "--kaggle submission (10-crop) runs in PyTorch" in capsys.readouterr().err
