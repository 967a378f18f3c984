import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model, list_models
from cnnlab.analysis.compute import compute_report, device_peak
from cnnlab.cli import main
from cnnlab.models import get_model_entry


@pytest.mark.parametrize("name", list_models())
def test_forward_flops_match_pytorchs_flop_counter(name):
    model = create_model(name).eval()
    size = get_model_entry(name).input_size
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *size))
    assert compute_report(model, size).forward_flops == counter.get_total_flops()


def test_alexnet_training_compute_is_within_10_percent_of_openai():
    report = compute_report(create_model("alexnet"), (3, 227, 227))
    pfs_days = report.run_pfs_days(1_200_000, 90)
    assert abs(pfs_days - 0.0054) / 0.0054 < 0.10  # "AI and Compute" (OpenAI, 2018): 0.0058 pfs-days


@pytest.mark.parametrize("name", ["lenet5", "alexnet_bn"])
def test_training_flops_per_image_match_a_measured_training_step(name):
    """The count of a training step (forward and backward) measured by PyTorch's FlopCounterMode: the
    estimate may only overcount the first layer's input gradient, which no training step computes."""
    model = create_model(name).train()
    size = get_model_entry(name).input_size
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(2, *size)).sum().backward()  # a batch of 2: BatchNorm needs more than one value
    measured = counter.get_total_flops() / 2
    estimate = compute_report(model, size).run_flops(1, 1)
    assert 0.9 * estimate <= measured <= estimate


def test_compute_cli_and_chart(tmp_path, capsys):
    assert main(["compute", "alexnet", "--input", "227x227x3", "--epochs", "90", "--images", "1200000"]) == 0
    out = capsys.readouterr().out
    assert "petaflop/s-days" in out and "0.0054" in out
    chart = tmp_path / "eras.png"
    assert main(["compute", "lenet5", "--epochs", "5", "--images", "60000", "--chart", str(chart)]) == 0
    assert chart.read_bytes()[:4] == b"\x89PNG" and chart.stat().st_size > 20_000


@pytest.mark.parametrize(
    "name, precision, peak",
    [  # NVIDIA's datasheets, dense (without sparsity), as torch.cuda.get_device_name spells the cards
        ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
        ("NVIDIA H100 80GB HBM3", "fp32", 67e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H100 PCIe", "fp32", 51e12),
        ("NVIDIA H100 NVL", "bf16", 835e12),
        ("NVIDIA H200", "fp16", 989e12),
        ("NVIDIA H200 NVL", "fp32", 60e12),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA A100-SXM4-80GB", "fp32", 19.5e12),
        ("Tesla T4", "bf16", None),  # not listed: compute.json gives no fraction of a peak rather than a wrong one
    ],
)
def test_device_peak_is_the_datasheet_number_of_the_card_by_name(monkeypatch, name, precision, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert device_peak(torch.device("cuda"), precision) == peak
    assert device_peak(torch.device("cpu"), precision) is None


def test_the_names_of_runs_of_similar_compute_do_not_overlap_on_the_chart(monkeypatch, tmp_path):
    """Runs of one model on one dataset stand at one point: each name must still be readable, inside the picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cnnlab.analysis.compute import chart

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kwargs: drawn.append(fig))
    runs = [(f"lenet5-mnist-{i}", 2026.9, 2e-9 * (1 + i / 20)) for i in range(3)] + [("alexnet_bn-cats", 2026.9, 3e-5)]
    chart(tmp_path / "eras.png", runs)
    fig = drawn[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    names = [t for t in fig.axes[0].texts if t.get_text() in {name for name, _, _ in runs}]
    boxes = [t.get_window_extent(renderer) for t in names]
    assert len(boxes) == len(runs)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(fig.bbox.contains(b.x0, b.y0) and fig.bbox.contains(b.x1, b.y1) for b in boxes)
