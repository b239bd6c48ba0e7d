"""The bundle recipe (`recipes/pretrained.toml`): one TOML file names everything the bundled
model is built from, so that the shipped weights can be rebuilt by anyone who has the data.

    name = "trnet-emodb-nemo"          # the bundle's name (trnet models, trnet predict --model NAME)
    work = "../../work/pretrained"      # everything is written here (relative: to this file)
    system = "trnet-std-snr"           # the shipped system: the studies' validation choice (an alias
                                       # such as trnet-robust names the system it stands for)
    baseline = "baseline-e"            # trained beside it in the leave-one-corpus-out runs
    width = 16                         # encoder width (paper: 32); encoder = "resnet"
    epochs = 31, batch_size = 8, patience = 31
    lr_schedule = "cosine", bucket = true   # as trnet.models.TrainingConfig (defaults: constant, false)
    min_updates = 1000                 # each run trains max(epochs, enough epochs for 1000 updates)
    training_recipe = "training-recipe.toml"  # optional: epochs ... bucket and [training] from one file
                                       # shared with the studies' recipes (trnet.training.recipe)
    seed = 1                           # the shipped model's seed
    loco_seeds = [1]                   # seeds of the leave-one-corpus-out runs (mean, 95 % interval)
    se = "dfn3"                        # and se_options = { ... }
    noise_seed = 1                     # the noise assignment of every store
    train_snrs = [20, 15, 10, 5, 0]    # training conditions: clean + these, per training noise
    test_snrs = [20, 15, 10, 5, 0, -5] # the held-out corpus's test conditions (and clean)
    train_noise = ["esc50", "demand"]  # the shipped model's training noise
    loco_train_noise = ["esc50"]       # the leave-one-corpus-out runs' training noise ...
    test_noise = "demand"              # ... so that this one is unseen when they are tested
    weights_licence = "CC BY-NC-SA 4.0 ..."   # what the weights may be used for (model card)
    placeholder = false                # true: a test build, labelled as such wherever shown

    [corpora.emodb]                    # one table per emotional corpus (name: letters, digits)
    kind = "emodb"                     # a corpus kind of `trnet prepare`, with its options
    root = "../../shared/data/emodb"
    title = "EmoDB", language = "German", licence = "...", url = "..."   # provenance

    [noise.esc50]                      # one table per noise corpus, same keys
    kind = "esc50"
    root = "../../shared/data/esc50"

    [loco_targets]                     # optional: the noisy UAR (%, test_noise 0-20 dB, mean over
    "emodb -> nemo" = 47.0             # loco_seeds) the system must reach per direction; the model
                                       # card states each as met or not
    [training]                         # optional: training levers and input_norm (docs/design.md §7),
    weight_decay = 0.05                # for every run the bundle trains

Provenance keys (title, language, licence, url) are copied into the bundle's manifest. A
`training_recipe` file's keys are written into the manifest's recipe table as if inline.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trnet import configs, enhance, pretrained
from trnet.corpora import CorpusError, ManifestKind, Source, read_source
from trnet.corpora.combined import check_name
from trnet.models import load_config
from trnet.models.encoder import ENCODERS
from trnet.models.system import MAX_WIDTH, RECIPE_TRAINING, TrainingConfig
from trnet.options import OptionError
from trnet.training.recipe import TrainingRecipeError, training_levers, with_training_recipe
from trnet.utils import UserError

KEYS = (
    "name",
    "work",
    "system",
    "baseline",
    "width",
    "encoder",
    "epochs",
    "batch_size",
    "patience",
    "seed",
    "lr_schedule",
    "bucket",
    "min_updates",
    "loco_seeds",
    "se",
    "se_options",
    "noise_seed",
    "train_snrs",
    "test_snrs",
    "train_noise",
    "loco_train_noise",
    "test_noise",
    "weights_licence",
    "placeholder",
    "notes",
    "corpora",
    "noise",
    "training",
    "training_recipe",
    "loco_targets",
)
REQUIRED = ("name", "work", "system", "corpora", "noise", "train_noise")
DEFAULTS: dict[str, Any] = {
    "baseline": "baseline-e",
    "width": 16,
    "encoder": "resnet",
    "epochs": 31,
    "batch_size": 8,
    "patience": 31,
    "lr_schedule": "constant",
    "bucket": False,
    "min_updates": 0,
    "seed": 1,
    "loco_seeds": [1],
    "se": "dfn3",
    "se_options": {},
    "noise_seed": 1,
    "train_snrs": [20, 15, 10, 5, 0],
    "test_snrs": [20, 15, 10, 5, 0, -5],
    "loco_train_noise": None,
    "test_noise": None,
    "weights_licence": "see the training data's licences",
    "placeholder": False,
    "notes": [],
    "training": {},
    "loco_targets": {},
}


class BundleRecipeError(UserError):
    """A bundle recipe that cannot run; the message names the key."""


@dataclass(frozen=True)
class BundleRecipe:
    name: str
    work: Path
    system: str
    baseline: str
    width: int
    encoder: str
    epochs: int
    batch_size: int
    patience: int
    seed: int
    lr_schedule: str
    bucket: bool
    min_updates: int  # a run's epochs rise until it makes this many optimiser updates (0: off)
    loco_seeds: tuple[int, ...]
    se: enhance.Spec  # `se` and `se_options`, checked against the back-end's Options
    noise_seed: int
    train_snrs: tuple[int, ...]
    test_snrs: tuple[int, ...]
    train_noise: tuple[str, ...]
    loco_train_noise: tuple[str, ...]
    test_noise: str | None  # None: no leave-one-corpus-out evaluation (a single corpus)
    weights_licence: str
    placeholder: bool
    notes: tuple[str, ...]
    corpora: dict[str, Source]
    noise: dict[str, Source]
    origin: str  # the recipe file
    sha256: str  # of the recipe file as written
    table: dict[str, Any]  # as written (relative roots; a training_recipe file's keys inline), for the manifest
    levers: dict[str, Any] = field(default_factory=dict)  # [training]: TrainingConfig levers (docs/design.md §7)
    input_norm: str = "none"  # [training] input_norm: SystemConfig's
    loco_targets: dict[tuple[str, str], float] = field(default_factory=dict)  # (train, test) -> noisy UAR %

    @property
    def loco(self) -> list[tuple[str, str]]:
        """(training corpus, held-out test corpus) pairs: every ordered pair of corpora."""
        if self.test_noise is None:
            return []
        return [(a, b) for a in self.corpora for b in self.corpora if a != b]


def load_bundle_recipe(path: str | Path, work: Path | None = None, epochs: int | None = None) -> BundleRecipe:
    """Read and check a bundle recipe; `work` and `epochs` override the file's (a smoke test)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        table = tomllib.loads(raw.decode())
    except OSError as err:
        raise BundleRecipeError(f"{path}: cannot read the recipe ({err.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BundleRecipeError(f"{path}: not valid TOML ({err})") from None
    return from_table(
        table, path.resolve().parent, str(path.resolve()), hashlib.sha256(raw).hexdigest(), work=work, epochs=epochs
    )


def _ints(value: Any, key: str, positive: bool = False) -> tuple[int, ...]:
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        or (positive and min(values) < 1)
        or len(set(values)) != len(values)
    ):
        raise BundleRecipeError(
            f"{key}: expected {'a positive integer' if positive else 'an integer'} or a list of "
            f"distinct ones, got {value!r}"
        )
    return tuple(values)


def _names(value: Any, key: str, known: Mapping[str, Any]) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or any(v not in known for v in values):
        raise BundleRecipeError(
            f"{key}: expected a list of noise corpora of this recipe ({', '.join(known)}), got {value!r}"
        )
    return tuple(values)


def _source(name: str, table: Any, role: ManifestKind, base: Path) -> Source:
    where = f"[{'corpora' if role == 'utterances' else 'noise'}.{name}]"
    try:
        check_name(name)
        return read_source(table, where, role, base, provenance=True)
    except CorpusError as err:
        raise BundleRecipeError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None


def _tables(table: Mapping[str, Any], key: str, role: str, base: Path) -> dict[str, Source]:
    value = table[key]
    if not isinstance(value, Mapping) or not value:
        raise BundleRecipeError(f"[{key}.<name>]: expected at least one table")
    return {str(n): _source(str(n), t, role, base) for n, t in value.items()}


def from_table(
    table: Mapping[str, Any],
    base: Path,
    origin: str,
    sha256: str = "",
    work: Path | None = None,
    epochs: int | None = None,
) -> BundleRecipe:
    """A checked BundleRecipe from a TOML table; relative paths are relative to `base`; a
    `training_recipe` file's keys count as written in the table (trnet.training.recipe)."""
    try:
        table = with_training_recipe(table, base, origin)
    except TrainingRecipeError as err:
        raise BundleRecipeError(str(err)) from None
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise BundleRecipeError(f"unknown key(s) {unknown}; a bundle recipe has {', '.join(KEYS)}")
    missing = [k for k in REQUIRED if k not in table]
    if missing:
        raise BundleRecipeError(f"missing key(s) {missing}")
    t = {**DEFAULTS, **table}
    corpora = _tables(t, "corpora", "utterances", base)
    noise = _tables(t, "noise", "noise", base)
    systems = {}
    for key in ("system", "baseline"):
        systems[key] = configs.resolve(str(t[key]))  # an alias (trnet-robust) names the system it stands for
        if systems[key] not in configs.names():
            raise BundleRecipeError(
                f"{key} {t[key]!r}: no such system or alias (known: {configs.known()}); an alias is written by "
                f"`trnet select STUDY --among all --alias NAME --out src/trnet/configs/selection.json`"
            )
        if load_config(systems[key]).train_conditions == "clean" and key == "system":
            raise BundleRecipeError(f"system {t[key]!r} trains on clean speech only; the bundle is for noise")
    if t["encoder"] not in ENCODERS:
        raise BundleRecipeError(f"encoder {t['encoder']!r}: expected one of {', '.join(ENCODERS)}")
    sizes = {k: _ints(t[k], k, positive=True)[0] for k in ("width", "seed")}
    if sizes["width"] > MAX_WIDTH:
        raise BundleRecipeError(f"width: expected an integer from 1 to {MAX_WIDTH}, got {sizes['width']}")
    try:  # the training keys, checked by the class that owns them
        training = {k: getattr(TrainingConfig(**{k: t[k] for k in RECIPE_TRAINING}), k) for k in RECIPE_TRAINING}
    except ValueError as err:
        raise BundleRecipeError(str(err)) from None
    if epochs is not None:
        training["epochs"] = _ints(epochs, "--epochs", positive=True)[0]
    try:  # checked with the epochs the runs train at least (min_updates may raise them)
        levers, input_norm = training_levers(t["training"], training["epochs"])
    except TrainingRecipeError as err:
        raise BundleRecipeError(str(err)) from None
    min_updates = _ints(t["min_updates"], "min_updates")[0]
    if min_updates < 0:
        raise BundleRecipeError(f"min_updates: expected an integer >= 0, got {min_updates}")
    train_noise = _names(t["train_noise"], "train_noise", noise)
    loco_noise = _names(t["loco_train_noise"] or list(train_noise), "loco_train_noise", noise)
    test_noise = t["test_noise"]
    if len(corpora) < 2:
        test_noise = None  # nothing to hold out
    elif test_noise is None or test_noise not in noise:
        raise BundleRecipeError(
            f"test_noise: expected one of the noise corpora ({', '.join(noise)}), got {test_noise!r}"
        )
    elif test_noise in loco_noise:
        raise BundleRecipeError(
            f"test_noise {test_noise!r} is also in loco_train_noise: the held-out corpus must "
            "be tested in noise its model never heard"
        )
    notes = [t["notes"]] if isinstance(t["notes"], str) else list(t["notes"])
    if not isinstance(t["se_options"], Mapping) or not isinstance(t["placeholder"], bool):
        raise BundleRecipeError("se_options: expected a table; placeholder: expected true or false")
    try:  # checked against the back-end's Options without building it, before any work
        se = enhance.spec(str(t["se"]), t["se_options"])
    except OptionError as err:
        raise BundleRecipeError(str(err)) from None
    return BundleRecipe(
        name=_checked_name(t["name"]),
        work=(work or base / str(t["work"])).resolve(),
        system=systems["system"],
        baseline=systems["baseline"],
        encoder=t["encoder"],
        **sizes,
        **training,
        min_updates=min_updates,
        loco_seeds=_ints(t["loco_seeds"], "loco_seeds", positive=True),
        se=se,
        noise_seed=_ints(t["noise_seed"], "noise_seed")[0],
        train_snrs=_ints(t["train_snrs"], "train_snrs"),
        test_snrs=_ints(t["test_snrs"], "test_snrs"),
        train_noise=train_noise,
        loco_train_noise=loco_noise,
        test_noise=test_noise,
        weights_licence=str(t["weights_licence"]),
        placeholder=t["placeholder"],
        notes=tuple(map(str, notes)),
        corpora=corpora,
        noise=noise,
        origin=origin,
        sha256=sha256,
        table=dict(table),
        levers=levers,
        input_norm=input_norm,
        loco_targets=_targets(t["loco_targets"], corpora, test_noise),
    )


def _targets(value: Any, corpora: Mapping[str, Any], test_noise: str | None) -> dict[tuple[str, str], float]:
    """[loco_targets]: "TRAIN -> TEST" = noisy UAR in % for directions of this recipe."""
    if not isinstance(value, Mapping):
        raise BundleRecipeError(f'[loco_targets]: expected a table of "TRAIN -> TEST" = UAR %, got {value!r}')
    out = {}
    for key, target in value.items():
        train, sep, test = (part.strip() for part in str(key).partition("->"))
        if not sep or train not in corpora or test not in corpora or train == test or test_noise is None:
            raise BundleRecipeError(
                f'[loco_targets] {key!r}: expected "TRAIN -> TEST" with two corpora of this recipe '
                f"({', '.join(corpora)}) and a test_noise"
            )
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 100:
            raise BundleRecipeError(f"[loco_targets] {key!r}: expected a UAR in % (0 to 100], got {target!r}")
        out[(train, test)] = float(target)
    return out


def _checked_name(name: Any) -> str:
    try:
        return pretrained.check_name(name, "name")
    except pretrained.BundleError as err:
        raise BundleRecipeError(str(err)) from None
