"""`trnet complexity`: parameters and MACs of every system, paper Table 2
(`trnet.evaluation.complexity`)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--encoder", default="resnet", help="acoustic encoder: resnet (default) or cnn6")
    parser.add_argument("--width", type=int, help="channels of the first block (default: the paper's, 32)")


def run(args: argparse.Namespace) -> int:
    from trnet.evaluation.complexity import complexity_table, format_table
    from trnet.models import PAPER_WIDTH

    width = PAPER_WIDTH if args.width is None else args.width
    rows = complexity_table(args.encoder, width)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, args.encoder, width))
    return 0
