"""cnnlab compute MODEL: MACs, FLOPs and the training compute of a run; --chart draws the two eras."""

from __future__ import annotations

import argparse
import json

from ..errors import RunError, UsageError
from ..rundir import RunDir, refuse_run_files
from ._model import add_model_arguments, build
from ._types import png_path, positive_float, positive_int

NAME = "compute"
HELP = "MACs, FLOPs and training compute (petaflop/s-days); --chart draws the two eras"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "a registered model or a pattern", nargs="?")
    parser.add_argument("--epochs", type=positive_float, help="epochs of a training run to cost (with --images)")
    parser.add_argument("--images", type=positive_int, help="training images per epoch (with --epochs)")
    parser.add_argument(
        "--chart",
        type=png_path,
        metavar="FILE.png",
        help="draw the two eras of training compute, with this model and --run",
    )
    parser.add_argument("--run", action="append", default=[], metavar="RUN_DIR", help="place a run on the chart")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from ..analysis.compute import PFS_DAY, chart, compute_report, year_now

    if (args.images is None) != (args.epochs is None):
        given, missing = ("--images", "--epochs") if args.epochs is None else ("--epochs", "--images")
        raise UsageError(f"{given} costs a training run together with {missing}; give both (or neither)")
    if not args.model and not args.chart:
        raise UsageError("name a model, or ask for --chart PNG")
    if args.images and not args.model:
        raise UsageError("--images and --epochs cost a training run of a model: name the model")
    if args.run and not args.chart:
        raise UsageError("--run places a run on the chart: add --chart PNG")
    if args.json and not args.model:
        raise UsageError("--json prints a model's numbers: name a model (the chart is a picture)")
    if args.chart:
        refuse_run_files(args.chart, "--chart")  # not over a run's own curves.png, say
    extra = []
    if args.model:
        model, input_size = build(args)
        report = compute_report(model, input_size)
        print(_json(report, args) if args.json else report.format(args.images, args.epochs))
        if args.images and args.epochs:
            label = f"{args.model} ({args.epochs:g} x {args.images:,})"
            extra.append((label, year_now(), report.run_pfs_days(args.images, args.epochs)))
    for run_dir in args.run:
        record = RunDir(run_dir).record()  # RunDir's words for a folder that is not there or is not a run
        measured = record.compute or {}
        if not isinstance(measured.get("train_flops"), (int, float)):
            raise RunError(f"{record.path / 'compute.json'}: {_no_train_flops(record)}")
        extra.append((record.name, measured.get("year", year_now()), measured["train_flops"] / PFS_DAY))
    if args.chart:
        chart(args.chart, extra)
        print(f"wrote {args.chart}")
    return 0


def _no_train_flops(record) -> str:
    """Why a run gives no training compute: its compute.json is damaged, or not written (training writes it as
    it ends)."""
    if record.compute is not None or "compute.json" in record.problems:
        return record.problems.get("compute.json", "damaged (no train_flops)")
    if (state := record.status()).startswith("finished"):
        return "missing (a run finished by a cnnlab older than compute.json, or the file was removed)"
    return f"not written yet: training writes it as it ends, and this run is {state}"


def _json(report, args) -> str:
    out = {
        "model": report.model,
        "input_size": report.input_size,
        "forward_flops": report.forward_flops,
        "train_flops_per_image": report.train_flops_per_image,
        "layers": [{"name": n, "type": t, "macs": m, "flops": 2 * m} for n, t, m in report.rows if m],
    }
    if args.images and args.epochs:
        out["run_flops"] = report.run_flops(args.images, args.epochs)
        out["run_pfs_days"] = report.run_pfs_days(args.images, args.epochs)
    return json.dumps(out, indent=2)
