"""`trnet enhance`: list the SE back-ends and their options, or enhance audio files into a directory.

trnet enhance --list
trnet enhance a.wav b.flac --se dfn3 --out enhanced/
trnet enhance noisy/*.wav --se cmgan --opt checkpoint=best_ckpt/ckpt --out enhanced/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trnet.commands.args import add_opt, refuse_invalid
from trnet.options import parse_items
from trnet.utils import UserError, check_folder_path, printable


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="*", type=Path, metavar="IN", help="audio files (any format/rate; read as 16 kHz mono)"
    )
    p.add_argument("--list", action="store_true", help="list the back-ends, whether they can run here, their options")
    p.add_argument("--se", help="back-end (default: the one --list marks as default)")
    p.add_argument("--out", type=Path, help="output directory: one 16 kHz 16-bit wav per input, same stem")
    add_opt(p, "back-end option, e.g. checkpoint=PATH (repeatable; --list shows each back-end's)")


def run(args: argparse.Namespace) -> int:
    import torch

    from trnet import enhance
    from trnet.audio import AudioError, load_audio, save_audio

    refuse_invalid(args)
    if args.list:
        for name in enhance.BACKENDS:
            reason = enhance.unavailable_reason(name)
            default = " (default)" if name == enhance.DEFAULT else ""
            print(f"{name:<10} {'available' if reason is None else 'unavailable: ' + reason}{default}")
            if reason is None:
                print(f"{'':<10} options: {enhance.describe_options(name)}")
        return 0
    if not args.inputs or args.out is None:
        raise UserError("give input files and --out DIR (or --list)")
    stems = [p.stem for p in args.inputs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise UserError(f"several inputs would write {', '.join(s + '.wav' for s in clashes)}")
    check_targets(args.inputs, args.out)
    se = enhance.load(args.se or enhance.DEFAULT, **parse_items(args.opt))
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
        dest = target(path, args.out)
        save_audio(dest, out)
        print(dest)
    return 1 if failed else 0


def target(path: Path, out: Path) -> Path:
    return out / f"{path.stem}.wav"


def check_targets(inputs: list[Path], out: Path) -> None:
    """UserError, before anything is written, if an output would overwrite an input (the same
    file, also through a link or another spelling of the folder): `--out` holding the
    recordings must never destroy them."""
    check_folder_path(out, "--out")
    for path in inputs:
        for other in inputs:
            dest = target(other, out)
            if _same_file(path, dest):
                raise UserError(
                    f"--out {printable(out)}: the output {printable(dest)} would overwrite the input "
                    f"{printable(path)}; write to another folder"
                )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)
