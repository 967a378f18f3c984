import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab import create_model, summary
from cnnlab.cli import main
from cnnlab.errors import UsageError
from cnnlab.models import PatternError, from_pattern, parse_pattern
from cnnlab.models.pattern import ALEXNET, ALEXNET_BN, LAYERS, LENET5, LESSON, Group, Layer


@pytest.mark.parametrize(
    "text, name, shape, classes",
    [
        (LENET5, "lenet5", (1, 28, 28), 10),
        (ALEXNET_BN, "alexnet_bn", (3, 227, 227), 2),
        (ALEXNET, "alexnet", (3, 227, 227), 1000),
    ],
)
def test_the_lessons_networks_in_the_notation_match_the_hand_written_ones(text, name, shape, classes):
    built = summary(from_pattern(text, shape, classes), shape)
    hand = summary(create_model(name, num_classes=classes), shape)
    assert (built.total_params, built.trainable_params, built.non_trainable_params) == (
        hand.total_params,
        hand.trainable_params,
        hand.non_trainable_params,
    )
    assert [r.output_shape for r in built.rows if r.macs] == [r.output_shape for r in hand.rows if r.macs]
    assert built.macs == hand.macs


def test_the_generic_pattern_with_variables():
    net = from_pattern(LESSON, (3, 32, 32), 10, N=2, M=3, K=2, filters=32, fc=[256, 128])
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]  # doubling per stage
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128 * 4 * 4, 256), (256, 128), (128, 10)]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    without_pool = from_pattern(LESSON, (3, 32, 32), 10, N=1, M=2, K=0, optional=False)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in without_pool)


def test_parse_tree():
    tree = parse_pattern("INPUT => [[CONV => RELU]*2 => POOL?]*3 => FC(10)")
    outer = tree[0]
    assert isinstance(outer, Group) and outer.count == 3
    inner = outer.items[0]
    assert isinstance(inner, Group) and inner.count == 2 and [i.kind for i in inner.items] == ["CONV", "RELU"]
    assert outer.items[1].optional and isinstance(tree[1], Layer) and tree[1].args == [10]


def test_batch_norm_follows_the_volume_and_options_apply():
    net = from_pattern(
        "CONV(8) => BN => RELU => POOL(2, kind=avg) => FC(16) => BN => DROPOUT => FC",
        (1, 8, 8),
        3,
        kernel_size=5,
        dropout=0.3,
        activation="tanh",
    )
    kinds = [type(m).__name__ for m in net]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "Tanh",
        "AvgPool2d",
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "Dropout",
        "Linear",
    ]
    assert net.conv1.kernel_size == (5, 5) and net.dropout1.p == 0.3


@pytest.mark.parametrize(
    "text, position, expected",
    [
        ("INPUT => CONV =>", 17, "a layer name or '['"),
        ("CONV => RELU]*2", 13, "'=>' or the end"),
        ("CONV(3,,) => FC", 8, "an argument"),
        ("INPUT => CNV => FC", 10, "a layer (AVGPOOL"),
        ("[CONV => RELU", 14, "']' to close the group opened at position 1"),
        ("FC => CONV", 7, "no CONV after an FC"),
        ("[CONV]*", 8, "a repeat count"),
        ("CONV(stride=2, 3)", 16, "positional arguments come first"),
        ("CONV => $", 9, "a layer name"),
        # a pool kind that is not max or avg, or one given to a layer whose name says its kind, used to build
        # an average pool, or a max pool, without a word
        ("CONV => POOL(kind=mean)", 9, "POOL kind max or avg (not 'mean')"),
        ("CONV => MAXPOOL(kind=avg)", 9, "MAXPOOL options size, stride (not kind)"),
    ],
)
def test_malformed_text_points_at_the_position(text, position, expected):
    with pytest.raises(PatternError) as info:
        from_pattern(text, (1, 28, 28))
    message = str(info.value)
    assert f"at position {position}:" in message and expected in message
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") - 2 == position - 1


def test_missing_variable_and_shrinking_volume_are_errors():
    with pytest.raises(PatternError, match="a value for N"):
        from_pattern("[CONV]*N => FC", (1, 28, 28))
    with pytest.raises(PatternError, match="shrinks below 1x1"):
        from_pattern("[CONV(8, 5, padding=valid)]*7 => FC", (1, 28, 28))


def test_an_unknown_pool_option_is_refused():
    with pytest.raises(UsageError, match="pool must be one of max, avg, got 'mean'"):
        create_model("pattern", text="CONV(4) => POOL => FC", pool="mean")


def test_pattern_is_a_registered_model():
    model = create_model("pattern", text="CONV(4) => RELU => POOL => FC", num_classes=3, img_size=16)
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 3)


BUILT_AS = {
    "CONV": nn.Conv2d, "POOL": nn.MaxPool2d, "MAXPOOL": nn.MaxPool2d, "AVGPOOL": nn.AvgPool2d, "FC": nn.Linear,
    "RELU": nn.ReLU, "TANH": nn.Tanh, "SIGMOID": nn.Sigmoid, "ELU": nn.ELU, "GELU": nn.GELU,
    "LEAKYRELU": nn.LeakyReLU, "BN": nn.BatchNorm2d, "DROPOUT": nn.Dropout, "LRN": nn.LocalResponseNorm,
    "FLATTEN": nn.Flatten, "SOFTMAX": nn.Softmax,
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_the_parser_accepts_builds_the_module_it_names(kind):
    net = from_pattern(f"CONV(4) => {kind} => FC", (1, 8, 8), 3)
    assert set(BUILT_AS) == LAYERS
    assert any(isinstance(m, BUILT_AS[kind]) for m in list(net)[1:-1])  # between conv1 and the classifier
    assert net.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_training_refuses_a_network_that_ends_in_a_softmax_since_the_loss_applies_it():
    """Keras patterns end in softmax; here the network answers logits (the loss and predict apply the softmax),
    so a last SOFTMAX trained through two (a 3-epoch run: loss 1.84 and 64% against 0.79 and 75% without).
    The network is still built: a run trained with one before keeps loading."""
    from cnnlab import TrainConfig, fit

    net = from_pattern("INPUT => CONV(4) => RELU => POOL => FC => SOFTMAX", (1, 8, 8), 3)
    x, y = torch.randint(0, 255, (8, 8, 8), dtype=torch.uint8).numpy(), torch.arange(8).remainder(3).numpy()
    with pytest.raises(UsageError, match="ends in a Softmax: cnnlab's loss and predict take logits"):
        fit(net, (x, y), config=TrainConfig(epochs=1, batch_size=4, progress=False, device="cpu"))


def test_an_option_or_count_the_pattern_does_not_use_is_refused_with_the_close_name():
    with pytest.raises(UsageError, match=r"filter=64 is neither an option nor a repeat count .*did you mean filters"):
        from_pattern(LESSON, (1, 28, 28), 10, N=2, M=2, K=1, filter=64)
    with pytest.raises(UsageError, match=r"kernel=5 .*did you mean kernel_size.*counts: K, M, N"):
        from_pattern(LESSON, (1, 28, 28), 10, N=2, M=2, K=1, kernel=5)
    with pytest.raises(UsageError, match=r"N=2 is neither .*counts: none"):
        from_pattern("CONV(4) => FC", (1, 8, 8), 3, N=2)
    # the registry's pattern passes its N, M, K only where the text counts with them; set to another value, one
    # the text does not count with is refused, as from_pattern refuses it
    assert create_model("pattern", text="CONV(4) => RELU => POOL => FC", num_classes=3, img_size=16) is not None
    with pytest.raises(UsageError, match=r"N=3 is not a repeat count of this pattern; its counts: none"):
        create_model("pattern", text="CONV(4) => RELU => POOL => FC", num_classes=3, img_size=16, N=3)
    with pytest.raises(UsageError, match=r"K=2 is not a repeat count of this pattern; its counts: N"):
        create_model("pattern", text="[CONV(4) => RELU]*N => FC", num_classes=3, img_size=16, K=2)


def test_the_registered_pattern_names_its_counts_n_m_k_where_the_text_counts_with_another(capsys):
    """from_pattern counts with any name (L=2), but the registered model's options are N, M and K: `summary
    "[CONV => RELU]*L => FC"` said 'expected a value for L (pass L=... as an option)', and '--option L=2' was then
    refused as no option of the model."""
    text = "INPUT => [CONV(4) => RELU]*L => FC"
    assert len([m for m in from_pattern(text, (1, 8, 8), 3, L=2) if isinstance(m, nn.Conv2d)]) == 2
    assert main(["summary", text]) == 2
    assert "error: pattern: a repeat count is N, M, K or a whole number here, not L (*L)\n" in capsys.readouterr().err
    assert main(["summary", text.replace("*L", "*N"), "--option", "N=2"]) == 0


def test_conv_padding_takes_same_valid_or_pixels():
    with pytest.raises(PatternError, match="padding same, valid or a number of pixels .not 'full'"):
        from_pattern("CONV(4, padding=full) => FC", (1, 8, 8), 3)
    assert list(from_pattern("CONV(4, 3, padding=valid) => FC", (1, 8, 8), 3))[-1].in_features == 4 * 6 * 6


KERAS_CONV = json.loads((Path(__file__).parent / "fixtures" / "keras_conv_same.json").read_text())


@pytest.mark.parametrize(
    "case", KERAS_CONV["cases"], ids=lambda c: f"{c['side']}x{c['side']}, kernel {c['kernel']}, stride {c['stride']}"
)
def test_conv_padding_same_is_keras_same(case):
    """Real Keras' Conv2D(padding="same") (scripts/make_keras_conv_fixtures.py): odd and even kernels, strides 1
    to 3, odd and even sides; an even kernel's extra row and column go after the image, as Keras puts them."""
    stride = case["stride"]
    net = from_pattern(f"CONV(3, {case['kernel']}, stride={stride}) => FC", (2, case["side"], case["side"]), 2)
    conv = net.conv1
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(case["weights"]).permute(3, 2, 0, 1))  # Keras (H, W, in, out) -> (out, in, H, W)
        conv.bias.zero_()
        ours = conv(torch.tensor(case["x"]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    keras = torch.tensor(case["y"])
    assert ours.shape == keras.shape
    torch.testing.assert_close(ours, keras, rtol=1e-5, atol=1e-5)
    assert net[-1].in_features == 3 * math.ceil(case["side"] / stride) ** 2  # the builder follows the same size


def test_centred_same_padding_is_the_network_of_runs_before_format_3():
    """same_padding="centred" (how older runs are read) is k // 2 on every side: odd kernels as Keras, an even
    kernel one pixel larger; the networks share their weights' names and shapes up to the first FC."""
    x = torch.randn(2, 1, 8, 8)
    for kernel in (2, 3, 4):
        old = from_pattern(f"CONV(3, {kernel}) => FC", (1, 8, 8), 2, same_padding="centred")
        new = from_pattern(f"CONV(3, {kernel}) => FC", (1, 8, 8), 2)
        side = 8 + (kernel % 2 == 0)
        assert old.conv1(x).shape[-1] == side and old[-1].in_features == 3 * side * side
        with torch.no_grad():
            new.conv1.load_state_dict(old.conv1.state_dict())
        torch.testing.assert_close(new.conv1(x)[..., :8, :8], old.conv1(x)[..., 1 - kernel % 2 :, 1 - kernel % 2 :])
    with pytest.raises(PatternError, match="same_padding='centred' has no rule for strides"):
        from_pattern("CONV(3, 3, stride=2) => FC", (1, 8, 8), 2, same_padding="centred")
    with pytest.raises(UsageError, match="same_padding must be one of keras, centred, got 'torch'"):
        from_pattern("CONV(3) => FC", (1, 8, 8), 2, same_padding="torch")
