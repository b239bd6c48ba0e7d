"""`trnet export [--model RUN] --format onnx|torchscript --out FILE`: the inference graph
(`trnet.export`); without --model, of the model bundled with trnet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("onnx", "torchscript")  # trnet.export.FORMATS, named here so that --help needs no torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", help="run directory (best.safetensors + config.json), a .safetensors file, or a bundled model's "
                        "name (default: the model bundled with trnet, see `trnet models`)"
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="output file (written atomically)")


def run(args: argparse.Namespace) -> int:
    from trnet.export import check_out, export, run_metadata
    from trnet.pretrained import resolve
    from trnet.runs import load_run
    from trnet.utils import UserError

    path = resolve(args.model)  # without --model: the bundled model, checked against its SHA-256
    check_out(args.out, path)
    try:
        model, config = load_run(path)
    except UserError as e:
        print(f"trnet export: cannot load model: {e}", file=sys.stderr)
        return 2
    try:
        delta = export(model, args.format, args.out, run_metadata(config))
    except ImportError as e:
        print(f"trnet export: {e}; install the export extras: pip install 'trnet[export]'", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:
        print(f"trnet export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.format}, {model.cfg.name}); check vs PyTorch: max |delta logits| = {delta:.1e}")
    return 0
