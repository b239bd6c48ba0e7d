"""trnet: noise-robust speech emotion recognition (TRNet) from data preparation to report.

Each sub-command lives beside the code it drives, in a module that defines
`add_arguments(parser)` and `run(args) -> int`; it is imported only when used so that
`trnet --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import version

# OpenMP threads that spin while waiting starve each other on a busy machine (3 training
# epochs: 85 s spinning vs 10 s passive, measured on 2 shared cores). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("trnet.experiments.demo", "run the whole pipeline on a built-in synthetic corpus (no data needed)"),
    "prepare": ("trnet.corpora.cli", "scan a corpus and write its manifest CSV"),
    "conditions": ("trnet.store.cli", "build the condition store: clean/noisy/enhanced features"),
    "train": ("trnet.training.cli", "train one system on one fold and seed"),
    "reproduce": ("trnet.experiments.reproduce", "run a recipe: systems x folds x seeds, then evaluate"),
    "report": ("trnet.experiments.report", "write the tables and figures of a results directory"),
    "complexity": ("trnet.evaluation.complexity", "parameters and MACs of every system (paper Table 2)"),
    "predict": ("trnet.predict.cli", "predict emotions on your own audio files"),
    "export": ("trnet.export", "export the inference graph to ONNX or TorchScript"),
    "enhance": ("trnet.enhance.cli", "list SE back-ends, or enhance audio files"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trnet", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"trnet {version('trnet')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:  # import only the module of the command being run
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    if args.command is None:
        build_parser().print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
