"""trnet: noise-robust speech emotion recognition (TRNet) from data preparation to report.

Every sub-command is a module of `trnet.commands` that defines `add_arguments(parser)` and
`run(args) -> int`, registered below by name. Command modules import only light modules at
their top (their `run` imports the library), so `trnet --help` and `trnet COMMAND --help` stay
fast and never load torch. A user error (a `trnet.utils.UserError`, or an OSError such as a
missing file or a full disk) is one line on stderr and exit code 2; a traceback means a bug
(`--debug`, before or after the command, shows one for every error)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from importlib.metadata import version
from types import ModuleType
from typing import NoReturn

from trnet.commands import (
    bundle,
    complexity,
    conditions,
    demo,
    enhance,
    export,
    models,
    predict,
    prepare,
    report,
    reproduce,
    select,
    train,
)
from trnet.utils import UserError, sigterm_as_exit

# OpenMP threads that spin while waiting starve each other on a busy machine (3 training
# epochs: 85 s spinning vs 10 s passive, measured on 2 shared cores). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# name -> (command module, one-line help)
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "demo": (demo, "run the whole pipeline on a built-in synthetic corpus (no data needed)"),
    "prepare": (prepare, "scan a corpus and write its manifest CSV"),
    "conditions": (conditions, "build the condition store: clean/noisy/enhanced features"),
    "train": (train, "train one system on one fold and seed"),
    "reproduce": (reproduce, "run a recipe: systems x folds x seeds, then evaluate"),
    "report": (report, "write the tables and figures of a results directory"),
    "select": (select, "name the system validation chose, pooled over studies, by an alias (trnet-robust)"),
    "complexity": (complexity, "parameters and MACs of every system (paper Table 2)"),
    "predict": (predict, "predict emotions on your own audio files"),
    "export": (export, "export the inference graph to ONNX or TorchScript"),
    "enhance": (enhance, "list SE back-ends, or enhance audio files"),
    "models": (models, "list the models bundled with this install"),
    "bundle": (bundle, "build the bundled model: stores, leave-one-corpus-out runs, final model, model card"),
}


DEBUG_HELP = "show the traceback of every error"


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as every other user error: one line, exit 2 (argparse's own
    prints the usage first; `--help` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="trnet", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"trnet {version('trnet')}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # --debug after the command too (`trnet select ... --debug`): each command's parser takes it,
    # with no default of its own, so that it never resets a --debug given before the command
    after = Parser(add_help=False)
    after.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_, description=help_, parents=[after]))
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    if args.command is None:
        build_parser().print_help()
        return 2
    module = COMMANDS[args.command][0]
    try:
        with sigterm_as_exit():  # temp files and locks are cleaned up on SIGTERM too
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout is gone (`| head`): stop quietly
        _discard_stdout()
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except (UserError, OSError) as err:
        if args.debug or (isinstance(err, OSError) and err.errno not in USER_ERRNOS):
            raise
        print(f"trnet {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


# OSErrors that a user causes and fixes (paths, permissions, space); others are bugs to report
USER_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENAMETOOLONG,
    errno.ENOTEMPTY,
}


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        hint = " (free some space, or write somewhere else)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"{where}{err.strerror}{hint}"
    return " ".join(str(err).split()) or type(err).__name__


def _discard_stdout() -> None:
    """Python's recipe for a closed pipe: point stdout at devnull so that the flush at exit
    does not fail a second time (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
