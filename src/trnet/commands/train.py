"""`trnet train --config SYSTEM --fold K --seed S --store DIR --out RUNS`."""

from __future__ import annotations

import argparse
from pathlib import Path

from trnet import configs
from trnet.commands.args import add_device, refuse_invalid
from trnet.utils import check_folder_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        required=True,
        metavar="SYSTEM",
        help=f"a system ({configs.known()}) or a system config's .toml path",
    )
    p.add_argument("--fold", type=int, required=True, help="LOSO fold index (0 .. 2 x sessions - 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--store", type=Path, required=True, help="condition store (trnet conditions)")
    p.add_argument(
        "--out", type=Path, required=True, help="runs directory; the run goes to OUT/<system>/fold<K>-seed<S>"
    )
    p.add_argument("--epochs", type=int, help="override the config's maximum epochs")
    p.add_argument("--encoder", help="override the config's encoder (resnet or cnn6)")
    p.add_argument("--width", type=int, help="override the encoder width (channels of the first block)")
    p.add_argument("--train-noise", help="noise corpus of the store to train on (default: esc50, else the first)")
    add_device(p)
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from trnet.device import torch_device
    from trnet.training.trainer import spec_from_names, train

    refuse_invalid(args)
    check_folder_path(args.out, "--out")
    overrides = {k: getattr(args, k) for k in ("encoder", "width") if getattr(args, k) is not None}
    spec = spec_from_names(
        args.config,
        args.fold,
        args.seed,
        args.store,
        args.out,
        system_overrides=overrides,
        training_overrides={"epochs": args.epochs},
        train_noise=args.train_noise,
        device=torch_device(args.device),
    )
    path = train(spec, quiet=args.quiet)
    print(f"run: {path}")
    return 0
