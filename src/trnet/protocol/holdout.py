"""Which speakers validate a model trained on every speaker (docs/design.md §11): the shipped
model has no test speaker, since its test is another corpus (leave-one-corpus-out) and the
studies' leave-one-speaker-out numbers. It still needs validation speakers, for epoch
selection only.

The rule, fixed so that nobody picks a convenient speaker: for each corpus of a combined
manifest (`trnet.corpora.combined`), the validation speaker of that corpus's fold 0 under
`trnet.protocol.folds.loso_folds` (EmoDB: 03, nEMO: IC0). Every other speaker trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trnet.corpora import natural_key
from trnet.corpora.combined import parts, prefixed
from trnet.protocol.folds import Holdout, loso_folds

NAME = "holdout"  # the run directory is <system>/holdout-seed<S>


def unprefixed(rows: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """A part's rows with its prefix removed from speaker and session (what loso_folds of
    that corpus alone sees, so fold 0 means the same speaker as in the studies)."""
    cut = len(prefixed(name, ""))
    return [{**r, "speaker": str(r["speaker"])[cut:], "session": str(r["session"])[cut:]} for r in rows]


def validation_speakers(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Corpus name -> its validation speaker (prefixed, as in `rows`)."""
    out = {}
    for name, part in parts(rows).items():
        out[name] = prefixed(name, loso_folds(unprefixed(part, name))[0].val_speaker)
    return out


def corpus_holdout(rows: Sequence[dict[str, Any]]) -> Holdout:
    """The Holdout of a combined manifest: one validation speaker per corpus, all others train."""
    val = tuple(validation_speakers(rows).values())
    train = tuple(sorted({str(r["speaker"]) for r in rows} - set(val), key=natural_key))
    return Holdout(NAME, val, train)
