"""`trnet demo`: the whole pipeline on a built-in corpus, in minutes, with no data given
(the recipe is `trnet.experiments.demo`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trnet.commands.args import add_device, add_threads, add_workers, refuse_invalid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("trnet-demo"), help="work directory (default ./trnet-demo)")
    p.add_argument("--emodb", type=Path, help="an EmoDB release (ROOT/wav/*.wav) to use instead of synthetic speech")
    p.add_argument("--quick", action="store_true", help="a much smaller variant (about a minute), for tests")
    p.add_argument("--se", help="SE back-end (default: dfn3 if usable here, else spectral)")
    add_workers(p)
    add_threads(p, 1, "torch CPU threads for training (default 1: robust when other jobs share the cores)")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local processes (default), or Ray tasks (pip install 'trnet[ray]')",
    )
    p.add_argument("--address", help="ray: a running cluster to join ('auto'); default: a local Ray of --workers CPUs")
    add_device(p, "cpu", "torch device for training and evaluation: cpu (default), cuda or cuda:N")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no line per training epoch (the default prints one, with the validation UAR)",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.device import torch_device
    from trnet.experiments.demo import default_se, demo_table
    from trnet.experiments.recipe import recipe_from_dict, with_overrides
    from trnet.experiments.reproduce import reproduce

    refuse_invalid(args)
    started = time.time()
    device = torch_device(args.device)
    out = args.out.resolve()
    table = demo_table(args.emodb, args.quick, args.se or default_se())
    recipe = recipe_from_dict(table, base=out, origin=f"built-in {table['name']} recipe (trnet.experiments.demo)")
    recipe = with_overrides(recipe, engine=args.engine, address=args.address)
    results = reproduce(recipe, workers=args.workers, device=device, threads=args.threads, verbose=not args.quiet)
    example = next(iter(sorted((recipe.work / "runs").glob("**/trnet/fold*-seed*/done.json"))), None)
    print(
        f"\nthe trained models (a run directory per system, fold and seed) are under {recipe.work / 'runs'}"
        + (f"; e.g. trnet predict FILES --model {example.parent}" if example else "")
    )
    print(f"demo finished in {time.time() - started:.0f} s; the report is {results / 'report.md'}")
    return 0
