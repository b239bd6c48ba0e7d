"""`trnet prepare CORPUS --root DIR --out DIR`: scan a corpus, write `OUT/<name>.csv`, print
what was kept and what was set aside. A bad root or layout is one line on stderr and exit
code 2, and no manifest is written."""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

from trnet.audio import AudioError
from trnet.corpora.manifest import LABELS, CorpusError, LoadResult, natural_key, write_manifest
from trnet.corpora.registry import LOADERS, load
from trnet.utils import UserError, safe_component

CORPORA = tuple(LOADERS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", choices=CORPORA, help="which loader to run")
    parser.add_argument("--root", type=Path, required=True,
                        help="corpus root (for synthetic: the folder to generate the corpus in)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifest OUT/<name>.csv")
    parser.add_argument("--name", help="manifest name (default: the corpus name)")
    parser.add_argument("--csv", type=Path, help="folder: the labels CSV (default ROOT/labels.csv)")
    parser.add_argument("--labels", help="folder: comma-separated class set (default: " + ",".join(LABELS) + ")")
    parser.add_argument("--subsets", default="free-sound",
                        help="musan: comma-separated noise/ sub-folders (default free-sound, as the paper)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: generation seed")


def load_corpus(args: argparse.Namespace) -> dict[str, LoadResult]:
    """Run the chosen loader; name -> result (synthetic gives its utterances and its noise)."""
    name = args.name or args.corpus
    try:  # it becomes the file name OUT/<name>.csv
        safe_component(name, "--name")
    except UserError as err:
        raise CorpusError(str(err)) from None
    if args.corpus != "synthetic" and not args.root.exists():
        raise CorpusError(f"{args.root}: no such directory (--root must be the {args.corpus} corpus root)")
    options: dict = {}
    if args.corpus == "folder":
        options = {"csv": args.csv, "labels": [x for x in args.labels.split(",") if x.strip()] if args.labels else None}
    elif args.corpus == "musan":
        options = {"subsets": [s.strip() for s in args.subsets.split(",") if s.strip()]}
    elif args.corpus == "synthetic":
        options = {"seed": args.seed}
    role = LOADERS[args.corpus].roles[0]
    results = {name: load(args.corpus, args.root, role, **options)}
    if args.corpus == "synthetic":
        results[f"{name}_noise"] = load(args.corpus, args.root, "noise", **options)
    return results


def summary(name: str, result: LoadResult) -> str:
    """A plain-text table: utterances per class x session, or noise clips per category."""
    rows = result.rows
    lines: list[str] = []
    if result.kind == "utterances":
        classes = [c for c in LABELS if any(r["label"] == c for r in rows)]
        classes += sorted({r["label"] for r in rows} - set(classes))
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        speakers: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            counts[r["session"]][r["label"]] += 1
            speakers[r["session"]].add(r["speaker"])
        n_spk = len({r["speaker"] for r in rows})
        lines.append(f"{name}: {len(rows)} utterances, {n_spk} speakers, {len(counts)} sessions")
        lines.append(f"{'session':<10}{'speakers':<14}" + "".join(f"{c:>9}" for c in classes) + f"{'total':>9}")
        for s in sorted(counts, key=natural_key):
            lines.append(f"{s:<10}{','.join(sorted(speakers[s])):<14}"
                         + "".join(f"{counts[s][c]:>9}" for c in classes) + f"{sum(counts[s].values()):>9}")
        totals = Counter(r["label"] for r in rows)
        lines.append(f"{'total':<24}" + "".join(f"{totals[c]:>9}" for c in classes) + f"{len(rows):>9}")
    else:
        clips: Counter[str] = Counter(r["category"] for r in rows)
        sources: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            sources[r["category"]].add(r["source"])
        n_src = len({r["source"] for r in rows})
        lines.append(f"{name}: {len(rows)} clips from {n_src} source recordings, {len(clips)} "
                     + ("category" if len(clips) == 1 else "categories"))
        width = max(12, *(len(c) + 2 for c in clips))
        lines.append(f"{'category':<{width}}{'clips':>7}{'sources':>9}")
        for c in sorted(clips):
            lines.append(f"{c:<{width}}{clips[c]:>7}{len(sources[c]):>9}")
        lines.append(f"{'total':<{width}}{len(rows):>7}{n_src:>9}")
    if result.set_aside:
        lines.append("set aside: " + ", ".join(f"{k} {v}" for k, v in result.set_aside.items())
                     + f" ({sum(result.set_aside.values())} in all)")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        results = load_corpus(args)
        for name, result in results.items():
            write_manifest(args.out / f"{name}.csv", result.rows, result.kind)
    except (CorpusError, AudioError, OSError) as err:  # OSError: e.g. --out is not a writable folder
        print(f"trnet prepare: error: {err}", file=sys.stderr)
        return 2
    for name, result in results.items():
        print(summary(name, result))
        print(f"wrote {(args.out / f'{name}.csv').resolve()}\n")
    return 0
