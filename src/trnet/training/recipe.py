"""The training part of a recipe, read in one place for `trnet reproduce`'s recipes and
`trnet bundle`'s (docs/design.md §7 "Training levers"): the `[training]` table of levers, and a
training-recipe file named by `training_recipe = "PATH"` that carries the RECIPE_TRAINING keys
and that table, so that one chosen training recipe trains a study and the bundled model alike.

    # training-recipe.toml (any of these; comments are free)
    epochs = 40
    batch_size = 16
    patience = 40
    lr_schedule = "cosine"
    bucket = true
    [training]
    warmup_epochs = 2
    weight_decay = 0.05
    input_norm = "utterance"

Each key has one owner: a key set both in the recipe and in its training-recipe file is refused,
and otherwise the file's keys act exactly as if written in the recipe."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trnet.models.system import INPUT_NORMS, LEVERS, RECIPE_TRAINING, TrainingConfig
from trnet.utils import UserError

INCLUDE = "training_recipe"  # the recipe key naming a training-recipe file
FILE_KEYS = (*RECIPE_TRAINING, "training")  # what a training-recipe file may hold


class TrainingRecipeError(UserError):
    """A `[training]` table or a training-recipe file that cannot be used; each recipe reader
    turns it into its own error class."""


def with_training_recipe(table: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    """`table` with the keys of its training-recipe file written in (the `training_recipe` key
    itself removed), as if they had been written inline; a copy of `table` if it names none.
    `base`: the recipe's folder, which a relative path is relative to; `where`: the recipe, for
    the messages."""
    out = dict(table)
    if INCLUDE not in out:
        return out
    name = out.pop(INCLUDE)
    if not isinstance(name, str) or not name:
        raise TrainingRecipeError(f"{INCLUDE}: expected the path of a TOML file, got {name!r}")
    path = base / name
    try:
        included = tomllib.loads(path.read_text())
    except OSError as err:
        raise TrainingRecipeError(f"{INCLUDE} {name!r}: cannot read {path} ({err.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise TrainingRecipeError(f"{INCLUDE} {name!r}: {path} is not valid TOML ({err})") from None
    unknown = sorted(set(included) - set(FILE_KEYS))
    if unknown:
        raise TrainingRecipeError(
            f"{path}: unknown key(s) {unknown}; a training recipe has {', '.join(FILE_KEYS[:-1])} and [training]"
        )
    for key in RECIPE_TRAINING:
        if key in included:
            _one_owner(key, key in out, where, path)
            out[key] = included[key]
    if "training" in included:
        theirs, ours = included["training"], out.get("training", {})
        for value, owner in ((theirs, path), (ours, where)):
            if not isinstance(value, Mapping):
                raise TrainingRecipeError(f"{owner}: [training]: expected a table of training levers, got {value!r}")
        for key in theirs:
            _one_owner(f"[training] {key}", key in ours, where, path)
        out["training"] = {**ours, **theirs}
    return out


def _one_owner(key: str, twice: bool, where: str, path: Path) -> None:
    if twice:
        raise TrainingRecipeError(f"{key} is set both in {where} and in {path} ({INCLUDE}); set it in one of them")


def training_levers(value: Any, epochs: int) -> tuple[dict[str, Any], str]:
    """A recipe's `[training]` table: the training levers of docs/design.md §7 (TrainingConfig's
    LEVERS, checked by building a TrainingConfig with the recipe's epochs) and `input_norm`, the
    one lever that is part of the model (SystemConfig). Returns (levers, input_norm)."""
    if not isinstance(value, Mapping):
        raise TrainingRecipeError(f"[training]: expected a table of training levers, got {value!r}")
    unknown = sorted(set(value) - set(LEVERS) - {"input_norm"})
    if unknown:
        raise TrainingRecipeError(f"[training]: unknown key(s) {unknown}; it has {', '.join((*LEVERS, 'input_norm'))}")
    levers = {k: v for k, v in value.items() if k != "input_norm"}
    try:
        TrainingConfig(epochs=epochs, **levers)
    except ValueError as err:
        raise TrainingRecipeError(f"[training]: {err}") from None
    norm = value.get("input_norm", "none")
    if norm not in INPUT_NORMS:
        raise TrainingRecipeError(f"[training] input_norm {norm!r}: expected one of {', '.join(INPUT_NORMS)}")
    return levers, norm


def levers_tag(epochs: int, levers: Mapping[str, Any], input_norm: str) -> str:
    """The part of a runs folder's name that the levers make ('' with none set), so that a run
    trained with other levers lives in another folder: TrainingConfig's tag, then `-norm-<x>`."""
    tag = TrainingConfig(epochs=epochs, **levers).tag()
    return tag + ("" if input_norm == "none" else f"-norm-{input_norm}")
