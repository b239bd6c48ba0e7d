"""Recipes: one TOML file names a whole experiment of the paper (§4-§5, docs/design.md §8), so that a
reproduction is a file anyone can read, edit and rerun, not a shell history.

    name = "emodb"
    work = "../work/emodb"            # everything is written here (relative: to this file)
    se = "dfn3"                       # SE back-end (trnet enhance --list); [se_options] too
    train_noise = "esc50"             # the noise corpus the noisy systems train on
    seed = [1]                        # training seeds (an integer is one seed)
    folds = "all"                     # or a list of LOSO fold indices
    systems = ["trnet", ...]          # default: all seven, in Table-1 order
    epochs = 15                       # maximum epochs (default 80, the paper's)
    batch_size = 32                   # default 32, the paper's
    lr_schedule = "cosine"            # learning rate over the run: "constant" (default, the paper's)
                                      # or "cosine" (from lr to 0; docs/design.md §7)
    bucket = true                     # batches of similar length (default false, the paper's random batches)
    patience = 10                     # early stopping after this many epochs without a better
                                      # validation UAR (default 10); = epochs: no early stopping
    encoder = "resnet"                # or "cnn6" (the authors' code)
    width = 16                        # channels of the first encoder block (paper: 32)
    snrs = [20, 15, 10, 5, 0]         # default: the paper's five
    noise_seed = 1                    # optional: one noise assignment shared by all seeds
    notes = ["..."]                   # what is synthetic or a stand-in; shown in the report
    engine = "local"                  # or "ray", or an [engine] table (below)
    training_recipe = "training-recipe.toml"   # optional: the training keys above and [training]
                                      # from one file shared with the bundle recipe (trnet.training.recipe)

    [analysis]                        # optional: the comparison the report must make, declared
    baseline = "baseline-e"           # before running (trnet.report.primary): validation picks
    candidates = ["trnet", "trnet-std"]   # one candidate, compared with the baseline on noisy UAR
    mde_target = 2.5                  # the design's goal for the minimum detectable effect

    [corpus]                          # the emotional speech
    kind = "emodb"                    # iemocap | emodb | nemo | folder | synthetic
    root = "../shared/data/emodb"

    [noise.esc50]                     # one table per noise corpus; the name is the table's
    kind = "esc50"                    # esc50 | musan | noise | synthetic
    root = "../shared/data/esc50"

Other keys of a [corpus] or [noise.*] table are the loader's options, declared with their
types and defaults in `trnet.corpora.registry` (the same as `trnet prepare --opt`): `csv`,
`labels` (folder), `subsets` (musan), `seed`, `n_speakers`, `utts_per_class`, `duration`
(synthetic: generate the corpus under `root`; as a noise corpus, its noise/ folder is used).
`systems` may name an alias (`trnet-robust`), which resolves to the system it stands for.

    [engine]                          # how the work runs; the results never depend on it
    kind = "ray"                      # local (default: processes on this machine) | ray
    address = "auto"                  # ray: join a running cluster; omitted: start a local one
    num_cpus = 1                      # ray: CPUs per task (training, evaluation, store chunk)
    num_gpus = 0.25                   # ray: GPUs per training/evaluation task (fractional: shared)
    store_num_gpus = 0                # ray: GPUs per store-chunk task (an SE back-end on the GPU)
    batch_runs = 0                    # runs of one system stacked into one model: 0 auto (CUDA 32, CPU
                                      # none), 1 never, N at most N (docs/design.md §7.1)

Without `noise_seed`, each training seed has its own condition store, since docs/design.md §7 says
the seed fixes the noise assignment too; `noise_seed = N` shares one store (one SE pass)
among all seeds, which matters when SE is the expensive step.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trnet import configs, enhance
from trnet.corpora import CorpusError, ManifestKind, Source, read_source
from trnet.experiments.recipe_values import (
    RecipeError,
    int_list,
    number,
    once,
    parse_int_list,
    plain,
    snrs,
    strings,
    text,
    training_levers,
    with_training_recipe,
)
from trnet.experiments.recipe_values import (
    seeds as valid_seeds,
)
from trnet.models import PAPER_TRAINING, PAPER_WIDTH
from trnet.models.encoder import ENCODERS
from trnet.models.system import MAX_WIDTH, RECIPE_TRAINING
from trnet.options import Number, OptionError
from trnet.report.primary import check_analysis
from trnet.store import SNRS, StoreError
from trnet.store.layout import check_noise_name

KEYS = (
    "name",
    "work",
    "corpus",
    "noise",
    "train_noise",
    "se",
    "se_options",
    "seed",
    "folds",
    "systems",
    "epochs",
    "batch_size",
    "patience",
    "encoder",
    "width",
    "snrs",
    "noise_seed",
    "notes",
    "engine",
    "analysis",
    "lr_schedule",
    "bucket",
    "training",
    "training_recipe",
)
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineSettings:
    """Where and how a recipe's work runs (`engine = ...` or `[engine]`): the local engine
    takes none of the Ray settings; `trnet.experiments.engine` turns this into an engine."""

    kind: str = "local"
    address: str | None = None  # ray: a running cluster ("auto", "ray://head:10001"); None: start a local one
    num_cpus: float = 1  # ray: per task (training group, evaluation, store chunk)
    num_gpus: float = 0  # ray: per training/evaluation task; 0.25 lets four share one GPU
    store_num_gpus: float = 0  # ray: per store-chunk task, for an SE back-end on the GPU
    batch_runs: int = 0  # runs of one system as one stacked model: 0 auto (CUDA 32, CPU off), 1 off, N at most N

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise RecipeError(f"engine {self.kind!r}: expected one of {', '.join(ENGINES)}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise RecipeError(
                f"engine address: expected a string such as 'auto' or 'ray://head:10001', got {self.address!r}"
            )
        for key, spec in ENGINE_NUMBERS.items():
            value = number(getattr(self, key), f"engine {key}", spec)
            if key != "batch_runs" and value > 1 and value != int(value):
                raise RecipeError(f"engine {key}: a fraction must be at most 1 (Ray shares one device), got {value}")


ENGINE_NUMBERS = {  # the ranges of the [engine] numbers (and of --num-cpus, --num-gpus, --batch-runs)
    "num_cpus": Number(float, 0, 1024, lo_open=True),
    "num_gpus": Number(float, 0, 64),
    "store_num_gpus": Number(float, 0, 64),
    "batch_runs": Number(int, 0, 4096),  # 0 auto (CUDA 32, CPU off), 1 off, N at most N
}
RAY_KEYS = ("address", "num_cpus", "num_gpus", "store_num_gpus")


def _engine(value: Any) -> EngineSettings:
    if isinstance(value, str):
        return EngineSettings(kind=value)
    if not isinstance(value, Mapping):
        raise RecipeError(f'engine: expected "local", "ray" or an [engine] table, got {value!r}')
    names = {f.name for f in fields(EngineSettings)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise RecipeError(f"[engine]: unknown key(s) {unknown}; it has {', '.join(sorted(names))}")
    ray_only = [k for k in RAY_KEYS if k in value]
    if value.get("kind", "local") != "ray" and ray_only:
        raise RecipeError(f'[engine]: {", ".join(ray_only)} are Ray settings; set kind = "ray" or remove them')
    return EngineSettings(**value)


@dataclass(frozen=True)
class Recipe:
    name: str
    corpus: Source
    noise: dict[str, Source]
    train_noise: str
    se: enhance.Spec  # `se` and `[se_options]`, checked against the back-end's Options
    seeds: tuple[int, ...]
    folds: tuple[int, ...] | None  # None: all folds of the corpus
    systems: tuple[str, ...]
    epochs: int
    batch_size: int
    patience: int
    lr_schedule: str
    bucket: bool
    encoder: str
    width: int
    work: Path
    snrs: tuple[int, ...]
    noise_seed: int | None
    notes: tuple[str, ...]
    origin: str  # the recipe file, or what built it
    table: dict[str, Any]  # the recipe as written, for the report
    engine: EngineSettings = EngineSettings()
    levers: dict[str, Any] = field(default_factory=dict)  # [training]: TrainingConfig levers (docs/design.md §7)
    input_norm: str = "none"  # [training] input_norm: SystemConfig's


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe TOML; relative paths in it are relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe not found")
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML ({err})") from None
    return recipe_from_dict(table, base=path.resolve().parent, origin=str(path.resolve()))


def _source(table: Any, where: str, role: ManifestKind, base: Path) -> Source:
    try:
        return read_source(table, f"[{where}]", role, base)
    except CorpusError as err:
        raise RecipeError(str(err)) from None


def recipe_from_dict(table: Mapping[str, Any], base: Path, origin: str) -> Recipe:
    """Validate a recipe table (TOML file or built-in dict) and resolve its paths against `base`;
    a `training_recipe` file's keys count as written in the table (trnet.training.recipe)."""
    table = with_training_recipe(table, base, origin)
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise RecipeError(f"unknown key(s) {unknown}; a recipe has {', '.join(KEYS)}")
    for key in ("name", "work", "corpus", "noise", "train_noise"):
        if key not in table:
            raise RecipeError(f"missing key `{key}`")
    noise_tables = table["noise"]
    if not isinstance(noise_tables, Mapping) or not noise_tables:
        raise RecipeError("[noise.<name>]: expected at least one noise corpus table")
    for name in noise_tables:  # a noise name becomes a folder of the store
        try:
            check_noise_name(name)
        except StoreError as err:
            raise RecipeError(f"[noise.{name}]: {err}") from None
    noise = {str(name): _source(t, f"noise.{name}", "noise", base) for name, t in noise_tables.items()}
    if text(table, "train_noise") not in noise:
        raise RecipeError(f"train_noise {table['train_noise']!r} is not one of the noise corpora ({', '.join(noise)})")
    for key in ("name", "work", "se"):
        text(table, key, enhance.DEFAULT if key == "se" else None)
    folds = table.get("folds", "all")
    systems = _systems(table.get("systems", configs.names(paper_only=True)), "systems")
    se_options = table.get("se_options", {})
    if not isinstance(se_options, Mapping):
        raise RecipeError(f"se_options: expected a table ([se_options] with KEY = VALUE lines), got {se_options!r}")
    try:  # checked against the back-end's Options without building it, before any work
        se = enhance.spec(str(table.get("se", enhance.DEFAULT)), se_options)
    except OptionError as err:
        raise RecipeError(str(err)) from None
    try:  # the training keys, checked by the class that owns them
        training = replace(PAPER_TRAINING, **{key: table[key] for key in RECIPE_TRAINING if key in table})
    except ValueError as err:
        raise RecipeError(str(err)) from None
    epochs = training.epochs
    width = table.get("width", PAPER_WIDTH)
    number(width, "width", Number(int, 1, MAX_WIDTH))
    encoder = table.get("encoder", "resnet")
    if encoder not in ENCODERS:
        raise RecipeError(f"encoder {encoder!r}: expected one of {', '.join(ENCODERS)}")
    noise_seed = table.get("noise_seed")
    if noise_seed is not None:
        noise_seed = valid_seeds(int_list(noise_seed, "noise_seed"), "noise_seed")[0]
    notes = strings(table.get("notes", []), "notes", single=True)
    if folds != "all":
        folds = int_list(folds, "folds")
        if min(folds) < 0:
            raise RecipeError(f"folds: fold indices start at 0, got {min(folds)}")
    levers, input_norm = training_levers(table.get("training", {}), epochs)
    if "analysis" in table:  # the declared comparison (report/primary.py); checked before any work
        try:
            check_analysis(table["analysis"], systems)
        except ValueError as err:
            raise RecipeError(str(err)) from None
    return Recipe(
        name=str(table["name"]),
        corpus=_source(table["corpus"], "corpus", "utterances", base),
        noise=noise,
        train_noise=str(table["train_noise"]),
        se=se,
        seeds=valid_seeds(int_list(table.get("seed", [1]), "seed"), "seed"),
        folds=None if folds == "all" else folds,
        systems=systems,
        epochs=epochs,
        batch_size=training.batch_size,
        patience=training.patience,
        lr_schedule=training.lr_schedule,
        bucket=training.bucket,
        encoder=encoder,
        width=width,
        work=(base / str(table["work"])).resolve(),
        snrs=snrs(int_list(table.get("snrs", list(SNRS)), "snrs"), "snrs"),
        noise_seed=noise_seed,
        notes=tuple(str(n) for n in notes),
        origin=origin,
        table=plain(table),
        engine=_engine(table.get("engine", "local")),
        levers=levers,
        input_norm=input_norm,
    )


def _systems(chosen: Any, where: str) -> tuple[str, ...]:
    """The systems a recipe runs, aliases resolved (`trnet-robust` -> the selected system), in
    table order (`trnet.configs`); RecipeError naming the unknown ones and the known."""
    if isinstance(chosen, str) or not isinstance(chosen, list | tuple) or not chosen:
        raise RecipeError(f"{where}: expected a non-empty list of systems, got {chosen!r}")
    once(tuple(chosen), where)
    known = configs.names()
    resolved = {configs.resolve(str(s)) for s in chosen}
    bad = sorted(resolved - set(known))
    if bad:
        raise RecipeError(f"{where}: unknown {bad}; known: {configs.known()}")
    return tuple(s for s in known if s in resolved)


def with_overrides(
    recipe: Recipe,
    folds: str | None = None,
    seeds: str | None = None,
    systems: str | None = None,
    epochs: int | None = None,
    work: Path | None = None,
    engine: str | None = None,
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    batch_runs: int | None = None,
) -> Recipe:
    """The recipe with command-line subsets and engine settings applied (they override the
    recipe's)."""
    changes: dict[str, Any] = {}
    ray_flags = {"address": address, "num_cpus": num_cpus, "num_gpus": num_gpus}
    ray_flags = {k: v for k, v in ray_flags.items() if v is not None}
    settings = replace(recipe.engine, kind=engine or recipe.engine.kind, **ray_flags)
    if batch_runs is not None:
        settings = replace(settings, batch_runs=batch_runs)
    if settings.kind != "ray" and ray_flags:
        flags = ", ".join("--" + k.replace("_", "-") for k in ray_flags)
        raise RecipeError(f"{flags}: Ray settings, for --engine ray (this run's engine is {settings.kind})")
    if settings != recipe.engine:
        changes["engine"] = settings
    if folds is not None:
        changes["folds"] = parse_int_list(folds, "folds")
    if seeds is not None:
        parsed = parse_int_list(seeds, "seeds")
        if parsed is None:
            raise RecipeError("--seeds: expected comma-separated integers")
        changes["seeds"] = valid_seeds(parsed, "--seeds")
    if systems is not None:
        changes["systems"] = _systems([s.strip() for s in systems.split(",") if s.strip()], "--systems")
    if epochs is not None:
        if epochs < 1:
            raise RecipeError("--epochs must be >= 1")
        changes["epochs"] = epochs
    if work is not None:
        changes["work"] = work.resolve()
    return replace(recipe, **changes)
