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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trnet.corpora import emodb, esc50, folder, iemocap, musan, nemo, noisefolder, synthetic
from trnet.corpora.manifest import CorpusError, LoadResult, ManifestKind


@dataclass(frozen=True)
class Loader:
    """A corpus kind: what it can serve as, the options it takes (those naming a file or folder
    are resolved against a recipe's folder), and the function that reads it."""

    roles: tuple[ManifestKind, ...]
    options: tuple[str, ...]
    read: Callable[..., LoadResult]
    path_options: tuple[str, ...] = ()


def _folder(root: Path, role: ManifestKind, csv: Path | None = None, labels: list[str] | None = None) -> LoadResult:
    return folder.load(root, csv_path=csv, labels=labels)


def _synthetic(root: Path, role: ManifestKind, **options: Any) -> LoadResult:
    if "duration" in options:
        options["duration"] = tuple(options["duration"])
    try:
        labels_csv = Path(synthetic.generate(root, **options))
    except ValueError as err:  # the generator's argument checks name the option
        raise CorpusError(f"synthetic corpus at {root}: {err}") from None
    return folder.load(labels_csv) if role == "utterances" else noisefolder.load(labels_csv.parent / "noise")


def _plain(module: Any) -> Callable[..., LoadResult]:
    def read(root: Path, role: ManifestKind, **options: Any) -> LoadResult:
        return module.load(root, **options)

    return read


LOADERS: dict[str, Loader] = {
    "iemocap": Loader(("utterances",), (), _plain(iemocap)),
    "emodb": Loader(("utterances",), (), _plain(emodb)),
    "nemo": Loader(("utterances",), (), _plain(nemo)),
    "folder": Loader(("utterances",), ("csv", "labels"), _folder, path_options=("csv",)),
    "esc50": Loader(("noise",), (), _plain(esc50)),
    "musan": Loader(("noise",), ("subsets",), _plain(musan)),
    "noise": Loader(("noise",), (), _plain(noisefolder)),
    "synthetic": Loader(("utterances", "noise"), ("seed", "n_speakers", "utts_per_class", "duration"), _synthetic),
}


def kinds(role: ManifestKind) -> tuple[str, ...]:
    """The corpus kinds that can serve as `role` ("utterances" or "noise")."""
    return tuple(k for k, loader in LOADERS.items() if role in loader.roles)


def check_options(kind: str, options: dict[str, Any], where: str) -> None:
    """CorpusError naming `where` (e.g. "[noise.esc50]") for an unknown kind or option."""
    if kind not in LOADERS:
        raise CorpusError(f"{where} kind {kind!r}: expected one of {', '.join(LOADERS)}")
    unknown = sorted(set(options) - set(LOADERS[kind].options))
    if unknown:
        allowed = ", ".join(LOADERS[kind].options) or "none"
        raise CorpusError(f"{where}: unknown option(s) {unknown} for kind {kind!r} (allowed: {allowed})")


def load(kind: str, root: str | Path, role: ManifestKind = "utterances", **options: Any) -> LoadResult:
    """Read corpus `kind` at `root` as `role` with the loader's options; a CorpusError names
    what is wrong (unknown kind, a kind that cannot serve as `role`, a bad option)."""
    check_options(kind, options, f"corpus {kind!r}")
    loader = LOADERS[kind]
    if role not in loader.roles:
        raise CorpusError(f"corpus kind {kind!r} gives {' or '.join(loader.roles)}, not {role}")
    result = loader.read(Path(root), role, **options)
    if result.kind != role:
        raise CorpusError(f"corpus kind {kind!r} gave {result.kind}, expected {role}")
    return result
