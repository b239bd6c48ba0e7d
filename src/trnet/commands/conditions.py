"""`trnet conditions`: build (or resume) a condition store from manifests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from trnet.commands.args import add_opt, add_workers, refuse_invalid
from trnet.options import parse_items
from trnet.utils import UserError

if TYPE_CHECKING:
    from trnet.store import BuildSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, required=True, help="utterance manifest CSV (trnet prepare)")
    p.add_argument(
        "--noise", action="append", default=[], metavar="NAME=MANIFEST", help="noise corpus manifest; repeat"
    )
    p.add_argument("--se", help="speech-enhancement back-end (default: the one `trnet enhance --list` marks)")
    add_opt(p, "SE back-end option, e.g. checkpoint=PATH for cmgan (repeatable; trnet enhance --list)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--snrs", help="comma-separated SNRs in dB, each in -20..60 and once (default: the paper's five, 20 to 0 dB)"
    )
    add_workers(p)
    p.add_argument("--keep-audio", action="store_true", help="also write the enhanced waveforms (to listen to)")
    p.add_argument("--out", type=Path, required=True, help="store directory")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="the store at --out has other settings: remove its files (nothing else) and build anew",
    )


def parse_noise(items: list[str]) -> dict[str, Path]:
    from trnet.corpora import read_manifest
    from trnet.store.layout import check_noise_name

    noise: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--noise expects NAME=MANIFEST, got {item!r}")
        check_noise_name(name)
        if name in noise:
            raise UserError(
                f"--noise {name} is given twice ({noise[name]} and {path}); give each noise corpus a name of its own"
            )
        if not Path(path).is_file():
            raise UserError(f"--noise {name}: no manifest at {path} (run `trnet prepare` first)")
        read_manifest(path, "noise")  # an utterance manifest here is a one-line error, not a KeyError later
        noise[name] = Path(path).resolve()
    return noise


def parse_snrs(text: str) -> tuple[int, ...]:
    from trnet.store.layout import check_snrs

    try:
        snrs = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--snrs: expected comma-separated integers in dB (e.g. 20,10,0), got {text!r}") from None
    return check_snrs(snrs, "--snrs")


def spec_from_args(args: argparse.Namespace) -> BuildSpec:
    from trnet import enhance
    from trnet.store import SNRS, BuildSpec

    if not args.corpus.is_file():
        raise UserError(f"--corpus: no manifest at {args.corpus} (run `trnet prepare` first)")
    se = enhance.spec(args.se or enhance.DEFAULT, parse_items(args.opt))  # checked here, before any work
    return BuildSpec(
        corpus=args.corpus.resolve(),
        noise=parse_noise(args.noise),
        se=se,
        seed=args.seed,
        snrs=SNRS if args.snrs is None else parse_snrs(args.snrs),
        keep_audio=args.keep_audio,
    )  # build() checks it before anything is written (check_spec)


def run(args: argparse.Namespace) -> int:
    from trnet.store import build, print_summary

    refuse_invalid(args)
    root = build(spec_from_args(args), args.out, workers=args.workers, rebuild=args.rebuild)
    print_summary(root)
    return 0
