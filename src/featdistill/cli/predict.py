"""``featdistill predict``: a student (checkpoint or export) on image files, folders and globs."""

from __future__ import annotations

import argparse
import json

from .arguments import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``predict`` on the CLI's subparsers."""
    predict = add_command(
        sub,
        "predict",
        "Run a student on images: class CSV, label PNGs or COCO-results JSON.",
        "runs/try/last.pt photos/ 'more/**/*.png' --top-k 3 --output predictions.csv",
        "The checkpoint (last.pt) or export (.pt2, TorchScript, ONNX, with its sidecar <file>.json) says the "
        "task, classes and preprocessing; no config or training data is read. Images are decoded as training "
        "decodes them. Prints a JSON report (images, bad files, throughput; top1 when the images sit in "
        "folders named after the classes).",
    )
    predict.add_argument(
        "model", metavar="CHECKPOINT_OR_EXPORT", help="last.pt, or an exported .pt2/.onnx/..."
    )
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive), globs")
    predict.add_argument(
        "--output",
        help="classification: CSV file (predictions.csv); segmentation: folder (predictions/); "
        "detection: COCO results JSON (predictions.json)",
    )
    predict.add_argument("--batch-size", type=int, default=32, help="images per model call (32)")
    predict.add_argument(
        "--top-k", type=int, default=5, help="classification: classes per image in the CSV (5)"
    )
    predict.add_argument(
        "--on-bad-file",
        choices=["raise", "skip"],
        default="raise",
        help="an undecodable image stops the run (raise) or is left out and counted (skip)",
    )
    predict.add_argument(
        "--overlay", action="store_true", help="segmentation: also write colour overlays to OUTPUT/overlays/"
    )
    predict.add_argument(
        "--draw",
        action="store_true",
        help="detection: also write the images with boxes to <OUTPUT stem>_drawn/",
    )
    predict.add_argument(
        "--draw-threshold", type=float, default=0.5, help="detection: lowest score drawn by --draw (0.5)"
    )
    predict.add_argument(
        "--device", default="auto", help="checkpoints: auto, cpu, cuda or cuda:N (exports: cpu)"
    )
    predict.add_argument(
        "--keep-size",
        action="store_true",
        help="run images of another size than the student's at their own size (default: resized as the "
        "card says, with one warning)",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    from ..predict.predictor import predict

    report = predict(
        args.model,
        args.inputs,
        args.output,
        batch_size=args.batch_size,
        top_k=args.top_k,
        on_bad_file=args.on_bad_file,
        overlay=args.overlay,
        draw=args.draw,
        draw_threshold=args.draw_threshold,
        device=args.device,
        progress=not args.no_progress,
        keep_size=args.keep_size,
    )
    print(json.dumps(report))
