"""Several emotional corpora as one manifest (docs/design.md §11).

A model trained on EmoDB and nEMO together reads one manifest, so the condition store, the
batches and the trainer need not know there are two corpora. Speaker ids, session names
and utterance ids of different corpora can collide (two releases may both number their
speakers from 01), and a collision would merge two speakers into one, or give two
utterances one noise clip and one store row. So every part's `id`, `speaker` and `session`
are prefixed with the part's name: `emodb-03`, `nemo-IC0`. Names are lower-case letters
and digits, so the first `-` always ends the prefix and `part_of` can read it back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from trnet.corpora.manifest import CorpusError

Row = dict[str, Any]
SEPARATOR = "-"
PREFIXED = ("id", "speaker", "session")
NAME = re.compile(r"^[a-z][a-z0-9]*$")


def check_name(name: str) -> str:
    """A part name usable as a prefix (CorpusError otherwise)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise CorpusError(
            f"corpus name {name!r}: expected lower-case letters and digits, starting with a letter "
            "(it prefixes speaker and utterance ids)"
        )
    return name


def prefixed(name: str, value: Any) -> str:
    """`value` (a speaker, session or utterance id) of part `name` in a combined manifest."""
    return f"{name}{SEPARATOR}{value}"


def part_of(value: str) -> str:
    """The part name of a prefixed id, speaker or session (CorpusError if it has none)."""
    name, sep, _ = str(value).partition(SEPARATOR)
    if not sep or not NAME.match(name):
        raise CorpusError(f"{value!r} carries no corpus prefix ('<corpus>{SEPARATOR}...'): not a combined manifest")
    return name


def combine(parts: Mapping[str, Sequence[Row]]) -> list[Row]:
    """One utterance manifest from several: the parts' rows in the given order, `id`,
    `speaker` and `session` prefixed with the part's name; every other column unchanged.
    A single part is prefixed too, so that every manifest of the bundle recipe has the
    same form."""
    if not parts:
        raise CorpusError("no corpus to combine")
    out: list[Row] = []
    for name, rows in parts.items():
        check_name(name)
        if not rows:
            raise CorpusError(f"corpus {name!r} has no utterances")
        out += [{**row, **{k: prefixed(name, row[k]) for k in PREFIXED}} for row in rows]
    ids = [row["id"] for row in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CorpusError(f"utterance id {dup!r} appears twice in one corpus")
    return out


def parts(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """A combined manifest's rows by part, in order of first appearance."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(part_of(row["speaker"]), []).append(row)
    return out
