"""The Python API's contract (issue 20): every public function, given an argument of the wrong type or value,
raises TypeError or ValueError (cnnlab's WrongType / UsageError derive from them) whose message names the
argument, before any work; never torch's or Python's message from deep inside. And ``fit`` repeats exactly
from its seed on the CPU, as the README promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_digits, write_synthetic_mnist

import cnnlab
from cnnlab.analysis.advise import advise
from cnnlab.augment import Augment
from cnnlab.data.arrays import as_array_dataset
from cnnlab.export import export_run
from cnnlab.inference import load_run, predict_files
from cnnlab.models import from_pattern


@pytest.fixture(scope="module")
def tiny():
    """16 synthetic 28x28 digits and their labels, as numpy arrays (Keras' (x, y))."""
    return synthetic_digits(16, seed=3)


@pytest.fixture(scope="module")
def lenet():
    return cnnlab.create_model("lenet5")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished LeNet-5 run directory of one epoch on a tiny synthetic MNIST, made by ``cnnlab train``."""
    from cnnlab.cli import main

    root = tmp_path_factory.mktemp("api")
    data = write_synthetic_mnist(root / "data", train=64)
    args = ["train", "lenet5", "--data-dir", data, "--out-dir", root / "runs", "--name", "r", "--epochs", "1"]
    assert main([*map(str, args), "--batch-size", "16", "--no-progress", "--no-sample", "--seed", "0"]) == 0
    return root / "runs" / "r"


def one_epoch(model, **more):
    return cnnlab.config_for(model, epochs=1, batch_size=4, **more)


# (id, call(tiny, lenet, run_dir), the error classes accepted, words the message must hold)
CASES = [
    # create_model: models/registry.py
    ("create_model name int", lambda t, m, r: cnnlab.create_model(5), TypeError, ["name"]),
    ("create_model name list", lambda t, m, r: cnnlab.create_model(["lenet5"]), TypeError, ["name"]),
    ("create_model unknown", lambda t, m, r: cnnlab.create_model("lenet9"), ValueError, ["lenet9"]),
    ("create_model option text", lambda t, m, r: cnnlab.create_model("lenet5", num_classes="10"), TypeError,
     ["num_classes"]),
    ("create_model option 0", lambda t, m, r: cnnlab.create_model("lenet5", num_classes=0), ValueError,
     ["num_classes"]),
    ("create_model option float", lambda t, m, r: cnnlab.create_model("lenet5", num_classes=2.5), TypeError,
     ["num_classes"]),
    ("create_model option bool", lambda t, m, r: cnnlab.create_model("lenet5", in_chans=True), TypeError,
     ["in_chans"]),
    ("create_model in_chans 0", lambda t, m, r: cnnlab.create_model("lenet5", in_chans=0), ValueError,
     ["in_chans"]),
    ("create_model dropout", lambda t, m, r: cnnlab.create_model("alexnet", dropout=1.5), ValueError,
     ["dropout"]),
    ("create_model l2 negative", lambda t, m, r: cnnlab.create_model("alexnet_bn", l2=-1.0), ValueError, ["l2"]),
    ("create_model dropout nan", lambda t, m, r: cnnlab.create_model("alexnet_bn", dropout_fc=float("nan")),
     ValueError, ["dropout_fc"]),
    ("create_model None", lambda t, m, r: cnnlab.create_model("lenet5", num_classes=None), TypeError,
     ["num_classes"]),
    ("create_model unknown option", lambda t, m, r: cnnlab.create_model("lenet5", bogus=1), ValueError,
     ["bogus"]),
    ("create_model init", lambda t, m, r: cnnlab.create_model("lenet5", init="xavier"), ValueError, ["init"]),
    # summary
    ("summary of a name", lambda t, m, r: cnnlab.summary("lenet5"), TypeError, ["model"]),
    ("summary size int", lambda t, m, r: cnnlab.summary(m, 28), TypeError, ["input_size"]),
    ("summary size 2", lambda t, m, r: cnnlab.summary(m, (28, 28)), ValueError,
              ["input_size"]),
    ("summary size text", lambda t, m, r: cnnlab.summary(m, (1, 28, "a")), TypeError,
              ["input_size"]),
    ("summary channels", lambda t, m, r: cnnlab.summary(m, (3, 28, 28)), ValueError,
              ["28x28x3"]),
    ("summary size 0", lambda t, m, r: cnnlab.summary(m, (1, 0, 28)), ValueError,
              ["input_size"]),
    ("summary unnamed model", lambda t, m, r: cnnlab.summary(torch.nn.Linear(3, 2)),
              ValueError, ["input_size"]),
    # fit
    ("fit model name", lambda t, m, r: cnnlab.fit("lenet5", t), TypeError, ["model"]),
    ("fit data int", lambda t, m, r: cnnlab.fit(m, 5), TypeError, ["DataSource"]),
    ("fit data 1-tuple", lambda t, m, r: cnnlab.fit(m, t[:1]), ValueError, ["(x, y)"]),
    ("fit data lengths", lambda t, m, r: cnnlab.fit(m, (t[0], t[1][:3])), ValueError, ["16", "3"]),
    ("fit config dict", lambda t, m, r: cnnlab.fit(m, t, config={"epochs": 1}), TypeError,
              ["config"]),
    ("fit callbacks int", lambda t, m, r: cnnlab.fit(m, t, config=one_epoch(m), callbacks=5),
              TypeError, ["callbacks"]),
    ("fit callbacks item",
              lambda t, m, r: cnnlab.fit(m, t, config=one_epoch(m), callbacks=[1]), TypeError, ["callbacks"]),
    ("fit validation_data int",
              lambda t, m, r: cnnlab.fit(m, t, validation_data=5, config=one_epoch(m)), TypeError,
              ["validation_data"]),
    ("fit augment int", lambda t, m, r: cnnlab.fit(m, t, config=one_epoch(m), augment=5),
              TypeError, ["augment"]),
    ("fit labels past the model",
              lambda t, m, r: cnnlab.fit(m, (t[0], t[1] + 90), config=one_epoch(m)), ValueError, ["label"]),
    ("fit stray validation label",  # it said "make it with num_classes=11", as if the training data had 11 classes
     lambda t, m, r: cnnlab.fit(m, t, (t[0][:2], np.array([10, 1])), config=one_epoch(m)), ValueError,
     ["label 10 is only in the validation data", "10 outputs"]),
    ("fit labels negative", lambda t, m, r: cnnlab.fit(m, (t[0], t[1].astype(int) - 1), config=one_epoch(m)),
     ValueError, ["y: labels"]),
    ("fit labels float", lambda t, m, r: cnnlab.fit(m, (t[0], t[1].astype("float32") + 0.5), config=one_epoch(m)),
     ValueError, ["y: labels"]),
    ("fit validation labels float", lambda t, m, r: cnnlab.fit(m, t, (t[0], t[1] / 2), config=one_epoch(m)),
     ValueError, ["validation_data[1]: labels"]),
    ("fit dataset, validation labels float",
              lambda t, m, r: cnnlab.fit(m, as_array_dataset(*t), (t[0], t[1] / 2), config=one_epoch(m)),
              ValueError, ["validation_data[1]: labels"]),
    ("fit settings of another model",
              lambda t, m, r: cnnlab.fit(m, t, config=one_epoch(m, model_options={"init": "torch"})), ValueError,
              ["model_options", "init", "keras"]),
    ("fit images too small",
              lambda t, m, r: cnnlab.fit(m, (t[0][:, :5, :5], t[1]), config=one_epoch(m)), ValueError, ["5x5"]),
    ("fit run_dir int", lambda t, m, r: cnnlab.fit(m, t, config=one_epoch(m), run_dir=5),
              TypeError, ["run_dir"]),
    ("fit batch past the data", lambda t, m, r: cnnlab.fit(m, t, config=cnnlab.config_for(m, batch_size=64)),
     ValueError, ["batch size 64"]),
    # config_for and TrainConfig
    ("config_for int", lambda t, m, r: cnnlab.config_for(5), TypeError, ["model"]),
    ("config_for epochs 0", lambda t, m, r: cnnlab.config_for(m, epochs=0), ValueError, ["epochs"]),
    ("config_for epochs text", lambda t, m, r: cnnlab.config_for(m, epochs="2"), (TypeError, ValueError),
     ["epochs"]),
    ("config_for unknown key", lambda t, m, r: cnnlab.config_for(m, epochz=2), ValueError, ["epochz"]),
    ("config_for unknown model", lambda t, m, r: cnnlab.config_for("nope"), ValueError, ["nope"]),
    ("TrainConfig lr text", lambda t, m, r: cnnlab.TrainConfig(lr="x"), (TypeError, ValueError), ["lr"]),
    # evaluate, load_run, predict, export
    ("evaluate data int", lambda t, m, r: cnnlab.evaluate(load_run(r)[0], 5), TypeError,
              ["data"]),
    ("evaluate model name", lambda t, m, r: cnnlab.evaluate("lenet5", t), TypeError,
              ["model"]),
    ("evaluate batch 0", lambda t, m, r: cnnlab.evaluate(load_run(r)[0], t, batch_size=0),
              ValueError, ["batch_size"]),
    ("load_run int", lambda t, m, r: load_run(5), TypeError, ["run_dir"]),
    ("load_run weights", lambda t, m, r: load_run(r, weights="worst"), ValueError,
              ["weights", "worst", "best"]),
    ("load_run missing", lambda t, m, r: load_run(r.parent / "missing"), ValueError, ["missing"]),
    ("predict one path as text", lambda t, m, r: predict_files(r, "digit.png"), TypeError,
              ["paths"]),
    ("predict top 0", lambda t, m, r: predict_files(r, [r / "x.png"], top=0), ValueError,
              ["top"]),
    ("export_run int", lambda t, m, r: export_run(5), TypeError, ["run_dir"]),
    ("export_run format", lambda t, m, r: export_run(r, "tflite"), ValueError, ["tflite"]),
    ("export_run weights", lambda t, m, r: export_run(r, weights="worst"), ValueError,
              ["weights", "worst", "best"]),
    # Augment, from_pattern, advise
    ("Augment rotation text", lambda t, m, r: Augment(rotation_range="a"), TypeError,
              ["rotation_range"]),
    ("Augment rotation negative", lambda t, m, r: Augment(rotation_range=-5), ValueError,
              ["rotation_range"]),
    ("Augment zoom reversed", lambda t, m, r: Augment(zoom_range=[2, 1]), ValueError,
              ["zoom_range"]),
    ("Augment fill_mode", lambda t, m, r: Augment(fill_mode="x"), ValueError, ["fill_mode"]),
    ("Augment unknown", lambda t, m, r: Augment(bogus=1), ValueError, ["bogus"]),
    ("Augment call int", lambda t, m, r: Augment(rotation_range=10)(5), TypeError, ["x"]),
    ("from_pattern int", lambda t, m, r: from_pattern(5), TypeError, ["text"]),
    ("from_pattern empty", lambda t, m, r: from_pattern(""), ValueError, ["pattern"]),
    ("from_pattern classes 0",
              lambda t, m, r: from_pattern("INPUT => CONV => FC", num_classes=0), ValueError, ["num_classes"]),
    ("advise size int", lambda t, m, r: advise(m, 28), TypeError, ["input_size"]),
    ("advise name", lambda t, m, r: advise("lenet5", (1, 28, 28)), TypeError, ["model"]),
    ("advise too small", lambda t, m, r: advise(m, (1, 5, 5)), ValueError, ["5x5"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, errors, words",
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_wrong_argument_is_named(call, errors, words, tiny, lenet, run_dir):
    with pytest.raises(errors) as caught:
        call(tiny, lenet, run_dir)
    message = str(caught.value)
    assert not isinstance(caught.value, (IndexError, KeyError, AttributeError, RuntimeError)), message
    assert all(word in message for word in words), f"{words} not in: {message}"
    assert "\n" not in message.strip() or isinstance(caught.value, cnnlab.models.PatternError), message


def test_error_classes_are_the_builtins_a_caller_expects():
    from cnnlab.errors import CnnlabError, UsageError, WrongType

    assert issubclass(WrongType, TypeError) and issubclass(WrongType, CnnlabError)
    assert issubclass(UsageError, ValueError) and issubclass(UsageError, CnnlabError)


def test_evaluate_takes_arrays_as_the_readme_says(tiny, run_dir):
    """(x, y) and an ArrayDataset give the report of those images: the same as the DataSource of them."""
    from cnnlab.data.arrays import ArraySource, as_array_dataset

    model, _ = load_run(run_dir)
    dataset = as_array_dataset(*tiny)
    from_arrays, from_dataset = cnnlab.evaluate(model, tiny), cnnlab.evaluate(model, dataset)
    from_source = cnnlab.evaluate(model, ArraySource(dataset, test=dataset))
    assert from_arrays.accuracy == from_dataset.accuracy == from_source.accuracy
    assert from_arrays.n == len(tiny[1])
    # a torch.device is a device, as in PyTorch; labels as a row (1, N) are N labels, not one-hot rows
    labels_row = tiny[1].reshape(1, -1)
    assert cnnlab.evaluate(model, (tiny[0], labels_row), device=torch.device("cpu")).accuracy == from_arrays.accuracy

    # Labels that reach only some of the model's classes: every answer stays in the matrix and the report,
    # the wrong ones included (they were dropped when the classes came from the largest label alone).
    x, y = tiny
    few = (y <= 1) | (y == 8)
    x, y = x[few], np.where(y[few] == 8, 1, y[few])  # the 8s labelled 1: answers (8) the labels never reach
    report = cnnlab.evaluate(model, (x, y))
    predicted = answers_of(model, x)
    assert (predicted > 1).any()  # else this case shows nothing
    assert report.confusion.sum() == len(y) and len(report.classes) == 10
    assert report.accuracy == (predicted == y).mean() and report.confusion.trace() == (predicted == y).sum()
    assert report.top5 is not None and "accuracy" in report.report_text


def answers_of(model, x) -> np.ndarray:
    """The model's answers, computed here without cnnlab's evaluation: uint8 pixels, its input_norm."""
    norm = model.cnnlab_input_norm
    images = torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255
    images = (images - torch.tensor(norm.mean).view(1, -1, 1, 1)) / torch.tensor(norm.std).view(1, -1, 1, 1)
    with torch.no_grad():
        return model.cpu().eval()(images).argmax(1).numpy()


def test_fit_repeats_exactly_from_its_seed():
    """Two calls of the README's lines with the same seed end in the same weights and history."""
    x, y = synthetic_digits(32, seed=5)
    results = []
    for _ in range(2):
        model = cnnlab.create_model("lenet5")
        history = cnnlab.fit(model, (x, y), config=cnnlab.config_for(model, epochs=1, batch_size=8, seed=1))
        metrics = {k: v for k, v in history.history.items() if "second" not in k and "time" not in k}  # not clocks
        results.append((metrics, {k: v.clone() for k, v in model.state_dict().items()}))
    (h1, w1), (h2, w2) = results
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_create_model_checks_do_not_refuse_good_options():
    model = cnnlab.create_model("lenet5", num_classes=np.int64(3), in_chans=3, img_size=32, init="torch")
    assert type(model.cnnlab_options["num_classes"]) is int  # recorded in model.json as JSON
    assert cnnlab.create_model("alexnet", dropout=0, num_classes=2).cnnlab_options["dropout"] == 0
    assert cnnlab.create_model("alexnet_bn", l2_block3=None, l2=0).cnnlab_options["l2_block3"] is None


def test_cnnlab_leaves_the_users_matplotlib_backend_alone(tmp_path):
    """Importing cnnlab once switched matplotlib to Agg for the whole process (a notebook's inline backend
    stopped showing figures); its pictures are drawn on figures of their own, with pyplot never imported."""
    import subprocess
    import sys

    code = (
        "import matplotlib, sys; matplotlib.use('svg'); import cnnlab; "
        "from cnnlab.evaluation.plots import plot_history; from cnnlab.analysis.compute import chart; "
        "plot_history({'loss': [1.0, 0.5], 'accuracy': [0.5, 0.7]}, sys.argv[1]); chart(sys.argv[2]); "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    pictures = [str(tmp_path / "h.png"), str(tmp_path / "c.png")]
    done = subprocess.run([sys.executable, "-c", code, *pictures], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["svg", "False"], done.stderr
    assert (tmp_path / "h.png").read_bytes()[:4] == (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_averages_the_classes_present_as_the_lessons_classification_report():
    """The lesson calls classification_report(y, p, target_names=...): its rows and macro average are those of
    the classes in y and p. Images of 3 digits of 10, all right, once read 'macro avg 0.30' beside accuracy 1.0."""
    from sklearn.metrics import classification_report

    from cnnlab.evaluation.metrics import make_report

    labels = torch.tensor([1, 1, 4, 4, 8, 8, 8, 4])
    logits = torch.nn.functional.one_hot(torch.tensor([1, 1, 4, 4, 8, 8, 4, 4]), 10).float()
    report = make_report(logits, labels, [str(i) for i in range(10)])
    lesson = classification_report(labels.numpy(), logits.argmax(1).numpy(), target_names=["1", "4", "8"], digits=4)
    assert report.report_text == lesson
    assert report.confusion.shape == (10, 10) and report.confusion.sum() == 8  # the matrix keeps every class


def test_the_printed_report_keeps_the_top5_accuracy_beside_the_10_crop_one():
    """An image folder is evaluated with 10 crops beside the centre crop; with more than 5 classes the printed
    report (evaluate's output, report.txt) swapped its top-5 line for the crops' line and lost the lesson's rank-5
    accuracy, which report.json and report.html kept. The lesson's rank5_accuracy is the oracle."""
    from cnnlab.evaluation.metrics import make_report

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(300, 8, generator=g), torch.randint(8, (300,), generator=g)
    probs = torch.softmax(logits, 1).numpy()
    rank5 = np.mean([gt in np.argsort(p)[::-1][:5] for p, gt in zip(probs, labels.numpy())])  # the lesson's
    report = make_report(logits, labels, [f"class{i}" for i in range(8)])
    assert f"top-5 accuracy: {rank5:.4f}" in report.format()
    report.ten_crop_accuracy = 0.125
    text = report.format()
    assert f"top-5 accuracy: {rank5:.4f}" in text and "10-crop (corners + centre, mirrored): 0.1250" in text
