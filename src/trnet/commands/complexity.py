"""`trnet complexity`: parameters and MACs of every system, paper Table 2
(`trnet.evaluation.complexity`)."""

from __future__ import annotations

import argparse
import json

ENCODERS = ("resnet", "cnn6")  # trnet.models.encoder.ENCODERS, named here so that --help needs no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--encoder", choices=ENCODERS, default="resnet", help="acoustic encoder (default: resnet)"
    )
    parser.add_argument("--width", type=int, default=32, help="channels of the first block (default: 32)")


def run(args: argparse.Namespace) -> int:
    from trnet.evaluation.complexity import complexity_table, format_table

    rows = complexity_table(args.encoder, args.width)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, args.encoder, args.width))
    return 0
