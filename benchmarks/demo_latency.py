"""How long `cnnlab demo` takes to answer, seen from a real browser (Debian's chromium through Playwright), and a
screenshot of each page for benchmarks/results/.

For an image-folder run: a photo dropped on the page (Playwright sets the file on the page's file input, as a drop
does) until the top-k probabilities and both pictures (Grad-CAM, feature maps) are shown. For an MNIST run: the
end of a stroke drawn on the canvas until the same. Each try opens the page afresh; the clock runs in the test
program around the browser, so it includes Gradio's upload, queue and the browser's drawing. The server-side part
alone (``RunDemo.answer`` on the same file: read, Grad-CAM, probabilities, feature maps) is timed too.

    python benchmarks/demo_latency.py RUN [RUN...] --photos A.jpg B.jpg ... [--tries 5] [--out FILE.json]
        [--screenshots PREFIX...]   # one per run: benchmarks/results/PREFIX_demo.png

Probabilities come from onnxruntime where the run holds a current export (`cnnlab export RUN`), as the page says.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from cnnlab.demo import RunDemo, serve
from cnnlab.environment import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
FLAGS += ["--disable-component-update", "--disable-sync"]


def answered(page) -> None:
    page.wait_for_selector("#prediction meter", timeout=120_000)
    for picture in ("#gradcam img", "#feature-maps img"):
        page.wait_for_function(
            f"() => {{ const i = document.querySelector('{picture}'); return i && i.complete && i.naturalWidth > 0 }}",
            timeout=120_000,
        )


def draw_a_one(page) -> float:
    page.wait_for_selector('#source button[aria-label="Brush"].highlight')
    box = page.locator("#source canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y - 100)
    page.mouse.down()
    for step in range(21):
        page.mouse.move(x, y - 100 + 10 * step)
    page.mouse.up()
    return time.perf_counter()


def one_try(browser, url: str, draws: bool, photo: Path | None, screenshot: Path | None) -> float:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(url)
    page.wait_for_selector("#source")
    if draws:
        start = draw_a_one(page)
    else:
        start = time.perf_counter()
        page.set_input_files("#source input[type=file]", str(photo))
    answered(page)
    seconds = time.perf_counter() - start
    if screenshot is not None:
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        shot.quantize(256).save(screenshot, optimize=True)  # a small PNG for the repository
    page.close()
    return seconds


def measure(run: Path, photos: list[Path], tries: int, browser, screenshot: Path | None) -> dict:
    demo = RunDemo(run)
    server = []
    for i in range(tries):
        photo = photos[i % len(photos)]
        start = time.perf_counter()
        demo.answer(photo if not demo.draws else photos[0])
        server.append(time.perf_counter() - start)
    blocks, url = serve(run, port=None, prevent_thread_lock=True, quiet=True)
    try:
        one_try(browser, url, demo.draws, photos[0], None)  # warm-up: the first page load compiles the front end
        page = [one_try(browser, url, demo.draws, photos[i % len(photos)], None) for i in range(tries)]
        if screenshot is not None:
            one_try(browser, url, demo.draws, photos[0], screenshot)
    finally:
        blocks.close()
    return {
        "run": str(run),
        "model": demo.info["model"],
        "input": "a stroke drawn on the canvas" if demo.draws else "a photo dropped",
        "probabilities_from": demo.runtime,
        "page_seconds": page,
        "page_median_seconds": statistics.median(page),
        "server_seconds": server,
        "server_median_seconds": statistics.median(server),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--photos", nargs="+", type=Path, required=True, help="photos to drop (MNIST runs: files to time)"
    )
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--screenshots", nargs="*", default=[], help="one file prefix per run")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo_latency.json")
    args = parser.parse_args()
    results = []
    load_before = os.getloadavg()[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=FLAGS)
        for i, run in enumerate(args.runs):
            shot = RESULTS / f"{args.screenshots[i]}_demo.png" if i < len(args.screenshots) else None
            results.append(measure(run, args.photos, args.tries, browser, shot))
            r = results[-1]
            print(
                f"{r['model']} ({r['input']}, probabilities from {r['probabilities_from']}): answer shown after "
                f"{r['page_median_seconds']:.2f} s (median of {args.tries}); "
                f"server part {r['server_median_seconds']:.2f} s"
            )
        browser.close()
    # the machine's other work: on 2 cores, a load of 7 makes every number here several times slower
    load = {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
    args.out.write_text(json.dumps({"cpu": cpu_name(), "load_average_1min": load, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
