"""`trnet export --model RUN --format onnx|torchscript --out FILE`: the inference graph
(`trnet.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="run directory (best.safetensors + config.json) or a .safetensors file"
    )
    p.add_argument("--format", required=True, help="onnx or torchscript")
    p.add_argument("--out", required=True, type=Path, help="output file (written atomically)")


def run(args: argparse.Namespace) -> int:
    from trnet.export import check_format, check_out, export, run_metadata
    from trnet.runs import load_run

    check_format(args.format)
    check_out(args.out, args.model)
    model, config = load_run(args.model)
    delta = export(model, args.format, args.out, run_metadata(config))
    print(f"wrote {args.out} ({args.format}, {model.cfg.name}); check vs PyTorch: max |delta logits| = {delta:.1e}")
    return 0
