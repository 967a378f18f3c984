"""cnnlab explain RUN_DIR IMAGE...: where the network looks for its answer (Grad-CAM and occlusion overlays)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import atomic_write_bytes
from ..errors import UsageError
from ..rundir import RunDir
from ._types import add_weights_argument, refuse_output_over_input

NAME = "explain"
HELP = "where the network looks: Grad-CAM and occlusion maps over image files"


def method_list(text: str) -> tuple[str, ...]:
    """'gradcam,occlusion' -> ('gradcam', 'occlusion'); the library names an unknown one."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument(
        "-o",
        "--output",
        default="explain.png",
        metavar="FILE.png|FOLDER",
        help="one picture with a row per image (FILE.png, default explain.png), or a FOLDER with NAME-explain.png "
        "per image",
    )
    parser.add_argument("--method", type=method_list, help="gradcam, occlusion, or both (default: gradcam,occlusion)")
    parser.add_argument("--class", dest="target", metavar="CLASS", help="explain this class (default: the prediction)")
    parser.add_argument("--layer", help="Grad-CAM's layer (default: the last convolution block's output)")
    add_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..explain import METHODS, check_methods, explain_files, plot_explanations, png_bytes
    from ..inference import load_run

    output = Path(args.output)
    to_folder = output.suffix.lower() != ".png"
    if to_folder and output.suffix:
        raise UsageError(f"-o {output}: give a FILE.png or a FOLDER")
    chosen = args.method or METHODS
    check_methods(chosen)  # before the run is loaded
    if args.layer and "gradcam" not in chosen:
        raise UsageError(f"--layer picks Grad-CAM's layer; --method {','.join(chosen)} does not use it")
    refuse_output_over_input(output, args.images)
    run = RunDir(args.run_dir)
    if to_folder:  # one picture per image, named by its stem: two images of one stem would share a file
        image_of: dict[Path, str] = {}
        for path in args.images:
            picture = output / f"{Path(path).stem}-explain.png"
            if image_of.setdefault(picture, path) != path:
                raise UsageError(f"{image_of[picture]} and {path} would both be written to {picture}")
            if output.is_dir():  # a folder made now holds nothing of the run's
                run.check_output(picture)
    else:
        run.check_output(output)  # not over the run's own files
    model, info = load_run(args.run_dir, args.weights)
    explanations = explain_files(model, info, args.images, chosen, args.target, args.layer)
    names = [Path(p).name for p in args.images]
    if not to_folder:
        atomic_write_bytes(output, png_bytes(plot_explanations(explanations, info["classes"], names=names)))
        print(f"wrote {output}")
        return 0
    output.mkdir(parents=True, exist_ok=True)
    for path, explanation, name in zip(args.images, explanations, names):
        picture = output / f"{Path(path).stem}-explain.png"
        atomic_write_bytes(picture, png_bytes(plot_explanations([explanation], info["classes"], names=[name])))
        print(f"wrote {picture}")
    return 0
