"""The ``featdistill`` command line: the parser, the small commands, and the error handling of all of them.

Errors end with one line ``featdistill: error: ...`` and exit code 2 (no traceback unless ``--debug``);
warnings print as one line ``featdistill: warning: ...`` (:mod:`.messages`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..version import __version__
from . import config as config_command
from . import data as data_command
from . import layers as layers_command
from . import models as models_command
from . import predict as predict_command
from . import sweep as sweep_command
from .arguments import add_command, add_config_args
from .messages import exporter_warnings, one_line_warnings

_DEBUG_HELP = "show the full traceback on errors"


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: accepts --debug after the subcommand too, prints its example epilog as written."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: when absent here, the value given before the subcommand (or False) is kept
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featdistill",
        description="Feature distillation for vision models: train, evaluate and export distilled students.",
        epilog="Run featdistill COMMAND --help for the options and an example of each command.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"featdistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)

    about = "Train a student, distilled when model.teacher is set."
    train = add_command(sub, "train", about, "CONFIG.yaml --set train.epochs=1 --set output.dir=runs/try")
    add_config_args(train)
    train.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a checkpoint; 'auto' = <output.dir>/last.pt if it exists",
    )

    from_card = "default: the checkpoint's own; given, its preprocessing must match the checkpoint's"
    about = "Evaluate a trained student on the validation split (never reads the training split)."
    evaluate = add_command(sub, "eval", about, "--checkpoint runs/try/last.pt")
    add_config_args(evaluate, optional_config=from_card)
    evaluate.add_argument("--checkpoint", required=True, help="training checkpoint or student state_dict")

    about = (
        "Export the plain student, without teacher or transforms: torch.export, TorchScript, ONNX or weights."
    )
    export = add_command(sub, "export", about, "--checkpoint runs/try/last.pt --output student.pt2")
    add_config_args(export, optional_config=from_card)
    export.add_argument("--checkpoint", required=True, help="training checkpoint or student state_dict")
    export.add_argument(
        "--format",
        choices=["export", "torchscript", "onnx", "state_dict", "safetensors", "hf"],
        help="default: export (a torch.export program, .pt2), torchscript for detectors; "
        "hf: a save_pretrained folder of an hf: student, with its image processor",
    )
    export.add_argument(
        "--output",
        required=True,
        help="file to write; its sidecar <output>.json and model card <output>.md beside it",
    )
    export.add_argument(
        "--include-preprocessing",
        action="store_true",
        help="bake the normalisation into the model: it takes uint8 NCHW pixels (default: normalised floats)",
    )

    sweep_command.add_parser(sub)
    sweep_command.add_compare_parser(sub)
    data_command.add_parser(sub)
    layers_command.add_parser(sub)
    predict_command.add_parser(sub)

    about = "Run the offline demo: teacher, plain student and CWT student on generated data."
    demo = add_command(sub, "demo", about, "--data ../shared/data/cifar10 --out runs/demo_cifar10")
    demo.add_argument("--data", help="run on real data instead: an ImageFolder root or a torchvision root")
    demo.add_argument("--dataset", default=None, help="with --data: imagefolder, cifar10, fashionmnist, ...")
    demo.add_argument("--out", default="runs/demo", help="output folder (table, plot, logs)")
    demo.add_argument("--epochs", type=int, default=None, help="epochs per model (default: sized for ~5 min)")

    about = "Print the complete config as YAML: every key, its value and what it does."
    config = add_command(
        sub,
        "config",
        about,
        "--task detection > detection.yaml",
        "Without CONFIG, the starter config of a task. The output is a valid config.",
    )
    config_command.add_arguments(config)

    about = "List the model names each task accepts for model.student and model.teacher."
    models = add_command(sub, "models", about, "--task classification | grep resnet")
    models_command.add_arguments(models)
    return parser


def _train(args: argparse.Namespace) -> None:
    from ..config import load_config
    from ..engine.distributed import cleanup, is_main
    from ..engine.run_lock import run_lock
    from ..run import build_trainer
    from ..tasks.ingest import announce_data

    cfg = load_config(args.config, args.overrides)
    with run_lock(cfg.output.dir):  # one run per folder; under torchrun rank 0 holds it for all ranks
        try:
            trainer = build_trainer(cfg)  # joins the process group when started by torchrun
            resume = args.resume
            if resume == "auto":
                last = Path(cfg.output.dir) / "last.pt"
                resume = last if last.is_file() else None
            announce_data(trainer.task, cfg.output.dir, resuming=resume is not None)
            metrics = trainer.fit(resume=resume)
            if is_main():
                print(json.dumps({"output": cfg.output.dir, **metrics}))
        finally:
            cleanup()


def _load_student(args: argparse.Namespace):
    """``(task, student, card)`` of ``--checkpoint``; the config (optional) and ``--set`` adjust the data side."""
    from ..config import load_config
    from ..predict.student import load_student

    if args.config is None:
        return load_student(args.checkpoint, overrides=args.overrides)
    return load_student(args.checkpoint, load_config(args.config, args.overrides))


def _eval(args: argparse.Namespace) -> None:
    from ..run import select_device
    from ..tasks.ingest import announce_data

    task, student, card = _load_student(args)
    device = select_device(task.cfg.device)
    if card["preprocessing"]["mean"] is None:  # an older checkpoint whose config has no mean/std: as before
        _, val_loader = task.build_loaders()
    else:
        val_loader = task.build_eval_loader()  # the evaluation split alone
    announce_data(task, stream=sys.stderr)  # stdout stays one JSON line
    metrics = task.evaluate(student.to(device), val_loader, device)
    print(json.dumps(metrics))


def _export(args: argparse.Namespace) -> None:
    import torch

    from ..export import default_format, export_student

    task, student, card = _load_student(args)
    if args.format == "hf":
        from ..hf_export import save_hf

        print(f"wrote hf to {save_hf(student, card, args.output)} (transformers save_pretrained folder)")
        return
    example = task.export_example()
    if card["source"] == "config" and isinstance(
        example, torch.Tensor
    ):  # an older checkpoint: the size as read
        card["preprocessing"]["input_size"] = list(example.shape[-2:])
    fmt = args.format or default_format(example)
    with exporter_warnings(args.debug):
        path = export_student(
            student, fmt, args.output, example, card=card, include_preprocessing=args.include_preprocessing
        )
    print(f"wrote {fmt} to {path} (sidecar {path.name}.json, model card {path.name}.md)")


def _demo(args: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(out_dir=args.out, data=args.data, dataset=args.dataset, epochs=args.epochs)


COMMANDS = {
    "train": _train,
    "eval": _eval,
    "export": _export,
    "sweep": sweep_command.run,
    "compare": sweep_command.run_compare,
    "layers": layers_command.run,
    "demo": _demo,
    "config": config_command.run,
    "models": models_command.run,
    "data": data_command.run,
    "predict": predict_command.run,
}


def _one_line(err: BaseException) -> str:
    """The first line of an error; for an error re-raised from a DataLoader worker, the worker's own."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings(args.debug):
            COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("featdistill: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(
            f"featdistill: error: {_one_line(err)} ({type(err).__name__}; --debug for the traceback)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
