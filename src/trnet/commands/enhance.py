"""`trnet enhance`: list the SE back-ends, or enhance audio files into a directory.

    trnet enhance --list
    trnet enhance a.wav b.flac --se dfn3 --out enhanced/
    trnet enhance noisy/*.wav --se cmgan --opt checkpoint=best_ckpt/ckpt --out enhanced/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from trnet import enhance
from trnet.audio import AudioError, load_audio, save_audio
from trnet.enhance.options import parse_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="*", type=Path, metavar="IN", help="audio files (any format/rate; read as 16 kHz mono)"
    )
    p.add_argument("--list", action="store_true", help="list the back-ends and whether they can run here")
    p.add_argument(
        "--se", default=enhance.DEFAULT, choices=sorted(enhance.BACKENDS), help="back-end (default: %(default)s)"
    )
    p.add_argument("--out", type=Path, help="output directory: one 16 kHz 16-bit wav per input, same stem")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="back-end option, e.g. checkpoint=PATH (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in enhance.BACKENDS:
            reason = enhance.unavailable_reason(name)
            default = " (default)" if name == enhance.DEFAULT else ""
            print(f"{name:<10} {'available' if reason is None else 'unavailable: ' + reason}{default}")
        return 0
    if not args.inputs or args.out is None:
        print("trnet enhance: give input files and --out DIR (or --list)", file=sys.stderr)
        return 2
    stems = [p.stem for p in args.inputs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        print(f"trnet enhance: several inputs would write {', '.join(s + '.wav' for s in clashes)}", file=sys.stderr)
        return 2

    try:
        se = enhance.load(args.se, **parse_options(args.opt))
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"trnet enhance: {err}", file=sys.stderr)
        return 2
    print(f"{se.version}", file=sys.stderr)
    failed = 0
    for path in args.inputs:
        try:
            wave = load_audio(path)
        except AudioError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        out = se.enhance(torch.from_numpy(wave)[None])[0].numpy()
        target = args.out / f"{path.stem}.wav"
        save_audio(target, out)
        print(target)
    return 1 if failed else 0
