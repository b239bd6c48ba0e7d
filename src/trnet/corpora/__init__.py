"""Corpora: one loader per corpus turns a release on disk into a manifest CSV (list of rows),
behind one dispatcher, `trnet.corpora.load(kind, root, role, **options)`.

    result = trnet.corpora.load("emodb", "data/emodb")          # LoadResult: rows + set aside
    trnet.corpora.write_manifest("work/emodb.csv", result.rows, result.kind)
    rows = trnet.corpora.read_manifest("work/emodb.csv")

Manifests are the only thing the rest of the pipeline reads (`trnet.corpora.manifest` owns
their columns); loaders live in one module each and are registered in `registry.py`.
"""

from trnet.corpora.manifest import (
    COLUMNS,
    LABELS,
    NOISE_COLUMNS,
    UTTERANCE_COLUMNS,
    CorpusError,
    LoadResult,
    ManifestKind,
    audio_frames,
    natural_key,
    read_manifest,
    require_dir,
    write_manifest,
)
from trnet.corpora.registry import (
    LOADERS,
    PROVENANCE,
    Loader,
    Source,
    check_options,
    describe_options,
    kinds,
    load,
    read_source,
)

__all__ = [
    "COLUMNS",
    "LABELS",
    "LOADERS",
    "NOISE_COLUMNS",
    "PROVENANCE",
    "UTTERANCE_COLUMNS",
    "CorpusError",
    "LoadResult",
    "Loader",
    "ManifestKind",
    "Source",
    "audio_frames",
    "check_options",
    "describe_options",
    "kinds",
    "load",
    "natural_key",
    "read_manifest",
    "read_source",
    "require_dir",
    "write_manifest",
]
