"""Two runs evaluated on the same images, compared image by image (a paired test).

On 200 held-out images one accuracy has a 95% interval of about +-5.5 points, so two runs' intervals overlap
for any difference that matters. The images are the same for both runs, though, and most are right (or
wrong) in both: only the images on which the runs disagree carry information about which is better. This
script reads the runs' ``predictions.csv`` (written with every evaluation) and prints, for each run against
the first: both accuracies with their 95% intervals (Wilson), the difference with its paired 95% interval,
and McNemar's exact test on the disagreements (SciPy's binomial test).

    python benchmarks/paired_comparison.py runs/base runs/base-ema runs/base-sgd --view 10-crop
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from scipy.stats import binomtest
from time_to_accuracy import wilson_interval  # beside this script


def read_predictions(run_dir: Path, view: str | None) -> tuple[list[str], list[str], str]:
    """(labels, predictions, view) of one view: "10-crop" or "centre crop" (image folders); None: the first."""
    path = run_dir / "predictions.csv"
    if not path.exists():
        raise SystemExit(f"{path}: not found (runs evaluated by cnnlab before predictions.csv existed lack it)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith("predicted")]
    views = {c.removeprefix("predicted").removeprefix("_").replace("_", " "): c for c in columns}
    if view is None:
        view = next(iter(views))
    if view not in views:
        raise SystemExit(f"{path}: no view {view!r}; it has " + ", ".join(repr(v) for v in views))
    return [r["label"] for r in rows], [r[views[view]] for r in rows], view


def compare(base: list[bool], other: list[bool]) -> dict:
    n = len(base)
    diffs = [int(b) - int(a) for a, b in zip(base, other)]
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    only_other, only_base = diffs.count(1), diffs.count(-1)
    discordant = only_other + only_base
    p = binomtest(only_other, discordant, 0.5).pvalue if discordant else 1.0
    return {
        "difference": mean,
        "interval": (mean - 1.96 * sd / math.sqrt(n), mean + 1.96 * sd / math.sqrt(n)),
        "only_other_right": only_other,
        "only_base_right": only_base,
        "mcnemar_p": p,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path, help="the run the others are compared with")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--view", help="image folders: '10-crop' or 'centre crop' (default: the first the runs have)")
    args = p.parse_args(argv)

    labels, predicted, view = read_predictions(args.base, args.view)
    base_right = [a == b for a, b in zip(labels, predicted)]
    n = len(labels)

    def accuracy(right):
        lo, hi = wilson_interval(sum(right), n)
        return f"{sum(right) / n:6.1%} [{lo:.1%}, {hi:.1%}]"

    shown = repr(view) if view else "the only one"
    print(f"{n} images, view {shown}; accuracy [95% interval]; difference to {args.base} [paired 95%]")
    print(f"{str(args.base):40s} {accuracy(base_right)}")
    for run in args.runs:
        other_labels, other_predicted, _ = read_predictions(run, view)
        if other_labels != labels:
            raise SystemExit(f"{run}: evaluated on other images than {args.base}; a paired comparison needs the same")
        right = [a == b for a, b in zip(labels, other_predicted)]
        c = compare(base_right, right)
        lo, hi = c["interval"]
        print(
            f"{str(run):40s} {accuracy(right)}  {c['difference']:+6.1%} [{lo:+.1%}, {hi:+.1%}]  "
            f"right only here {c['only_other_right']}, only in base {c['only_base_right']}, "
            f"McNemar p = {c['mcnemar_p']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
