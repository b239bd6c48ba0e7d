"""The arguments several commands share (`--workers`, `--jobs`, `--threads`, `--device`, `--opt`,
`--window`, `--hop`, `--num-cpus`, `--num-gpus`): one default, one help text and one validating `type=` per
option, so that `trnet reproduce --threads -1` and `trnet bundle --threads -1` are refused
alike (docs/design.md §9, "One validator for every number").

A `type=` here never stops the parser: a value its check refuses becomes a `Refused` string,
and `refuse_invalid(args)`, the first line of every command's `run`, raises it as a UserError.
The user then sees what every other mistake gives, one line and exit 2, and not argparse's
usage block (argparse would also leave `trnet.cli.main` by SystemExit, not by its return
value). Light on purpose: commands import this at their top, and torch is not loaded."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from trnet.options import COUNT, FINITE, Number
from trnet.utils import UserError, free_cores


class Refused(str):
    """The message of a value its option refused (raised by `refuse_invalid`)."""


NUMBERS: dict[str, Number] = {  # every number a command line takes, with its range, once
    "--workers": COUNT,
    "--jobs": COUNT,
    "--threads": COUNT,
    "--window": FINITE,  # seconds; its range is trnet.predict.check_windows' (the API's too)
    "--hop": FINITE,
    "--num-cpus": FINITE,  # ranges: trnet.experiments.recipe.EngineSettings' (the recipe's too)
    "--num-gpus": FINITE,
}


def number(option: str) -> Callable[[str], Any]:
    """The `type=` of a numeric option: its value, or a `Refused` message."""
    spec = NUMBERS[option]

    def parse(text: str) -> Any:
        try:
            return spec.parse(text, option)
        except UserError as err:
            return Refused(str(err))

    parse.__name__ = spec.describe()  # what argparse would name the type
    return parse


DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device(text: str) -> str:
    """The `type=` of --device: cpu, cuda or cuda:N (whether this machine has it is
    trnet.device.torch_device's check, where torch is loaded)."""
    if DEVICE.fullmatch(text):
        return text
    return Refused(f"--device {text}: not a device; expected cpu, cuda or cuda:N")


def opt_item(text: str) -> str:
    """The `type=` of --opt: KEY=VALUE (the value is checked by the plug-in's options)."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        return Refused(f"--opt {text!r}: expected KEY=VALUE")
    return text


def refuse_invalid(args: argparse.Namespace) -> None:
    """UserError with the first value an option's `type=` refused."""
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Refused):
                raise UserError(str(item))


def add_workers(p: argparse.ArgumentParser, what: str = "the condition store") -> None:
    p.add_argument(
        "--workers",
        type=number("--workers"),
        default=free_cores(),
        help=f"processes building {what} (default: the free cores, %(default)s now)",
    )


def add_jobs(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--jobs", type=number("--jobs"), default=1, help=help)


def add_threads(p: argparse.ArgumentParser, default: int | None = None, help: str | None = None) -> None:
    """--threads; the default None is torch's (one per core); `trnet demo` passes 1."""
    p.add_argument(
        "--threads",
        type=number("--threads"),
        default=default,
        help=help or "torch CPU threads per training process (default: torch's, one per core; 1 on a shared machine)",
    )


def add_device(p: argparse.ArgumentParser, default: str | None = None, help: str | None = None) -> None:
    """--device; the default None is cuda when there is one, else cpu (`predict`, `demo`: cpu)."""
    p.add_argument(
        "--device",
        type=device,
        default=default,
        help=help
        or "torch device for training and evaluation: cpu, cuda or cuda:N (default: cuda if available, else cpu)",
    )


def add_opt(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--opt", action="append", type=opt_item, default=[], metavar="KEY=VALUE", help=help)


def add_window_hop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window",
        type=number("--window"),
        help="window for long inputs, seconds (default: the 5 s training segment)",
    )
    p.add_argument(
        "--hop", type=number("--hop"), help="hop between windows, seconds (default: half the default window)"
    )
