"""``cnnlab demo``: the Gradio page, tried in a real browser (Debian's chromium, driven by Playwright).

An MNIST run: a stroke drawn on the canvas is read back as the answer "1", with its Grad-CAM overlay and the first
layer's feature maps. An image-folder run with an ONNX export: a photo dropped on the page gets the probabilities
`cnnlab predict` gives for that file (onnxruntime). The browser tests skip, saying why, where chromium or
Playwright is not installed; nothing is downloaded (Playwright drives the system's chromium).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from look_inside_runs import lenet_on_photos

from cnnlab.inference import predict_files

gradio = pytest.importorskip("gradio", reason="cnnlab[demo] (Gradio) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # Gradio's own use of pandas

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the project's machines need: no sandbox as root, and nothing that reaches for the network on its own
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


needs_browser = pytest.mark.skipif(
    CHROMIUM is None or _playwright() is None,
    reason="chromium (Debian: apt-get install chromium) or Playwright (pip install playwright) is not installed",
)


@pytest.fixture(scope="module")
def mnist_run(lenet_mnist_slice_run):
    return lenet_mnist_slice_run


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, real_data_dir):
    from cnnlab.cli import main

    photos = real_data_dir / "dogs-vs-cats-small" / "train"
    if not photos.is_dir():
        pytest.skip("dogs-vs-cats-small is not in the shared data")
    run = lenet_on_photos(tmp_path_factory.mktemp("demo-photos"), photos)
    assert main(["export", str(run)]) == 0  # the page then takes its probabilities from onnxruntime
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page_of(request):
    """page_of(run) -> a Playwright page showing ``cnnlab demo RUN``, served on a free local port."""
    from cnnlab.demo import serve

    opened = []

    def open_page(run: Path):
        blocks, url = serve(run, port=free_port(), prevent_thread_lock=True, quiet=True)
        playwright = _playwright()().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        opened.append((blocks, playwright, browser))
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#source")
        return page

    yield open_page
    for blocks, playwright, browser in opened:
        browser.close()
        playwright.stop()
        blocks.close()


def shown_probabilities(page) -> dict[str, float]:
    """The prediction panel's classes and probabilities, as the page holds them (Gradio's Label meters)."""
    page.wait_for_selector("#prediction meter", timeout=60_000)
    meters = page.locator("#prediction meter")
    return {meters.nth(i).get_attribute("aria-label"): float(meters.nth(i).get_attribute("value")) for i in
            range(meters.count())}  # fmt: skip


def shows_pictures(page) -> bool:
    page.wait_for_selector("#gradcam img", timeout=60_000)
    page.wait_for_selector("#feature-maps img", timeout=60_000)
    return all(page.locator(f"{p} img").first.evaluate("i => i.complete && i.naturalWidth > 0")
               for p in ("#gradcam", "#feature-maps"))  # fmt: skip


@needs_browser
def test_a_digit_drawn_on_the_canvas_is_read(mnist_run, page_of, tmp_path):
    page = page_of(mnist_run)
    page.wait_for_selector('#source button[aria-label="Brush"].highlight')  # the page picked the brush itself
    box = page.locator("#source canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y - 100)
    page.mouse.down()
    for step in range(21):  # one vertical stroke: a "1"
        page.mouse.move(x, y - 100 + 10 * step)
    page.mouse.up()
    probabilities = shown_probabilities(page)
    assert max(probabilities, key=probabilities.get) == "1", probabilities
    assert len(probabilities) == 5 and sum(probabilities.values()) <= 1 + 1e-6
    assert shows_pictures(page)
    assert "probabilities from PyTorch" in page.inner_text("body")
    page.screenshot(path=tmp_path / "canvas.png")


@needs_browser
def test_a_dropped_photo_gets_what_cnnlab_predict_says(photo_run, real_data_dir, page_of):
    photo = real_data_dir / "dogs-vs-cats-small" / "train" / "dog.900.jpg"  # not among the run's images
    page = page_of(photo_run)
    assert "probabilities from onnxruntime" in page.inner_text("body")
    page.set_input_files("#source input[type=file]", str(photo))
    shown = shown_probabilities(page)
    ((_, expected),) = predict_files(photo_run, [photo], top=2, runtime="onnx")
    assert list(shown) == [c for c, _ in expected]
    np.testing.assert_allclose(list(shown.values()), [p for _, p in expected], rtol=1e-4)
    assert shows_pictures(page)


def test_a_port_in_use_is_one_line_naming_it(mnist_run, capsys):
    """Gradio's OSError was an internal error whose message named GRADIO_SERVER_PORT and launch()."""
    from cnnlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", str(mnist_run), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"cnnlab: error: --host 127.0.0.1 --port {port}: cannot serve there") and "Traceback" not in err
    )
