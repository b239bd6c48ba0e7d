"""Where a recipe's work lives, and how each of its runs is specified.

Layout of WORK:
    .lock                    held by the `trnet reproduce` working on WORK (an OS lock)
    manifests/corpus.csv, manifests/noise-<name>.csv
    stores/seed<S>/ (or stores/noise-seed<N>/ with `noise_seed`)
    runs/<store>/<encoder>-w<width>-e<epochs>-b<batch>[-p<patience>][-<lr schedule>][-bucket]-<train noise>-
        <store hash>/
        <system>/fold<K>-seed<S>/
    results/
Runs live under the store's hash and the training settings, so changing the SE back-end,
the corpus, the width or the epochs starts new runs instead of silently reusing old ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from trnet import enhance
from trnet.experiments.recipe import PAPER_TRAINING, Recipe, RecipeError
from trnet.store import BuildSpec, ChunkMap, ConditionStore, SettingsChanged, build
from trnet.training.recipe import levers_tag
from trnet.training.trainer import RunSpec, recipe_run_spec
from trnet.utils import LockedError, UserError, check_folder_path, exclusive_lock


@contextlib.contextmanager
def work_lock(work: Path) -> Iterator[None]:
    """Hold WORK/.lock for the whole run: two runs on one work directory would train the same
    runs at once and overwrite each other's checkpoints. The OS drops the lock when the
    process dies, even by kill -9, and worker processes do not inherit it, so a killed run
    never blocks the next one."""
    try:
        check_folder_path(work, "work")
    except UserError as err:
        raise RecipeError(str(err)) from None
    made = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:  # the lock file goes with the lock: a failed run leaves no trace, and one it made no folder
        with exclusive_lock(work / ".lock", f"another `trnet reproduce` on {work}", remove=True):
            yield
    except LockedError as err:
        raise RecipeError(str(err)) from None
    finally:
        if made:
            with contextlib.suppress(OSError):
                work.rmdir()  # only if empty


def check_se(recipe: Recipe) -> None:
    """Whether the recipe's SE back-end can run here, before any work, without building it
    (its options were checked when the recipe was read). The back-end's own check looks at its
    defaults (DFN3's model files, CMGAN's checkpoint from the environment), so a setting with
    options (a checkpoint path, a device) is left to the store build, which loads it first."""
    if recipe.se.options:
        return
    reason = enhance.unavailable_reason(recipe.se.name)
    if reason is not None:
        raise RecipeError(f"SE back-end {recipe.se.name!r} cannot run here: {reason}")


def store_name(recipe: Recipe, seed: int) -> str:
    return f"noise-seed{recipe.noise_seed}" if recipe.noise_seed is not None else f"seed{seed}"


def build_stores(
    recipe: Recipe, corpus: Path, noise: dict[str, Path], workers: int, quiet: bool, map_chunks: ChunkMap | None = None
) -> dict[int, Path]:
    """seed -> finished store (one per seed, or one shared with `noise_seed`)."""
    out: dict[int, Path] = {}
    for seed in recipe.seeds:
        path = recipe.work / "stores" / store_name(recipe, seed)
        if path not in out.values():
            spec = BuildSpec(
                corpus=corpus.resolve(),
                noise={k: v.resolve() for k, v in noise.items()},
                se=recipe.se,
                seed=seed if recipe.noise_seed is None else recipe.noise_seed,
                snrs=recipe.snrs,
            )
            try:
                build(spec, path, workers=workers, quiet=quiet, map_chunks=map_chunks)
            except SettingsChanged as err:
                raise RecipeError(
                    f"the store {path} was built with other settings ({err.differences}); use another "
                    f"--work, or delete {path} to build it again with the recipe's settings"
                ) from None
        out[seed] = path
    return out


def runs_dir(recipe: Recipe, seed: int, store: ConditionStore) -> Path:
    """Runs live under the store's hash and the training settings (see the module docstring)."""
    patience = "" if recipe.patience == PAPER_TRAINING.patience else f"-p{recipe.patience}"
    patience += "" if recipe.lr_schedule == PAPER_TRAINING.lr_schedule else f"-{recipe.lr_schedule}"
    patience += "-bucket" if recipe.bucket else ""
    patience += levers_tag(recipe.epochs, recipe.levers, recipe.input_norm)  # '' without levers
    tag = (
        f"{recipe.encoder}-w{recipe.width}-e{recipe.epochs}-b{recipe.batch_size}{patience}-{recipe.train_noise}-"
        f"{store.key['hash'][:10]}"
    )
    return recipe.work / "runs" / store_name(recipe, seed) / tag


def run_spec(recipe: Recipe, system: str, fold: int, seed: int, store: Path, runs: Path, device: str) -> RunSpec:
    return recipe_run_spec(
        recipe,
        system,
        fold,
        seed,
        store,
        runs,
        system_extra={"input_norm": recipe.input_norm} if recipe.input_norm != "none" else None,
        training_extra=recipe.levers,
        train_noise=recipe.train_noise,
        device=device,
    )
