"""Step 1 of a recipe: the manifests of its corpus and noise corpora, through the one corpus
dispatcher (`trnet.corpora.load`). A manifest is rewritten only if its content changed, so an
unchanged corpus keeps its file, and the store keyed on it stays valid."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trnet import corpora
from trnet.corpora import LoadResult, Source, write_manifest
from trnet.corpora.summary import summary
from trnet.experiments.recipe import Recipe


def write_if_changed(path: Path, result: LoadResult) -> bool:
    """Write the manifest only if its content differs from what is on disk; True if written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    try:
        write_manifest(tmp, result.rows, result.kind)
        if path.is_file() and Path(tmp).read_bytes() == path.read_bytes():
            return False
        os.replace(tmp, path)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def describe(source: Source, result: LoadResult) -> dict[str, Any]:
    """What the report says about a corpus: kind, root, options, counts, what was set aside."""
    info: dict[str, Any] = {
        "kind": source.kind,
        "root": str(source.root),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in source.options.items()},
    }
    if result.kind == "utterances":
        info.update(
            utterances=len(result.rows),
            speakers=len({r["speaker"] for r in result.rows}),
            classes={c: sum(r["label"] == c for r in result.rows) for c in sorted({r["label"] for r in result.rows})},
        )
    else:
        info.update(clips=len(result.rows), sources=len({r["source"] for r in result.rows}))
    return {**info, "set_aside": result.set_aside, "notes": result.notes}


def prepare(recipe: Recipe, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Path], dict[str, Any]]:
    """Manifests of the corpus and the noise corpora: (corpus path, name -> noise path, info)."""
    folder = recipe.work / "manifests"
    jobs = [("corpus", recipe.corpus, "utterances", folder / "corpus.csv")]
    jobs += [(name, src, "noise", folder / f"noise-{name}.csv") for name, src in recipe.noise.items()]
    info: dict[str, Any] = {"noise": {}}
    for name, source, role, path in jobs:
        result = corpora.load(source.kind, source.root, role, **source.options)
        if write_if_changed(path, result):
            log(summary(name, result))
            log(f"wrote {path}")
        else:
            log(f"manifest {path} unchanged ({len(result.rows)} rows)")
        if role == "utterances":
            info["corpus"] = describe(source, result)
        else:
            info["noise"][name] = describe(source, result)
    return folder / "corpus.csv", {name: folder / f"noise-{name}.csv" for name in recipe.noise}, info
