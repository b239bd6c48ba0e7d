"""The one corpus dispatcher: `corpora.load(kind, root, role, **options)`, as
`enhance.load(name, **options)` is for SE back-ends. `trnet prepare` and recipes both go
through it, so a corpus kind, its role and the options it takes are declared once, here.

Kinds and roles:
    iemocap, emodb, nemo, folder   emotional speech ("utterances")
    esc50, musan, noise      noise ("noise")
    synthetic                the built-in generator: its speech as "utterances", or its
                             noise/ folder as "noise" (it writes the corpus under `root`)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, ManifestKind
from trnet.options import OptionError, check, describe, path_options, ranged


@dataclass(frozen=True)
class NoOptions:
    """The options of a loader that takes none."""


@dataclass(frozen=True)
class FolderOptions:
    csv: Path | None = None  # the labels CSV (default ROOT/labels.csv); a recipe's path is relative to it
    labels: list[str] | None = None  # the class set: a subset of trnet.corpora.LABELS (default: all four)


@dataclass(frozen=True)
class MusanOptions:
    subsets: list[str] = field(default_factory=lambda: ["free-sound"])  # noise/ sub-folders (the paper's)


@dataclass(frozen=True)
class SyntheticOptions:
    seed: int = ranged(0, 0, 2**32 - 1)
    n_speakers: int = ranged(10, 2, 1000)
    utts_per_class: int = ranged(12, 1, 10_000)
    duration: list[float] = field(default_factory=lambda: [1.5, 3.0])  # seconds, min and max


@dataclass(frozen=True)
class Loader:
    """A corpus kind: what it can serve as, its options, and the module that reads it
    (imported when used, so that listing the kinds costs nothing)."""

    roles: tuple[ManifestKind, ...]
    module: str
    Options: type = NoOptions


LOADERS: dict[str, Loader] = {
    "iemocap": Loader(("utterances",), "trnet.corpora.iemocap"),
    "emodb": Loader(("utterances",), "trnet.corpora.emodb"),
    "nemo": Loader(("utterances",), "trnet.corpora.nemo"),
    "folder": Loader(("utterances",), "trnet.corpora.folder", FolderOptions),
    "esc50": Loader(("noise",), "trnet.corpora.esc50"),
    "musan": Loader(("noise",), "trnet.corpora.musan", MusanOptions),
    "noise": Loader(("noise",), "trnet.corpora.noisefolder"),
    "synthetic": Loader(("utterances", "noise"), "trnet.corpora.synthetic", SyntheticOptions),
}


def kinds(role: ManifestKind) -> tuple[str, ...]:
    """The corpus kinds that can serve as `role` ("utterances" or "noise")."""
    return tuple(k for k, loader in LOADERS.items() if role in loader.roles)


def check_options(kind: str, options: dict[str, Any], where: str) -> Any:
    """The options of corpus `kind`, checked and filled in; CorpusError naming `where` (e.g.
    "[noise.esc50]") for an unknown kind, an unknown option or a value of the wrong type."""
    if kind not in LOADERS:
        raise CorpusError(f"{where} kind {kind!r}: expected one of {', '.join(LOADERS)}")
    try:
        return check(LOADERS[kind].Options, options, f"{where} (kind {kind!r})")
    except OptionError as err:
        raise CorpusError(str(err)) from None


PROVENANCE = ("title", "language", "licence", "url")  # what a bundle recipe's tables may add


@dataclass(frozen=True)
class Source:
    """One corpus of a recipe: its loader (`kind`), its root, the loader's options (paths
    resolved) and, in a bundle recipe, its provenance (PROVENANCE keys, copied into the
    bundle's manifest)."""

    kind: str
    root: Path
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)


def read_source(table: Any, where: str, role: ManifestKind, base: Path, provenance: bool = False) -> Source:
    """A recipe's [corpus], [corpora.NAME] or [noise.NAME] table (`where`, e.g. "[noise.esc50]"),
    checked: `kind` and `root` present, a kind that serves `role`, the loader's options; relative
    paths resolved against `base`. The one parser of these tables, for `trnet reproduce`'s recipes
    and `trnet bundle`'s; CorpusError naming `where` otherwise."""
    if not isinstance(table, Mapping) or "kind" not in table or "root" not in table:
        raise CorpusError(f"{where}: expected a table with `kind` and `root`")
    kind = table["kind"]
    if kind not in kinds(role):
        raise CorpusError(f"{where} kind {kind!r}: expected one of {', '.join(kinds(role))}")
    extra = PROVENANCE if provenance else ()
    options = {k: v for k, v in table.items() if k not in ("kind", "root", *extra)}
    check_options(kind, options, where)
    for key in path_options(LOADERS[kind].Options):
        if key in options:
            options[key] = base / options[key]
    facts = {k: str(table[k]) for k in extra if k in table}
    return Source(kind, (base / str(table["root"])).resolve(), options, facts)


def describe_options(kind: str) -> str:
    return describe(LOADERS[kind].Options)


def load(kind: str, root: str | Path, role: ManifestKind = "utterances", **options: Any) -> LoadResult:
    """Read corpus `kind` at `root` as `role` with the loader's options; a CorpusError names
    what is wrong (unknown kind, a kind that cannot serve as `role`, a bad option)."""
    opts = check_options(kind, options, f"corpus {kind!r}")
    loader = LOADERS[kind]
    if role not in loader.roles:
        raise CorpusError(f"corpus kind {kind!r} gives {' or '.join(loader.roles)}, not {role}")
    module = importlib.import_module(loader.module)
    root = Path(root)
    if kind == "folder":
        result = module.load(root, csv_path=opts.csv, labels=opts.labels)
    elif kind == "synthetic":
        result = _synthetic(module, root, role, opts)
    else:
        result = module.load(root, **dataclasses.asdict(opts))
    if result.kind != role:
        raise CorpusError(f"corpus kind {kind!r} gave {result.kind}, expected {role}")
    return result


def _synthetic(module: Any, root: Path, role: ManifestKind, opts: SyntheticOptions) -> LoadResult:
    """The generator writes the corpus under `root`; its speech is a folder corpus, its noise/ a
    noise folder."""
    folder, noisefolder = (importlib.import_module(f"trnet.corpora.{m}") for m in ("folder", "noisefolder"))
    try:
        labels_csv = Path(module.generate(root, opts.seed, opts.n_speakers, opts.utts_per_class, tuple(opts.duration)))
    except ValueError as err:  # the generator's argument checks name the option
        raise CorpusError(f"synthetic corpus at {root}: {err}") from None
    return folder.load(labels_csv) if role == "utterances" else noisefolder.load(labels_csv.parent / "noise")
