"""Wall time to reach given accuracies, read from finished (or running) run directories.

Recipes are compared by the user's clock, not by epochs: for each run this prints the seconds of training
(and per-epoch validation) until its validation accuracy first reached each target, from the run's
``metrics.csv`` (one row per epoch, Keras' CSVLogger, with the epoch's wall seconds). Start-up (reading
the data, building the model) and the final evaluation are not counted; they are the same for every recipe
of a model. The final 10-crop accuracy of an image-folder run comes from its ``report.json``, with its 95%
interval: on the 200-image validation split of the Dogs vs. Cats sample one standard error is ~2.7 points.

    python benchmarks/time_to_accuracy.py runs/lenet5 runs/lenet5-record
    python benchmarks/time_to_accuracy.py runs/alex-* --targets 0.80 0.83 0.85 --plot tta.png
    python benchmarks/time_to_accuracy.py runs/challenge --ten-crop-weights DIR --targets 0.90 0.9435 0.96

``--ten-crop-weights DIR`` (one run): DIR holds the run's validated weights after each epoch, copied from
``RUN/weights/last.safetensors`` as the epochs ended (``epoch-N.safetensors``); each is evaluated with 10-crop on
the run's validation split, so that the time to an accuracy is also known for 10-crop, not only for the centre
crop that training validates with. Only the epochs given are evaluated (each costs ten passes over the split).

Default targets: the run's model and preset's on the data they were set for (``cnnlab.train.recipes.ACCURACY_TARGETS``,
which the run's page times too): LeNet-5 on MNIST 98.5% and 99.0%, AlexNet-BN on an image folder 80%, 83% and 85%,
``--recipe challenge`` 90%, 94.35% and 96%; 90% for a run on other data (LeNet-5 on Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from scipy.stats import binomtest

from cnnlab.rundir import first_reached as time_to  # the run's page times the same way
from cnnlab.train.recipes import accuracy_targets


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95% interval of an accuracy measured on n images (Wilson's score interval: right near 0 and 1 too)."""
    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(correct, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def read_run(run_dir: Path) -> dict:
    config = json.loads((run_dir / "config.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.csv: no epochs yet")
    elapsed, curve = 0.0, []
    for row in rows:
        elapsed += float(row["seconds"])
        curve.append((int(row["epoch"]) + 1, elapsed, float(row["val_accuracy"])))
    run = {"run": str(run_dir), "model": config["model"], "recipe": config.get("recipe", ""), "curve": curve}
    run["dataset"] = config.get("dataset")
    report = run_dir / "report.json"
    if report.exists():
        r = json.loads(report.read_text())
        run["final"] = {"accuracy": r["accuracy"], "ten_crop": r.get("ten_crop_accuracy"), "n": r["n"]}
    return run


def ten_crop_curve(run: dict, weights_dir: Path) -> list[tuple[int, float, float, int]]:
    """(epoch, seconds, 10-crop accuracy, images) for each epoch-N.safetensors in ``weights_dir``."""
    from cnnlab.checkpoint import load_weights_into
    from cnnlab.data.source import open_source
    from cnnlab.inference import evaluate_source, load_run, run_config
    from cnnlab.train import Runtime

    run_dir = Path(run["run"])
    model, _ = load_run(run_dir)
    cfg = run_config(run_dir)
    source = open_source(cfg, allow_sample=False, echo=lambda message: None)
    seconds = {epoch: s for epoch, s, _ in run["curve"]}
    curve = []
    for path in sorted(weights_dir.glob("epoch-*.safetensors"), key=lambda p: int(p.stem.split("-")[1])):
        epoch = int(path.stem.split("-")[1])
        load_weights_into(model, path)
        # in the run's precision, as its own validation and final report evaluate
        report, _ = evaluate_source(model, source, "test", Runtime(cfg.device, cfg.precision), cfg.eval_batch_size)
        curve.append((epoch, seconds[epoch], report.ten_crop_accuracy, report.n))
        print(f"  epoch {epoch}: centre {report.accuracy:.2%}, 10-crop {report.ten_crop_accuracy:.2%}", flush=True)
    return curve


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (runs/NAME)")
    p.add_argument("--targets", nargs="+", type=float, help="accuracies as fractions (default: by model)")
    p.add_argument("--plot", type=Path, help="also draw validation accuracy against wall time to this PNG")
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    p.add_argument("--ten-crop-weights", type=Path, help="one run: a folder of its epoch-N.safetensors (see above)")
    args = p.parse_args(argv)
    if args.ten_crop_weights and len(args.runs) != 1:
        p.error("--ten-crop-weights goes with one run")

    runs = [read_run(r) for r in args.runs]
    results = []
    for run in runs:
        targets = args.targets or accuracy_targets(run) or (0.9,)
        epochs, total, best = len(run["curve"]), run["curve"][-1][1], max(a for _, _, a in run["curve"])
        label = run["run"] + (f" (--recipe {run['recipe']})" if run["recipe"] else "")
        print(f"{label}: {run['model']}, {epochs} epochs in {total:.0f} s, best validation {best:.2%}")
        reached = {}
        for t in targets:
            hit = time_to(run["curve"], t)
            reached[f"{t:.4g}"] = None if hit is None else {"epoch": hit[0], "seconds": round(hit[1], 1)}
            print(f"  to {t:.1%}: " + (f"{hit[1]:7.1f} s (epoch {hit[0]})" if hit else "not reached"))
        if args.ten_crop_weights:
            run["ten_crop_curve"] = ten_crop_curve(run, args.ten_crop_weights)
            ten = [(epoch, seconds, accuracy) for epoch, seconds, accuracy, _ in run["ten_crop_curve"]]
            reached_10 = {}
            for t in targets:
                hit = time_to(ten, t)
                reached_10[f"{t:.4g}"] = None if hit is None else {"epoch": hit[0], "seconds": round(hit[1], 1)}
                print(
                    f"  to {t:.1%} (10-crop, epochs evaluated): "
                    + (f"{hit[1]:7.1f} s (epoch {hit[0]})" if hit else "not reached")
                )
            run["reached_ten_crop"] = reached_10
        final = run.get("final")
        if final and final.get("n"):
            for name in ("accuracy", "ten_crop"):
                if final.get(name) is not None:
                    lo, hi = wilson_interval(round(final[name] * final["n"]), final["n"])
                    shown = "final centre crop" if name == "accuracy" else "final 10-crop"
                    print(f"  {shown}: {final[name]:.2%} (95% interval {lo:.1%}-{hi:.1%}, {final['n']} images)")
        results.append(
            {
                **{k: run[k] for k in ("run", "model", "recipe")},
                "seconds": total,
                "reached": reached,
                "final": final,
                "curve": run["curve"],
                **{k: run[k] for k in ("ten_crop_curve", "reached_ten_crop") if k in run},
            }
        )

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for run in runs:
            _, seconds, accuracy = zip(*run["curve"])
            minutes, percent = [s / 60 for s in seconds], [100 * a for a in accuracy]
            ax.plot(minutes, percent, marker="o", ms=3, label=Path(run["run"]).name + " (centre crop)")
            if run.get("ten_crop_curve"):
                _, seconds, accuracy, _ = zip(*run["ten_crop_curve"])
                ax.plot([s / 60 for s in seconds], [100 * a for a in accuracy], marker="s", ms=4, label="10-crop")
            final = run.get("final") or {}
            if final.get("ten_crop") is not None and final.get("n"):  # the report's number, with its interval
                done, y = minutes[-1], 100 * final["ten_crop"]
                lo, hi = (100 * b for b in wilson_interval(round(final["ten_crop"] * final["n"]), final["n"]))
                ax.errorbar([done], [y], yerr=[[y - lo], [hi - y]], fmt="D", ms=5, capsize=4, color="black",
                            label=f"final 10-crop {y:.2f}% (95% interval)")  # fmt: skip
        for t in sorted({t for r in results for t in map(float, r["reached"])}):
            ax.axhline(100 * t, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("wall time (minutes, training + per-epoch validation)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("time to accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
