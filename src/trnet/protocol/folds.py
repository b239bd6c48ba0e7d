"""Leave-one-speaker-out folds (authors' code; docs/design.md §3, §10): one fold per speaker;
one other speaker validates (model selection never sees the test speaker): the other speaker
of the same session where sessions pair two speakers, else the next speaker of the same
gender. The remaining speakers train (with paired sessions: those of all other sessions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trnet.corpora import natural_key

GENDER_ORDER = {"F": 0, "M": 1}


@dataclass(frozen=True)
class Fold:
    index: int
    test_speaker: str
    val_speaker: str
    train_speakers: tuple[str, ...]


def loso_folds(rows: Sequence[dict[str, Any]]) -> list[Fold]:
    """One fold per speaker, in a fixed order, so fold k means the same speaker on every
    machine. Two layouts (docs/design.md §3, §10):

    - every session holds two speakers (IEMOCAP, EmoDB): sessions in sorted order, within a
      session F before M (then by id); the session's other speaker validates and the speakers
      of all other sessions train (the authors' protocol: Ses01F, Ses01M, ...);
    - every session holds one speaker (nEMO: no sessions): speakers F before M, then by id;
      the next speaker of the same gender in that order (cyclically) validates, or the next
      speaker of any gender if the test speaker is the only one of theirs; all others train.

    Any other layout is refused: which speaker validates must follow from a stated rule."""
    members: dict[str, set[str]] = defaultdict(set)
    gender: dict[str, str] = {}
    session_of: dict[str, str] = {}
    for r in rows:
        spk, session = r["speaker"], str(r["session"])
        if session_of.setdefault(spk, session) != session:
            raise ValueError(f"speaker {spk} appears in sessions {session_of[spk]} and {session}")
        members[session].add(spk)
        gender.setdefault(spk, r.get("gender", ""))
    sessions = sorted(members, key=natural_key)
    sizes = {len(members[s]) for s in sessions}

    def order(speakers: Sequence[str]) -> list[str]:
        return sorted(speakers, key=lambda spk: (GENDER_ORDER.get(gender[spk], 2), natural_key(spk)))

    if sizes == {1}:
        return _next_same_gender_folds(order([spk for s in sessions for spk in members[s]]), gender)
    for s in sessions:
        if len(members[s]) != 2:
            raise ValueError(
                f"session {s} has {len(members[s])} speaker(s) ({', '.join(sorted(members[s]))}); "
                "leave-one-speaker-out needs exactly 2 speakers in every session, or 1 in every "
                "session (then the next speaker of the same gender validates)"
            )
    ordered = {s: order(members[s]) for s in sessions}
    folds: list[Fold] = []
    for s in sessions:
        train = tuple(spk for t in sessions if t != s for spk in ordered[t])
        first, second = ordered[s]
        folds += [Fold(len(folds), first, second, train), Fold(len(folds) + 1, second, first, train)]
    return folds


def _next_same_gender_folds(speakers: list[str], gender: dict[str, str]) -> list[Fold]:
    """Folds of a corpus whose speakers are their own sessions (`speakers` in fold order)."""
    if len(speakers) < 3:
        raise ValueError(f"{len(speakers)} speaker(s): leave-one-speaker-out with a validation speaker needs 3 or more")
    folds: list[Fold] = []
    for i, test in enumerate(speakers):
        same = [s for s in speakers if gender[s] == gender[test]]
        pool = same if len(same) > 1 else speakers
        val = pool[(pool.index(test) + 1) % len(pool)]
        folds.append(Fold(i, test, val, tuple(s for s in speakers if s not in (test, val))))
    return folds


@dataclass(frozen=True)
class Holdout:
    """A split with no test speaker, for a model trained to be shipped rather than scored
    (docs/design.md §11): the validation speakers select the epoch, every
    other speaker trains. `trnet.protocol.holdout` says which speakers validate."""

    name: str  # the run directory's name in place of fold<K>
    val_speakers: tuple[str, ...]
    train_speakers: tuple[str, ...]
    test_speaker: None = None


@dataclass(frozen=True)
class Split:
    """A fold's (train, validation, test) rows, as indices into the rows it was made from."""

    fold: Fold | Holdout
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def speakers(self) -> dict[str, Any]:
        """What a run records about its fold."""
        if isinstance(self.fold, Holdout):
            return {
                "test_speaker": None,
                "val_speakers": list(self.fold.val_speakers),
                "train_speakers": list(self.fold.train_speakers),
            }
        return {
            "test_speaker": self.fold.test_speaker,
            "val_speaker": self.fold.val_speaker,
            "train_speakers": list(self.fold.train_speakers),
        }


def split(rows: Sequence[dict[str, Any]], fold: int | Fold | Holdout) -> Split:
    """The rows (indices, in manifest order) of fold `fold` (an index into `loso_folds(rows)`,
    a Fold, or a Holdout: no test rows): training speakers, the validation speaker(s), the
    test speaker."""
    if isinstance(fold, Holdout):
        present = {str(r["speaker"]) for r in rows}
        missing = [s for s in (*fold.val_speakers, *fold.train_speakers) if s not in present]
        if missing or not fold.val_speakers or not fold.train_speakers:
            raise ValueError(
                f"split {fold.name}: speakers {missing or 'none'} are not in the corpus "
                f"({len(fold.val_speakers)} validation, {len(fold.train_speakers)} training speakers)"
            )
        speaker = np.array([str(r["speaker"]) for r in rows])
        return Split(
            fold,
            np.flatnonzero(np.isin(speaker, list(fold.train_speakers))),
            np.flatnonzero(np.isin(speaker, list(fold.val_speakers))),
            np.zeros(0, np.int64),
        )
    if not isinstance(fold, Fold):
        folds = loso_folds(rows)
        if not 0 <= fold < len(folds):
            raise ValueError(f"fold {fold} out of range: this corpus has {len(folds)} folds (0..{len(folds) - 1})")
        fold = folds[fold]
    speaker = np.array([str(r["speaker"]) for r in rows])

    def rows_of(speakers: Sequence[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(speaker, list(speakers)))

    return Split(fold, rows_of(fold.train_speakers), rows_of([fold.val_speaker]), rows_of([fold.test_speaker]))
