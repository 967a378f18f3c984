"""Print (and save) the parity table of cnnlab's augmentation against real Keras.

For every case stored by scripts/make_keras_fixtures.py (an option with Keras' exact transform parameters), every
fill mode and every test image: the largest absolute difference between cnnlab's output and Keras' output, in
float32 (the training dtype) and float64. Then the random-parameter checks: cnnlab's sampler against Keras'
stored draws (chi-square test of the frequencies for whole-pixel/listed shifts and flips, two-sample
Kolmogorov-Smirnov for continuous parameters). Needs numpy, scipy and torch, not Keras.

    PYTHONPATH=src python scripts/keras_augment_parity.py [-o benchmarks/results/keras_augment_parity.txt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fixture reader is the tests' own

from keras_fixtures import draw_rows, meta, parity_rows  # noqa: E402

COMMAND = "PYTHONPATH=src python scripts/keras_augment_parity.py -o benchmarks/results/keras_augment_parity.txt"
FILLS = ("constant", "nearest", "reflect", "wrap")


def transform_table() -> list[str]:
    images = list(meta()["images"])
    rows32 = {(c, f, i): d for c, f, i, d in parity_rows(torch.float32)}
    rows64 = {(c, f, i): d for c, f, i, d in parity_rows(torch.float64)}
    name_width = max(len(c["name"]) for c in meta()["cases"]) + 2
    cell = 7
    head1 = " " * name_width + "".join(f"{fill:^{cell * len(images)}}" for fill in FILLS) + "  all, float64"
    head2 = f"{'option':<{name_width}}" + "".join(f"{i:>{cell}}" for _ in FILLS for i in images)
    lines = [head1, head2, "-" * len(head1)]
    for c in meta()["cases"]:
        cells = []
        for fill in FILLS:
            for image in images:
                d = rows32.get((c["name"], fill, image))
                cells.append(f"{'-':>{cell}}" if d is None else f"{d:>{cell}.4f}")
        worst64 = max(d for (name, _, _), d in rows64.items() if name == c["name"])
        lines.append(f"{c['name']:<{name_width}}" + "".join(cells) + f"  {worst64:.1e}")
    lines.append("-" * len(head1))
    lines.append(
        f"largest difference: {max(rows32.values()):.4f} in float32, {max(rows64.values()):.1e} in float64, "
        f"over {len(rows32)} (option, fill mode, image) outputs"
    )
    return lines


def draw_table() -> list[str]:
    lines = [
        f"{'setting':<38}{'param':<24}{'Keras: values or range':<34}{'cnnlab':<34}{'test':<6}{'statistic':>10}{'p':>9}"
    ]
    lines.append("-" * len(lines[0]))
    notes = []
    for r in draw_rows():
        if r["values"] is None and r["pvalue"] < 0.01:  # is it cnnlab's sample or Keras' that is unusual?
            lo, hi = (float(f"{v:.3g}") for v in (r["ours"].min(), r["ours"].max()))
            p = stats.kstest(r["keras"], stats.uniform(lo, hi - lo).cdf).pvalue
            notes.append(f"{r['name']}, {r['key']}: Keras' own draws against U({lo:g}, {hi:g}) give p = {p:.3g}")
        if r["values"] is not None:
            keras = " ".join(f"{v:g}" for v in r["values"])
            ours = " ".join(f"{v:g}" for v in sorted({round(float(v), 4) + 0.0 for v in r["ours"]}))
        else:
            keras = f"[{r['keras'].min():.4g}, {r['keras'].max():.4g}]"
            ours = f"[{r['ours'].min():.4g}, {r['ours'].max():.4g}]"
        lines.append(
            f"{r['name']:<38}{r['key']:<24}{keras:<34}{ours:<34}{r['test']:<6}{r['statistic']:>10.4f}"
            f"{r['pvalue']:>9.3g}"
        )
    return lines + [""] + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    m = meta()
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    shapes = ", ".join(f"{k} {'x'.join(map(str, s[1:]))}" for k, s in m["images"].items())
    lines = [
        f"# {COMMAND}",
        "",
        "cnnlab.augment against real Keras: max |cnnlab - Keras| per option, fill mode and image",
        f"Keras fixtures: tests/fixtures/keras_augment, made by {m['made_by']} ({versions})",
        f"reference: {m['reference']}; images: {shapes} (mnist: {m['mnist_image']}; grey and rgb synthetic)",
        "Each option gets Keras' exact transform parameters (apply_transform, then standardize, as flow() does);",
        "the photometric and standardisation options run on a 12.5-degree rotation and 1.5-pixel shift so that the",
        "fill mode matters there too. Units are the output's: 0..255, except after rescale 1/255 (0..1) and after",
        "std normalisation (std units); constant fills use cval 40 (300 in its own case). '-': not stored.",
        "",
        *transform_table(),
        "",
        f"Random parameters: {m['draws_per_setting']} draws of Keras' get_random_transform per setting (np.random",
        "seeded) against 20,000 of cnnlab's (torch seeded). Discrete parameters: the same values and a chi-square",
        "test of homogeneity of their frequencies; continuous ones: the two-sample Kolmogorov-Smirnov test. The",
        "tests require p > 1e-4 (and the same values, and ranges within 1%).",
        "",
        *draw_table(),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
