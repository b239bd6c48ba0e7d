"""Typed options of the plug-ins (SE back-ends, corpus loaders), declared once per plug-in.

A plug-in declares its options as a frozen dataclass (field types, defaults, and checks in
`__post_init__`), as lhotse's feature extractors declare a `config_type`. Every way a user
sets an option goes through `check` with that dataclass, so the spelling, the types and
the messages are the same everywhere:

    recipe          se = "dfn3"  +  se_options = { atten_lim_db = 20 }
                    [corpus] kind = "musan", subsets = ["free-sound"]
    command line    --opt atten_lim_db=20   (trnet conditions, enhance, predict, prepare)

`parse_items` turns `KEY=VALUE` strings into a table like the recipe's; `check` refuses an
unknown key or a value of the wrong type with a `UserError` naming the plug-in, the key and
what it takes.

Every number a user gives goes through one validator, `Number` (docs/design.md §9, "One
validator for every number"): it refuses NaN and ±Inf always, and the option's range where the
option declares one. A plug-in declares a range beside the option's type and default with
`ranged(default, lo, hi)`; command-line numbers are declared once in `trnet.commands.args`,
training settings in `TrainingConfig`, recipe values in `trnet.experiments.recipe_values`, all
with `Number`. The table as given (not the filled-in dataclass) is what keys a store, so a
default that is written out or left out gives the same store only if it is left out the
same way; that is how stores have always been keyed (docs/design.md §9.1).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trnet.utils import UserError


class OptionError(UserError):
    """An option a plug-in does not take, or a value it cannot use."""


@dataclass(frozen=True)
class Number:
    """A number a user gives: its kind (int or float) and range [lo, hi] (an end of None is
    open; `lo_open` excludes lo itself). `check` refuses a bool, a non-number, NaN, ±Inf and a
    value out of range with an OptionError naming `what`; `parse` reads it from text first."""

    kind: type = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.kind is int else "a finite number"
        if self.lo == 0 and self.lo_open:
            kind, parts = f"a positive {kind.split()[-1]}", []
        else:
            parts = [f"{'>' if self.lo_open else '>='} {self.lo:g}"] if self.lo is not None else []
        parts += [f"{'<' if self.hi_open else '<='} {self.hi:g}"] if self.hi is not None else []
        return f"{kind} {' and '.join(parts)}".strip()

    def check(self, value: Any, what: str) -> Any:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and self.kind is int:
            ok = isinstance(value, int) or (math.isfinite(value) and value == int(value))
            value = int(value) if ok else value
        ok = ok and math.isfinite(value)
        ok = ok and (self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
        ok = ok and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi))
        if not ok:
            raise OptionError(f"{what}: expected {self.describe()}, got {value!r}")
        return value

    def parse(self, text: str, what: str) -> Any:
        try:
            value = int(text) if self.kind is int else float(text)
        except ValueError:
            raise OptionError(f"{what}: expected {self.describe()}, got {text!r}") from None
        return self.check(value, what)


FINITE = Number()  # what every float option is held to when it declares no range
COUNT = Number(int, 1, 1024)  # processes, parallel jobs, threads


def check_counts(**counts: Any) -> None:
    """OptionError unless every given count (None: the default) is a COUNT: the library's
    entry points check `workers`, `jobs`, `threads` as the command line does."""
    for name, value in counts.items():
        if value is not None:
            COUNT.check(value, name)


def ranged(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    kind: type | None = None,
) -> Any:
    """A dataclass field with its range beside its default (`check` applies it); the kind is
    the default's (int or float) unless given."""
    kind = kind or (int if isinstance(default, int) and not isinstance(default, bool) else float)
    return dataclasses.field(default=default, metadata={"number": Number(kind, lo, hi, lo_open, hi_open)})


def parse_items(items: list[str], flag: str = "--opt") -> dict[str, Any]:
    """`KEY=VALUE` strings -> a table: true/false are booleans, numbers are numbers, anything
    else a string (a comma-separated string becomes a list where the option is a list)."""
    table: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{flag} {item!r}: expected KEY=VALUE")
        table[key.strip().replace("-", "_")] = _scalar(value)
    return table


def _scalar(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def check(options_type: type, given: Mapping[str, Any], where: str) -> Any:
    """The plug-in's options dataclass filled from `given`; OptionError naming `where` (e.g.
    "SE back-end 'dfn3'") for an unknown key, a value of the wrong type, or a failed check."""
    hints = typing.get_type_hints(options_type)
    names = [f.name for f in dataclasses.fields(options_type)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise OptionError(f"{where}: unknown option(s) {', '.join(unknown)}; it takes {describe(options_type)}")
    values = {}
    declared = {f.name: f.metadata.get("number") for f in dataclasses.fields(options_type)}
    for key, value in given.items():
        try:
            values[key] = _coerce(value, hints[key])
        except (TypeError, ValueError):
            raise OptionError(f"{where}: option {key} = {value!r}: expected {_type_name(hints[key])}") from None
        for item in values[key] if isinstance(values[key], list | tuple) else [values[key]]:
            if isinstance(item, int | float) and not isinstance(item, bool):
                (declared[key] or FINITE).check(item, f"{where}: option {key}")
    try:
        return options_type(**values)
    except (TypeError, ValueError) as err:
        raise OptionError(f"{where}: {err}") from None


def describe(options_type: type) -> str:
    """`key=default, ...` of an options dataclass ("no options" if it has none)."""
    fields = dataclasses.fields(options_type)
    if not fields:
        return "no options"
    return ", ".join(f"{f.name}={_default(f)}" for f in fields)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return "none" if f.default is None else str(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return str(f.default_factory())
    return "(required)"


def path_options(options_type: type) -> tuple[str, ...]:
    """Options that name a file or folder (a recipe resolves them against its own folder)."""
    hints = typing.get_type_hints(options_type)
    return tuple(f.name for f in dataclasses.fields(options_type) if Path in _members(hints[f.name]))


def _members(hint: Any) -> tuple[Any, ...]:
    return (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )


def _type_name(hint: Any) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path",
        type(None): "none",
    }
    if typing.get_origin(hint) in (list, tuple):
        return "a list"
    return " or ".join(
        names.get(m, "a list" if typing.get_origin(m) in (list, tuple) else str(m)) for m in _members(hint)
    )


def _coerce(value: Any, hint: Any) -> Any:
    """`value` as the type `hint` allows: an int for a float, a str for a Path, a
    comma-separated str or a tuple for a list; anything else must already have the type."""
    for member in _members(hint):
        if member is type(None) and value is None:
            return None
        if member is bool and isinstance(value, bool):
            return value
        if member is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if member is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if member is str and isinstance(value, str):
            return value
        if member is Path and isinstance(value, str | Path):
            return Path(value)
        origin = typing.get_origin(member)
        if origin in (list, tuple):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                continue
            (inner, *_) = typing.get_args(member) or (Any,)
            converted = [
                item.strip()
                if isinstance(item, str) and inner is str
                else _coerce(_scalar(item.strip()) if isinstance(item, str) else item, inner)
                for item in items
            ]
            return origin(converted)
    raise TypeError(f"{value!r} is not {_type_name(hint)}")
