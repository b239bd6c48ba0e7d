"""Where a bundle recipe's work lives, and what each store and run of it is.

Layout of WORK:
    .lock                          held by the `trnet bundle` working on WORK (an OS lock)
    bundle.log                     every progress line, with its time
    manifests/<corpus>.csv         one corpus, ids/speakers/sessions prefixed (corpora.combined)
    manifests/all.csv              every corpus combined: the shipped model's training data
    manifests/noise-<name>.csv
    stores/final/                  all.csv x train_noise at train_snrs
    stores/loco-train-<corpus>/    <corpus>.csv x loco_train_noise at train_snrs
    stores/loco-test-<corpus>/     <corpus>.csv x test_noise at test_snrs (all utterances tested)
    runs/<store>/<tag>/<system>/holdout-seed<S>/    runs (trnet.runs), split: protocol.holdout; the tag
                                   names the training settings, levers and input_norm included
    results/                       loco.csv, summary.json, measure.json
    card/results.md                the model card's measured sections
    bundle/<name>/                 the bundle (trnet.pretrained), ready to install
Runs live under their store and a tag of the training settings and the store's hash, so a
changed width, system or store starts new runs instead of reusing old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trnet.batches import n_train_batches
from trnet.bundle.recipe import BundleRecipe
from trnet.protocol.folds import split
from trnet.protocol.holdout import corpus_holdout
from trnet.store import ConditionStore
from trnet.training.recipe import levers_tag
from trnet.training.trainer import RunSpec, recipe_run_spec

ALL = "all"  # the combined manifest's name
FINAL = "final"


@dataclass(frozen=True)
class StorePlan:
    """One condition store of the recipe: which manifest, which noise corpora, which SNRs."""

    name: str
    corpus: str  # a corpus name, or ALL
    noises: tuple[str, ...]
    snrs: tuple[int, ...]


@dataclass(frozen=True)
class Group:
    """Runs trained one after the other on one store (Baseline-c first where a system needs
    its teacher, which the trainer trains itself): the shipped model, or one direction and
    seed of the leave-one-corpus-out evaluation."""

    store: str
    systems: tuple[str, ...]
    seed: int
    train_noise: tuple[str, ...]
    test_store: str | None = None  # leave-one-corpus-out: the held-out corpus's store
    train_corpus: str = ALL
    test_corpus: str | None = None

    @property
    def label(self) -> str:
        if self.test_store is None:
            return f"final model seed {self.seed}"
        return f"{self.train_corpus} -> {self.test_corpus} seed {self.seed}"


def stores(recipe: BundleRecipe) -> dict[str, StorePlan]:
    out = {FINAL: StorePlan(FINAL, ALL, recipe.train_noise, recipe.train_snrs)}
    for train, test in recipe.loco:
        out[f"loco-train-{train}"] = StorePlan(f"loco-train-{train}", train, recipe.loco_train_noise, recipe.train_snrs)
        out[f"loco-test-{test}"] = StorePlan(f"loco-test-{test}", test, (recipe.test_noise,), recipe.test_snrs)
    return out


def groups(recipe: BundleRecipe) -> list[Group]:
    """The shipped model first (what the lead waits for), then every LOCO direction x seed."""
    out = [Group(FINAL, (recipe.system,), recipe.seed, recipe.train_noise)]
    for seed in recipe.loco_seeds:
        for train, test in recipe.loco:
            out.append(
                Group(
                    f"loco-train-{train}",
                    tuple(dict.fromkeys((recipe.system, recipe.baseline))),  # once if validation chose the baseline
                    seed,
                    recipe.loco_train_noise,
                    f"loco-test-{test}",
                    train,
                    test,
                )
            )
    return out


def store_path(recipe: BundleRecipe, name: str) -> Path:
    return recipe.work / "stores" / name


def manifest_path(recipe: BundleRecipe, corpus: str) -> Path:
    return recipe.work / "manifests" / f"{corpus}.csv"


def noise_path(recipe: BundleRecipe, noise: str) -> Path:
    return recipe.work / "manifests" / f"noise-{noise}.csv"


def runs_root(recipe: BundleRecipe, group: Group, store: ConditionStore) -> Path:
    extra = "" if recipe.lr_schedule == "constant" else f"-{recipe.lr_schedule}"
    extra += ("-bucket" if recipe.bucket else "") + (f"-u{recipe.min_updates}" if recipe.min_updates else "")
    extra += levers_tag(recipe.epochs, recipe.levers, recipe.input_norm)  # '' without levers, as in the grid's
    tag = (
        f"{recipe.encoder}-w{recipe.width}-e{recipe.epochs}-b{recipe.batch_size}-p{recipe.patience}{extra}-"
        f"{'+'.join(group.train_noise)}-{store.key['hash'][:10]}"
    )
    return recipe.work / "runs" / group.store / tag


def run_spec(recipe: BundleRecipe, group: Group, system: str, device: str) -> RunSpec:
    """A run of the group: the holdout split of its store's corpora (protocol.holdout)."""
    path = store_path(recipe, group.store)
    store = ConditionStore(path)
    holdout = corpus_holdout(store.rows)
    return recipe_run_spec(
        recipe,
        system,
        holdout,
        group.seed,
        path,
        runs_root(recipe, group, store),
        system_extra={"input_norm": recipe.input_norm} if recipe.input_norm != "none" else None,
        training_extra={**recipe.levers, "epochs": run_epochs(recipe, len(split(store.rows, holdout).train))},
        train_noise=group.train_noise,
        device=device,
    )


def run_epochs(recipe: BundleRecipe, n_train: int) -> int:
    """The recipe's epochs, or more where a run would otherwise make fewer than `min_updates`
    optimiser updates (a small corpus alone, e.g. EmoDB's 300 training utterances)."""
    per_epoch = max(1, n_train_batches(n_train, recipe.batch_size))
    return max(recipe.epochs, -(-recipe.min_updates // per_epoch))
