"""`trnet report RESULTS_DIR`: the tables and figures of a results directory
(`trnet.report.markdown`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet.utils import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, help="results directory (WORK/results of `trnet reproduce`)")
    p.add_argument("--out", type=Path, help="where to write report.md and the figures (default: RESULTS)")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="TAG=RESULTS",
        help="add another results directory's runs as systems <system>@TAG (repeatable)",
    )
    p.add_argument(
        "--more",
        action="append",
        default=[],
        type=Path,
        metavar="RESULTS",
        help="add another results directory's runs of the same study under their own names, e.g. the seeds "
        "a seed rule added to some systems (repeatable; needs --out)",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.report.aliases import check_tag
    from trnet.report.markdown import make_report

    also = {}
    for item in args.also:
        tag, sep, path = item.partition("=")
        if not sep or not path:
            raise UserError(f"--also {item!r}: expected TAG=RESULTS_DIR")
        if check_tag(tag, "--also") in also:
            raise UserError(f"--also: tag {tag!r} given twice ({also[tag]} and {path}); give each its own tag")
        also[tag] = Path(path)
    print(f"report: {make_report(args.results, args.out, also, args.more)}")
    return 0
