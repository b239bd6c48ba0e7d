"""`trnet prepare CORPUS --root DIR --out DIR`: scan a corpus, write `OUT/<name>.csv`, print
what was kept and what was set aside. A bad root or layout is one line on stderr and exit
code 2, and no manifest is written."""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet.commands.args import add_opt, refuse_invalid
from trnet.corpora.manifest import CorpusError, LoadResult, write_manifest
from trnet.corpora.registry import LOADERS, load
from trnet.corpora.summary import summary
from trnet.options import parse_items
from trnet.utils import safe_component

CORPORA = tuple(LOADERS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", choices=CORPORA, help="which loader to run")
    parser.add_argument(
        "--root", type=Path, required=True, help="corpus root (for synthetic: the folder to generate the corpus in)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifest OUT/<name>.csv")
    parser.add_argument("--name", help="manifest name (default: the corpus name)")
    add_opt(
        parser,
        "loader option (repeatable): folder csv=PATH labels=a,b,...; musan subsets=a,b; "
        "synthetic seed=N n_speakers=N utts_per_class=N duration=MIN,MAX",
    )


def load_corpus(args: argparse.Namespace) -> dict[str, LoadResult]:
    """Run the chosen loader; name -> result (synthetic gives its utterances and its noise)."""
    name = safe_component(args.name or args.corpus, "--name")  # it becomes the file name OUT/<name>.csv
    if args.corpus != "synthetic" and not args.root.exists():
        raise CorpusError(f"{args.root}: no such directory (--root must be the {args.corpus} corpus root)")
    options = parse_items(args.opt)
    role = LOADERS[args.corpus].roles[0]
    results = {name: load(args.corpus, args.root, role, **options)}
    if args.corpus == "synthetic":
        results[f"{name}_noise"] = load(args.corpus, args.root, "noise", **options)
    return results


def run(args: argparse.Namespace) -> int:
    refuse_invalid(args)
    results = load_corpus(args)
    for name, result in results.items():
        write_manifest(args.out / f"{name}.csv", result.rows, result.kind)
    for name, result in results.items():
        print(summary(name, result))
        print(f"wrote {(args.out / f'{name}.csv').resolve()}\n")
    return 0
