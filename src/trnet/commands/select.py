"""`trnet select SOURCE... --alias NAME --out FILE`: pool the validation UARs of one or more
studies and name the chosen system by an alias (`trnet.report.aliases`).

    trnet select docs/emodb-refinement/runs.csv atten20=docs/emodb-refinement/runs-atten20.csv \\
        --alias trnet-robust --out src/trnet/configs/selection.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        metavar="[TAG=]SOURCE",
        help="a results directory, its selection.json (written by trnet report) or its runs.csv; "
        "TAG=SOURCE: a study at another SE setting, its systems named <system>@TAG",
    )
    p.add_argument(
        "--among",
        choices=("candidates", "all"),
        default="candidates",
        help="who competes: TRNet and its variants (candidate = true in their configs; the default), or "
        "every system trained in noise, Baseline-e included (a recommendation for noise that must beat it)",
    )
    p.add_argument(
        "--seeds",
        help="comma-separated seeds: only their runs count (the seeds every system ran, when a seed rule "
        "added seeds to some systems only); 'all' or absent: every seed",
    )
    p.add_argument("--alias", required=True, help="the name to give the chosen system, e.g. trnet-robust")
    p.add_argument(
        "--out",
        type=Path,
        help="selection file to write the alias into (other aliases kept); default: print it. The "
        "package's file, which `trnet train --config ALIAS` and recipes read, is "
        "src/trnet/configs/selection.json",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.experiments.recipe_values import parse_int_list
    from trnet.report.aliases import select, write_selection

    seeds = None if args.seeds is None else parse_int_list(args.seeds, "seeds")  # "all": every seed
    entry = select(args.sources, args.alias, args.among, None if seeds is None else list(seeds))
    if args.out is None:
        print(json.dumps({args.alias: entry}, indent=2))
        return 0
    write_selection(args.out, args.alias, entry)
    means = ", ".join(f"{s} {v['mean']:.4f} (n={v['runs']})" for s, v in entry["validation_uar"].items())
    print(f"{args.alias} = {entry['system']} (validation UAR: {means}) -> {args.out}")
    return 0
