"""Looking inside a network: the filter grid, the feature maps, and the class activation maps (Captum).

Oracles: hand-computed kernel grids; PyTorch's own convolution and cnnlab's model summary for the feature maps;
Captum's LayerGradCam and Occlusion called directly, Grad-CAM's formula computed with torch.autograd, and a model
built so that only one region of the image can matter. The sanity check of Adebayo et al. (2018): randomising the
classifier of a trained LeNet-5 must change its maps. A small real run: LeNet-5 on 3,000 MNIST digits.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from captum import attr as captum_attr
from PIL import Image
from torch import nn

import cnnlab
from cnnlab import explain as ex
from cnnlab.data.loader import InputNorm
from cnnlab.errors import DataError, UsageError


@pytest.fixture(scope="module")
def lenet_run(lenet_mnist_slice_run):
    """LeNet-5 trained for 2 epochs on the first 3,000 real MNIST training digits (conftest.py)."""
    return lenet_mnist_slice_run


@pytest.fixture(scope="module")
def digits(mnist):
    """Ten test digits (uint8, 1x28x28) and their labels."""
    _, test = mnist
    return test.images[:10], test.labels[:10]


def normalised(model, c: int = 1):
    model.cnnlab_input_norm = InputNorm((0.0,) * c, (1.0,) * c)  # input = pixels / 255
    return model.eval()


# --- filters -------------------------------------------------------------------------------------------


def test_each_kernel_is_scaled_to_its_own_range_and_laid_out_in_order():
    conv = nn.Conv2d(1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight[:, 0] = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[-3.0, -3.0], [-1.0, -2.0]], [[5.0] * 2] * 2])
    grid = ex.filter_grid(conv.weight)
    assert grid.shape == (1 + 2 + 1, 1 + 3 * (2 + 1), 1)  # one row of three 2x2 tiles, 1-pixel gaps
    tiles = [grid[1:3, 1 + 3 * i : 3 + 3 * i, 0] for i in range(3)]
    np.testing.assert_allclose(tiles[0], [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(tiles[1], [[0, 0], [1, 0.5]])
    np.testing.assert_allclose(tiles[2], [[0.5, 0.5], [0.5, 0.5]])  # a constant kernel: mid-grey
    assert (grid[0] == 1).all() and (grid[:, 0] == 1).all() and (grid[:, 3] == 1).all()  # white gaps


def test_colour_kernels_keep_their_colour_and_share_one_range_across_channels():
    conv = nn.Conv2d(3, 20, 3)
    torch.manual_seed(0)
    grid = ex.filter_grid(conv.weight)
    assert grid.shape == (2 * 4 + 1, 16 * 4 + 1, 3)  # 20 kernels: rows of 16, as AlexNet's 96 make 6 rows
    w = conv.weight.detach()[17]  # second row, second tile
    tile = grid[5:8, 5:8]
    expected = ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0).numpy()  # RGB from input channels 0, 1, 2
    np.testing.assert_allclose(tile, expected, rtol=1e-5, atol=1e-6)
    assert tile.min() == 0 and tile.max() == 1  # one range per kernel, not per colour channel


def test_a_deeper_layer_shows_a_row_per_kernel_and_a_tile_per_input_channel():
    conv = nn.Conv2d(6, 16, 5)
    grid = ex.filter_grid(conv.weight)
    assert grid.shape == (16 * 6 + 1, 6 * 6 + 1, 1)
    w = conv.weight.detach()[2]
    scaled = (w - w.min()) / (w.max() - w.min())
    np.testing.assert_allclose(grid[13:18, 25:30, 0], scaled[4].numpy(), rtol=1e-5, atol=1e-6)  # kernel 3, channel 5


def test_a_deeper_layer_with_three_input_channels_is_not_drawn_as_colour():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3))  # conv2 reads 3 feature maps
    fig = ex.plot_filters(model, "conv2")
    assert fig.axes[0].get_images()[0].get_array().shape == (4 * 4 + 1, 3 * 4 + 1)  # a row per kernel, grey
    assert fig.axes[0].get_xlabel() == "input channel (1-3)"
    assert ex.filter_grid(model[2].weight, reads_image=False).shape == (4 * 4 + 1, 3 * 4 + 1, 1)
    assert ex.filter_grid(model[2].weight).shape == (4 + 1, 4 * 4 + 1, 3)  # as if it read an RGB image


def test_a_layer_is_found_by_its_module_name_or_as_convN():
    model = cnnlab.create_model("lenet5")
    assert ex.find_conv(model)[0] == "features.0"
    assert ex.find_conv(model, "conv2")[0] == ex.find_conv(model, "features.3")[0] == "features.3"
    with pytest.raises(UsageError, match=r"--layer 'conv3'.*conv1 \(features.0\), conv2 \(features.3\)"):
        ex.find_conv(model, "conv3")
    pattern = cnnlab.create_model("pattern", text="CONV(8) => RELU => POOL => CONV(8) => FC", img_size=32)
    with pytest.raises(UsageError, match=r"this model has conv1, conv2$"):  # its modules are named convN already
        ex.find_conv(pattern, "conv3")


def test_the_filters_figure_of_alexnet_shows_96_colour_kernels():
    model = cnnlab.create_model("alexnet_bn")
    png = Image.open(io.BytesIO(ex.png_bytes(ex.plot_filters(model))))
    assert png.mode == "RGBA" and png.size[0] >= 700
    assert "conv1 (features.0): 96 kernels 11x11x3" in ex.plot_filters(model).axes[0].get_title()


# --- feature maps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "alexnet_bn"])
def test_feature_maps_are_the_summarys_convolution_and_pooling_layers(name):
    torch.manual_seed(0)
    model = normalised(cnnlab.create_model(name), 1 if name == "lenet5" else 3)
    entry = cnnlab.summary(model)
    image = torch.randint(0, 256, entry.input_size, dtype=torch.uint8)
    maps = ex.feature_maps(model, image)
    expected = [(r.name, r.type, r.output_shape) for r in entry.rows if r.type in ("Conv2d", "AvgPool2d", "MaxPool2d")]
    assert [(m.name, m.kind, tuple(m.values.shape)) for m in maps] == expected
    conv1 = ex.find_conv(model)[1]
    direct = conv1(ex.prepare(model, image[None]))[0]
    # the convolution's own output, before AlexNet-BN's in-place ReLU changed that tensor
    torch.testing.assert_close(maps[0].values, direct.detach())
    assert (maps[0].values < 0).any()


def test_the_feature_maps_figure_has_a_panel_per_layer_titled_with_name_and_shape():
    model = normalised(cnnlab.create_model("lenet5"))
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    fig = ex.plot_feature_maps(image, ex.feature_maps(model, image))
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "input 1x28x28",
        "features.0 (Conv2d): 6x28x28",
        "features.2 (AvgPool2d): 6x14x14",
        "features.3 (Conv2d): 16x10x10",
        "features.5 (AvgPool2d): 16x5x5",
    ]


# --- class activation maps -----------------------------------------------------------------------------


def grad_cam_by_definition(model, layer, x, target):
    """Selvaraju et al.'s formula with torch.autograd: ReLU(sum_k mean(dy_c/dA_k) * A_k)."""
    kept = {}
    hook = layer.register_forward_hook(lambda m, a, out: kept.setdefault("A", out))
    score = model(x)[0, target]
    hook.remove()
    (grad,) = torch.autograd.grad(score, kept["A"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * kept["A"]).sum(1))[0].detach()


def test_grad_cam_is_captums_layer_grad_cam_and_the_papers_formula(lenet_run, digits):
    model, _ = cnnlab.inference.load_run(lenet_run)
    images, _ = digits
    found = ex.explain(model, images[:4], ("gradcam",))
    name, layer = ex.cam_layer(model)
    assert name == "features.4"  # the second tanh: the last convolution block's 16x10x10 output
    x = ex.prepare(model, images[:4])
    targets = torch.tensor([e.predicted for e in found])
    library = captum_attr.LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    torch.testing.assert_close(torch.stack([e.raw["gradcam"] for e in found]), library[:, 0].detach())
    upsampled = captum_attr.LayerAttribution.interpolate(library, (28, 28), "bilinear")[:, 0].detach()
    torch.testing.assert_close(torch.stack([e.maps["gradcam"] for e in found]), upsampled)
    for i, e in enumerate(found):
        by_hand = grad_cam_by_definition(model, layer, x[i : i + 1], e.target)
        torch.testing.assert_close(e.raw["gradcam"], by_hand, rtol=1e-4, atol=1e-6)
        assert e.raw["gradcam"].max() > 0


def test_occlusion_is_the_drop_of_the_class_score_when_a_patch_is_hidden(lenet_run, digits):
    model, _ = cnnlab.inference.load_run(lenet_run)
    image = digits[0][0]
    (e,) = ex.explain(model, image[None], ("occlusion",))
    window, stride = ex.occlusion_window(28, 28)
    assert (window, stride) == (4, 2)
    x = ex.prepare(model, image[None])
    with torch.no_grad():
        score = model(x)[0, e.target]
        # corner pixels one window alone covers hold that window's drop (Captum averages overlapping windows)
        for top, left in ((0, 0), (0, 24), (24, 0), (24, 24)):
            hidden = x.clone()
            hidden[:, :, top : top + window, left : left + window] = 0  # the training set's mean colour
            drop = score - model(hidden)[0, e.target]
            pixel = (top + (window - 1 if top else 0), left + (window - 1 if left else 0))
            torch.testing.assert_close(e.raw["occlusion"][pixel], drop, rtol=1e-4, atol=1e-5)


def only_channel_zero_counts(size: int = 12) -> nn.Module:
    """A 1x1 convolution copying two input channels, ReLU, and a classifier whose class c sums channel c: the
    evidence for class 0 lies where channel 0 is bright and nowhere else."""
    conv = nn.Conv2d(2, 2, 1, bias=False)
    linear = nn.Linear(2 * size * size, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        linear.weight.zero_()
        linear.weight[0, : size * size] = 1
        linear.weight[1, size * size :] = 1
    return normalised(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear), 2)


def test_a_model_where_only_one_region_can_matter():
    model = only_channel_zero_counts()
    image = torch.zeros(2, 12, 12, dtype=torch.uint8)
    image[0, 1:4, 1:5] = 255  # channel 0: top left
    image[1, 7:11, 6:10] = 200  # channel 1: bottom right
    top_left, bottom_right = torch.zeros(12, 12, dtype=torch.bool), torch.zeros(12, 12, dtype=torch.bool)
    top_left[1:4, 1:5], bottom_right[7:11, 6:10] = True, True
    for target, region, value in ((0, top_left, 1.0), (1, bottom_right, 200 / 255)):
        (e,) = ex.explain(model, image[None], targets=[target])
        torch.testing.assert_close(e.raw["gradcam"], region.float() * value)  # mean gradient 1, times A
        # occlusion smears by its window: zero wherever no window that covers the pixel touches the region
        window, _ = ex.occlusion_window(12, 12)
        near = nn.functional.max_pool2d(region[None].float(), 2 * window - 1, 1, window - 1)[0].bool()
        assert (e.raw["occlusion"][~near].abs() < 1e-5).all() and (e.raw["occlusion"][region] > 0).all()


@pytest.mark.parametrize("method", ex.METHODS)
def test_randomising_the_classifier_changes_the_maps(lenet_run, digits, method):
    """Adebayo et al.'s model-randomisation test: a map that stayed the same would not explain the model
    (measured on a 99.1% LeNet-5 run, 5 epochs on all of MNIST: mean rank correlation 0.07 for Grad-CAM, 0.09 for
    occlusion over ten digits)."""
    from scipy.stats import spearmanr

    model, _ = cnnlab.inference.load_run(lenet_run)
    images, _ = digits
    trained = ex.explain(model, images, (method,))
    again = ex.explain(model, images, (method,))
    targets = [e.target for e in trained]
    torch.manual_seed(0)
    for m in model.classifier:
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    randomised = ex.explain(model, images, (method,), targets=targets)
    for a, b in zip(trained, again):
        torch.testing.assert_close(a.raw[method], b.raw[method])
    correlations = [
        spearmanr(a.raw[method].flatten(), b.raw[method].flatten()).statistic for a, b in zip(trained, randomised)
    ]
    correlations = np.nan_to_num(correlations)  # a map that became all zero correlates with nothing
    assert np.mean(correlations) < 0.5, correlations


def test_grad_cam_works_through_an_in_place_relu():
    """AlexNet (2012) ends its last block in ReLU(inplace=True): Grad-CAM's layer, hooked by Captum."""
    torch.manual_seed(0)
    model = normalised(cnnlab.create_model("alexnet", num_classes=3), 3)
    name, layer = ex.cam_layer(model)
    assert name == "features.13" and layer.inplace
    image = torch.randint(0, 256, (3, 227, 227), dtype=torch.uint8)
    (e,) = ex.explain(model, image[None], ("gradcam",))
    assert layer.inplace  # given back as it was
    by_hand = grad_cam_by_definition(model, layer, ex.prepare(model, image[None]), e.target)
    torch.testing.assert_close(e.raw["gradcam"], by_hand, rtol=1e-4, atol=1e-6)


def test_the_explanations_figure_marks_a_mistake():
    model = only_channel_zero_counts()
    image = torch.zeros(1, 2, 12, 12, dtype=torch.uint8)
    image[0, 0, 2:5, 2:5] = 255
    fig = ex.plot_explanations(ex.explain(model, image), ["zero", "one"], labels=[1])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["true one\npredicted zero 100.0%", "Grad-CAM", "occlusion"]
    assert fig.axes[0].title.get_color() == "crimson"


def test_an_unknown_method_is_named():
    with pytest.raises(UsageError, match="unknown method 'lime'"):
        ex.explain(only_channel_zero_counts(), torch.zeros(1, 2, 12, 12, dtype=torch.uint8), ("lime",))


# --- a trained run -------------------------------------------------------------------------------------


def test_pictures_of_a_run(lenet_run, digits, tmp_path):
    paths = []
    for i in range(2):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - digits[0][i, 0].numpy()).save(path)  # dark on light, as a scan: read as training did
        paths.append(path)
    model, info = cnnlab.inference.load_run(lenet_run)
    torch.testing.assert_close(ex.read_images(info, paths), digits[0][:2])
    pictures = (ex.filters_png(model, info), ex.activations_png(model, info, paths[0]))
    pictures += (ex.explain_png(model, info, paths), ex.mistakes_png(model, info["classes"], digits[0][:2], [0, 1]))
    for png in pictures:
        assert Image.open(io.BytesIO(png)).format == "PNG"
    with pytest.raises(DataError, match="nothere.png: file not found"):
        ex.explain_png(model, info, [tmp_path / "nothere.png"])
    with pytest.raises(UsageError, match="--class 'cat' is not one of the run's classes: 0, 1, 2"):
        ex.explain_png(model, info, paths, target="cat")


# --- the commands --------------------------------------------------------------------------------------


def test_the_commands_write_their_pictures(lenet_run, digits, tmp_path, capsys):
    from cnnlab.cli import main

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(digits[0][i, 0].numpy()).save(paths[-1])
    run = str(lenet_run)
    assert main(["filters", run, "--layer", "conv2", "-o", str(tmp_path / "f.png")]) == 0
    assert main(["activations", run, str(paths[0]), "-o", str(tmp_path / "a.png")]) == 0
    assert main(["explain", run, *map(str, paths), "-o", str(tmp_path / "e.png")]) == 0
    assert main(["explain", run, *map(str, paths[:2]), "--method", "gradcam", "-o", str(tmp_path / "each")]) == 0
    for name in ("f.png", "a.png", "e.png", "each/digit0-explain.png", "each/digit1-explain.png"):
        assert Image.open(tmp_path / name).format == "PNG", name
    one_row, three_rows = Image.open(tmp_path / "each/digit0-explain.png"), Image.open(tmp_path / "e.png")
    assert three_rows.height > 2.5 * one_row.height and three_rows.width > one_row.width  # rows; two maps vs one


@pytest.mark.parametrize(
    "argv, message",
    [
        (["filters", "{run}", "--layer", "conv9"], "--layer 'conv9': no convolution of that name"),
        (["activations", "{run}", "{tmp}/missing.png"], "missing.png: file not found"),
        (["explain", "{run}", "{tmp}/missing.png"], "missing.png: file not found"),
        (["activations", "{run}", "{tmp}/no-weights"], "no-weights: a folder, not an image file"),
        (["explain", "{run}", "{tmp}/no-weights"], "no-weights: a folder, not an image file"),
        (["explain", "{tmp}", "{tmp}/missing.png"], "not a cnnlab run directory"),
        (["explain", "{run}", "{tmp}/missing.png", "-o", "out.jpg"], "-o out.jpg: give a FILE.png or a FOLDER"),
        (["explain", "{run}", "{tmp}/missing.png", "--method", "lime"], "unknown method 'lime'"),
        (["filters", "{tmp}/no-weights"], "no-weights/weights/last.safetensors: no weights yet"),
        # the run's own pictures are not overwritten (they once were, without a word)
        (["filters", "{run}", "-o", "{run}/curves.png"], "curves.png: is a file of the run"),
        (["activations", "{run}", "{tmp}/missing.png", "-o", "{run}/mistakes.png"], "is a file of the run"),
        (["explain", "{run}", "{tmp}/missing.png", "-o", "{run}/confusion_matrix.png"], "is a file of the run"),
    ],
)
def test_bad_input_ends_in_one_line(lenet_run, tmp_path, capsys, argv, message):
    from cnnlab.cli import main

    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "model.json").write_text((lenet_run / "model.json").read_text())
    argv = [a.format(run=lenet_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and message in err and "Traceback" not in err


def test_the_maps_of_chosen_layers_are_the_same_and_stop_the_forward_pass_early():
    model = normalised(cnnlab.create_model("lenet5"))
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    calls = []
    model.classifier.register_forward_hook(lambda *a: calls.append(1))
    (first,) = ex.feature_maps(model, image, only={"features.0"})
    assert not calls  # the classifier never ran
    torch.testing.assert_close(first.values, ex.feature_maps(model, image)[0].values)
    assert calls


def test_pictures_take_tensors_straight_from_a_model():
    # A layer's output or a map that still requires grad (or lives on a GPU) is drawn as its values, not refused
    # by numpy(): the drawing functions detach and move to the CPU themselves.
    conv = torch.nn.Conv2d(3, 4, 3)
    maps = conv(torch.rand(1, 3, 8, 8))[0]
    assert maps.requires_grad
    mosaic = ex.feature_mosaic(maps)
    assert np.nanmin(mosaic) == 0 and np.nanmax(mosaic) == 1
    heat = maps[0]
    picture = ex.overlay(torch.rand(3, 6, 6), heat)
    assert picture.shape == (6, 6, 3) and 0 <= picture.min() and picture.max() <= 1
    assert ex.filter_grid(conv.weight).shape[-1] == 3  # RGB kernels: one colour tile each
