"""`trnet bundle RECIPE`: build the bundled model (`trnet.bundle.pipeline`), resumable; then
optionally install it into the package's data and fill the model card's measured sections.

    trnet bundle recipes/pretrained.toml --jobs 2 --threads 1     # every stage; rerun after a kill
    trnet bundle recipes/pretrained.toml --install --card docs/model-card.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet.commands.args import add_device, add_jobs, add_threads, add_workers, refuse_invalid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="bundle recipe TOML (recipes/pretrained.toml)")
    p.add_argument("--work", type=Path, help="work directory (default: the recipe's)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's; fewer for a smoke test)")
    add_workers(p, "the condition stores")
    add_jobs(
        p,
        "train this many groups (the shipped model; each leave-one-corpus-out direction x seed) in "
        "parallel processes, one thread each unless --threads",
    )
    add_threads(p)
    add_device(p)
    p.add_argument("--no-measure", action="store_true", help="skip the RTF / peak-memory measurement")
    p.add_argument(
        "--stores-only",
        action="store_true",
        help="stop after the condition stores (they do not depend on the system; the same command "
        "without this flag then trains)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="then copy the bundle into the package's data, trnet/pretrained/<name>/ (with an editable "
        "install: the checkout's src/trnet/pretrained/, ready to commit)",
    )
    p.add_argument(
        "--card",
        type=Path,
        help="then write the measured sections into this model card (between its markers), e.g. docs/model-card.md",
    )


def run(args: argparse.Namespace) -> int:
    from trnet.bundle import card, pipeline, publish
    from trnet.bundle.recipe import load_bundle_recipe

    refuse_invalid(args)
    recipe = load_bundle_recipe(args.recipe, work=args.work.resolve() if args.work else None, epochs=args.epochs)
    bundle = pipeline.make(
        recipe,
        workers=args.workers,
        jobs=args.jobs,
        device=args.device,
        threads=args.threads,
        measure_inputs=not args.no_measure,
        stores_only=args.stores_only,
    )
    if bundle is None:
        print(f"the stores are built under {recipe.work / 'stores'}; run the command without --stores-only to train")
        return 0
    if args.install:
        print(f"installed {publish.install(bundle)}")
    if args.card:
        card.insert(args.card, (recipe.work / "card" / "results.md").read_text())
        print(f"wrote the measured sections into {args.card}")
    return 0
