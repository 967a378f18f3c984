import pytest
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.advise import advise
from cnnlab.cli import main
from cnnlab.models import from_pattern
from cnnlab.summary import trace

GOOD = "INPUT => [[CONV => RELU]*2 => POOL]*3 => [FC => RELU]*2 => FC"


def rules(text, shape=(3, 32, 32), severity="warning"):
    found = advise(from_pattern(text, shape, 10), shape)
    return {f.rule for f in found if f.severity == severity}


def test_a_network_that_follows_the_lesson_has_no_warnings():
    assert rules(GOOD) == set()
    assert rules(GOOD, (3, 48, 48)) == set()
    assert rules(GOOD, (3, 224, 224)) == {"large-fc"}  # 28x28x128 flattened into the first FC


@pytest.mark.parametrize(
    "text, shape, rule",
    [
        (GOOD, (3, 32, 48), "square-input"),
        (GOOD, (3, 36, 36), "divisible-input"),  # 36 -> 18 -> 9 -> 4.5
        ("CONV => RELU => POOL => CONV(16, 7) => RELU => POOL => FC", (3, 32, 32), "large-filter"),
        ("CONV(16, 7) => RELU => POOL => FC", (3, 64, 64), "large-filter"),  # 7x7 first, input under 200 px
        ("CONV => RELU => CONV(16, 3, stride=2, padding=1) => RELU => FC", (3, 32, 32), "strided-downsampling"),
        ("CONV(16, 3, stride=2, padding=1) => RELU => FC", (3, 32, 32), "strided-downsampling"),
        ("CONV => RELU => POOL => CONV(16, 2) => RELU => POOL => FC", (3, 32, 32), "even-filter"),
        ("CONV(16, 4) => RELU => POOL => FC", (3, 32, 32), "even-filter"),
        ("CONV(16, 3, padding=valid) => RELU => POOL => FC", (3, 34, 34), "same-padding"),
        ("CONV => RELU => POOL(4, 4) => FC", (3, 32, 32), "pool-settings"),
        ("[CONV => RELU => POOL]*5 => CONV => FC", (3, 32, 32), "early-collapse"),
        ("CONV(8) => RELU => FC(64) => RELU => FC", (3, 64, 64), "large-fc"),  # 32,768x64: 2.1 M weights, 99%
    ],
)
def test_each_rule_fires_on_a_network_that_breaks_it(text, shape, rule):
    assert rule in rules(text, shape)
    assert rule not in rules(GOOD)


def test_large_first_layer_filters_are_for_inputs_over_200_px():
    """The lesson keeps 7x7 and 11x11 first-layer filters for images larger than 200x200, and the warning says
    'over 200 px'; a 7x7 first layer on a 200-px input passed without a word."""
    text = "CONV(16, 7) => RELU => POOL => FC"
    assert "large-filter" in rules(text, (3, 200, 200))
    assert "large-filter" not in rules(text, (3, 202, 202))


def test_keras_same_padding_with_even_kernels_and_strides_walks_sizes_as_the_network_does():
    """Keras' "same" takes a side to side / stride (models/layers.py's KerasSameConv2d): even kernels at stride 1
    keep 32 -> 16 -> 8 exact, and a stride-2 "same" takes 30 to 15, which the next 2x2/2 pool cannot halve."""
    assert "divisible-input" not in rules("CONV(8, 4) => RELU => POOL => CONV(16, 2) => RELU => POOL => FC")
    strided = from_pattern("CONV(8, 3, stride=2) => RELU => POOL => FC", (3, 30, 30), 10)
    finding = next(f for f in advise(strided, (3, 30, 30)) if f.rule == "divisible-input")
    assert finding.layer == "pool1" and "15 -> 7.5" in finding.message
    # an odd side is padded to fit, not cut: 31 -> 16 -> 8 exactly
    twice = from_pattern("CONV(8, 3, stride=2) => CONV(8, 3, stride=2) => FC", (1, 31, 31), 10)
    assert not [f for f in advise(twice, (1, 31, 31)) if f.rule == "divisible-input"]
    # an even kernel's 'same' is no number of pixels: k // 2 on both sides grows the map by one
    valid = advise(from_pattern("CONV(8, 4, padding=valid) => RELU => POOL => FC", (1, 28, 28), 10), (1, 28, 28))
    assert "use padding=same ('same')" in next(f.suggestion for f in valid if f.rule == "same-padding")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # PyTorch's note on its own padding
def test_pytorchs_own_same_padding_is_walked_as_the_network_runs_even_kernels_too():
    """nn.Conv2d(padding="same") keeps the side with a 4x4 kernel (PyTorch pads one pixel more after the image);
    the advisor walked it as k // 2 on both sides, 32 -> 33, and warned that the 2x2/2 pool after it dropped a row
    (33 -> 16.5) where the pool halves 32 exactly, and said nothing at 33, where it does drop one."""

    def net():
        layers = [nn.Conv2d(3, 8, 4, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        return nn.Sequential(*layers, nn.Linear(8 * 16 * 16, 10))  # runs at 32 and 33: PyTorch's sizes

    assert [layer.out_shape for layer in trace(net(), (3, 32, 32))][0] == (8, 32, 32)
    assert "divisible-input" not in {f.rule for f in advise(net(), (3, 32, 32))}
    dropped = [f for f in advise(net(), (3, 33, 33)) if f.rule == "divisible-input"]
    assert len(dropped) == 1 and "33 -> 16.5" in dropped[0].message


def test_notes_do_not_fail_and_name_bn_placement():
    notes = advise(
        from_pattern("CONV => BN => RELU => POOL => CONV => RELU => BN => POOL => FC", (3, 32, 32), 10), (3, 32, 32)
    )
    placements = [f.message for f in notes if f.rule == "bn-placement"]
    assert len(placements) == 2 and all(f.severity == "note" for f in notes)
    assert any("Ioffe" in m for m in placements) and any("Keras" in m for m in placements)


def test_suggested_input_sizes_actually_divide():
    finding = next(f for f in advise(from_pattern(GOOD, (3, 36, 36), 10), (3, 36, 36)) if f.rule == "divisible-input")
    sizes = [int(s) for s in finding.suggestion.split(": ")[1].split(", ")]
    assert 32 in sizes and 40 in sizes
    for size in sizes:
        assert "divisible-input" not in rules(GOOD, (3, size, size))


def test_the_lessons_networks():
    alexnet_bn = advise(create_model("alexnet_bn"), (3, 227, 227))
    assert {f.rule for f in alexnet_bn if f.severity == "warning"} == {"large-fc"}
    large = next(f for f in alexnet_bn if f.rule == "large-fc")
    assert "9216x4096" in large.message and "65%" in large.message
    lenet = advise(create_model("lenet5"), (1, 28, 28))
    assert {f.rule for f in lenet if f.severity == "warning"} == {"same-padding"}
    alexnet_224 = advise(
        from_pattern(__import__("cnnlab.models.pattern").models.pattern.ALEXNET, (3, 224, 224), 1000), (3, 224, 224)
    )
    fractional = next(f for f in alexnet_224 if f.rule == "divisible-input")
    assert "224 -> 54.25" in fractional.message and "227" in fractional.suggestion


def test_cli_exit_status_and_json(capsys):
    assert main(["advise", GOOD, "--input", "32x32x3"]) == 0
    assert main(["advise", "lenet5"]) == 1
    capsys.readouterr()
    assert main(["advise", "alexnet_bn", "--input", "227x227x3", "--json"]) == 1
    import json

    found = json.loads(capsys.readouterr().out)
    assert {"rule", "severity", "layer", "message", "suggestion"} <= set(found[0])
    assert main(["advise", "alexnet_bn", "--input", "224x224x3"]) == 2  # the hand-written net cannot take it
