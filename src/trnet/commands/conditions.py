"""`trnet conditions`: build (or resume) a condition store from manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet.store.builder import BuildSpec, build, print_summary
from trnet.store.layout import SNRS, StoreError
from trnet.utils import free_cores


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, required=True, help="utterance manifest CSV (trnet prepare)")
    p.add_argument(
        "--noise", action="append", default=[], metavar="NAME=MANIFEST", help="noise corpus manifest; repeat"
    )
    p.add_argument("--se", default="dfn3", help="speech-enhancement back-end (trnet enhance --list)")
    p.add_argument("--se-checkpoint", type=Path, help="checkpoint for back-ends that need one (cmgan)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--snrs", default=",".join(map(str, SNRS)), help="comma-separated SNRs in dB")
    p.add_argument("--workers", type=int, default=free_cores(),
                   help="worker processes (default: the free cores, %(default)s now)")
    p.add_argument("--keep-audio", action="store_true", help="also write the enhanced waveforms (to listen to)")
    p.add_argument("--out", type=Path, required=True, help="store directory")
    p.add_argument("--rebuild", action="store_true",
                   help="the store at --out has other settings: remove its files (nothing else) and build anew")


def parse_noise(items: list[str]) -> dict[str, Path]:
    noise = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise StoreError(f"--noise expects NAME=MANIFEST, got {item!r}")
        if not Path(path).is_file():
            raise StoreError(f"--noise {name}: no manifest at {path} (run `trnet prepare` first)")
        noise[name] = Path(path).resolve()
    return noise


def parse_snrs(text: str) -> tuple[int, ...]:
    try:
        snrs = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise StoreError(f"--snrs: expected comma-separated integers in dB (e.g. 20,10,0), got {text!r}") from None
    if len(set(snrs)) != len(snrs):
        raise StoreError(f"--snrs: each SNR once, got {text!r}")
    return snrs


def spec_from_args(args: argparse.Namespace) -> BuildSpec:
    if not args.corpus.is_file():
        raise StoreError(f"--corpus: no manifest at {args.corpus} (run `trnet prepare` first)")
    if args.workers < 1:
        raise StoreError(f"--workers: expected at least 1, got {args.workers}")
    options = {"checkpoint": str(args.se_checkpoint)} if args.se_checkpoint else {}
    return BuildSpec(
        corpus=args.corpus.resolve(),
        noise=parse_noise(args.noise),
        se=args.se,
        se_options=options,
        seed=args.seed,
        snrs=parse_snrs(args.snrs),
        keep_audio=args.keep_audio,
    )


def run(args: argparse.Namespace) -> int:
    root = build(spec_from_args(args), args.out, workers=args.workers, rebuild=args.rebuild)
    print_summary(root)
    return 0
