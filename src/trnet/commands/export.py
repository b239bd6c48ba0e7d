"""`trnet export [--model RUN] --format onnx|torchscript --out FILE`: the inference graph
(`trnet.export`); without --model, of the model bundled with trnet."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="run directory (best.safetensors + config.json), a .safetensors file, or a bundled model's "
        "name (default: the model bundled with trnet, see `trnet models`)",
    )
    p.add_argument("--format", required=True, help="onnx or torchscript")
    p.add_argument(
        "--out",
        required=True,
        help="output file (written atomically); FOLDER/ (with the slash) writes FOLDER/<model>.onnx|.pt",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out that is not a trnet export")
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="with --format onnx: the whole of trnet predict in one file, waveform in (16 kHz), "
        "per-window probabilities, c and speech out (docs/deploy.md)",
    )
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="export a run that has not finished training (no done.json): its last checkpoint",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.export import check_format, check_out, export, out_file, run_metadata
    from trnet.pretrained import resolve
    from trnet.runs import load_run

    check_format(args.format)
    path = resolve(args.model)  # no --model: the bundled model, checked against its SHA-256
    args.out = out_file(args.out, args.format, path)
    check_out(args.out, path, force=args.force)
    model, config = load_run(path, allow_unfinished=args.allow_unfinished)
    if "unfinished" in config:
        print(
            f"trnet export: warning: {path} is not a finished run: exporting its last checkpoint "
            f"({config['unfinished']['checkpoint']}, epoch {config['unfinished']['epoch']})",
            file=sys.stderr,
        )
    if args.pipeline:
        return _pipeline(args, model, config)
    delta = export(model, args.format, args.out, run_metadata(config))
    print(f"wrote {args.out} ({args.format}, {model.cfg.name}); check vs PyTorch: max |delta logits| = {delta:.1e}")
    return 0


def _pipeline(args: argparse.Namespace, model: object, config: dict) -> int:
    """`--pipeline`: trnet.pipeline's one-file graph of `trnet predict`."""
    from trnet.enhance import Spec
    from trnet.export import run_metadata
    from trnet.pipeline.export import export_pipeline
    from trnet.utils import UserError

    if args.format != "onnx":
        raise UserError(f"--pipeline is an ONNX graph: use --format onnx, not {args.format!r}")
    se = Spec.from_fields(config)
    if se not in (Spec("dfn3"), None):
        raise UserError(
            f"--pipeline holds DFN3 with its default options; this run was trained with SE "
            f"{se.name!r} {se.options or ''}: export the model alone (without --pipeline)"
        )
    delta = export_pipeline(model, config, args.out, run_metadata(config))
    print(f"wrote {args.out} (onnx pipeline, {model.cfg.name}); check vs PyTorch: max |delta| = {delta:.1e}")
    return 0
