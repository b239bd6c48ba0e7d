"""`trnet export --model RUN --format onnx|torchscript --out FILE`: the inference graph
(`trnet.export`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("onnx", "torchscript")  # trnet.export.FORMATS, named here so that --help needs no torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="run directory (best.safetensors + config.json) or a .safetensors file"
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="output file (written atomically)")


def run(args: argparse.Namespace) -> int:
    from trnet.export import check_out, export, run_metadata
    from trnet.runs import load_run
    from trnet.utils import UserError

    check_out(args.out, args.model)
    try:
        model, config = load_run(args.model)
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
