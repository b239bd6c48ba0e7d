"""How the values of a recipe are checked (`trnet.experiments.recipe`): each checker returns
the value or raises a RecipeError naming the key and what was expected, so that a recipe is
refused, whole, before any work starts (docs/design.md §9.4)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trnet.options import Number
from trnet.store import StoreError
from trnet.store.layout import check_snrs
from trnet.training.recipe import TrainingRecipeError
from trnet.training.recipe import training_levers as checked_levers
from trnet.training.recipe import with_training_recipe as include
from trnet.utils import UserError, check_seed


class RecipeError(UserError):
    """A recipe that cannot run; the message names the key and what was expected."""


def number(value: Any, key: str, spec: Number) -> Any:
    """`value` checked by the one validator of numbers (trnet.options.Number): NaN, ±Inf and
    values out of the key's range are a RecipeError naming the key."""
    try:
        return spec.check(value, key)
    except UserError as err:
        raise RecipeError(str(err)) from None


def int_list(value: Any, key: str) -> tuple[int, ...]:
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    ):
        raise RecipeError(f"{key}: expected an integer or a non-empty list of integers, got {value!r}")
    return once(tuple(values), key)


def once(values: tuple, key: str) -> tuple:
    """`values` if none repeats (a repeated fold, seed or SNR would count its runs twice)."""
    twice = [v for k, v in enumerate(values) if v in values[:k]]
    if twice:
        raise RecipeError(f"{key}: {twice[0]} is given more than once; list each once")
    return values


def seeds(values: tuple[int, ...], key: str) -> tuple[int, ...]:
    for seed in values:
        try:
            check_seed(seed, key)
        except UserError as err:
            raise RecipeError(str(err)) from None
    return values


def snrs(values: tuple[int, ...], key: str) -> tuple[int, ...]:
    try:
        return check_snrs(values, key)
    except StoreError as err:
        raise RecipeError(str(err)) from None


def text(table: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """A string setting (RecipeError for a number, a list, a table)."""
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def strings(value: Any, key: str, single: bool) -> tuple[str, ...]:
    """A list of strings (or, with `single`, one string as a list of one)."""
    values = [value] if single and isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        example = f'{key} = ["..."]'
        raise RecipeError(f"{key}: expected a list of strings ({example}), got {value!r}")
    return tuple(values)


def plain(value: Any) -> Any:
    """A JSON-serialisable copy (paths as strings) of a recipe table."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def parse_int_list(text: str, what: str) -> tuple[int, ...] | None:
    """'0,1,2' -> (0, 1, 2); 'all' -> None (command-line subsets)."""
    if text.strip() == "all":
        return None
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise RecipeError(f"--{what}: expected comma-separated integers or 'all', got {text!r}") from None
    if not values:
        raise RecipeError(f"--{what}: empty list")
    if min(values) < 0:
        raise RecipeError(f"--{what}: {min(values)} is negative")
    return once(values, f"--{what}")


def training_levers(value: Any, epochs: int) -> tuple[dict[str, Any], str]:
    """A recipe's `[training]` table as (levers, input_norm): `trnet.training.recipe` checks it
    for both kinds of recipe; here its error becomes a RecipeError."""
    try:
        return checked_levers(value, epochs)
    except TrainingRecipeError as err:
        raise RecipeError(str(err)) from None


def with_training_recipe(table: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    """`table` with its `training_recipe` file's keys written in (`trnet.training.recipe`)."""
    try:
        return include(table, base, where)
    except TrainingRecipeError as err:
        raise RecipeError(str(err)) from None
