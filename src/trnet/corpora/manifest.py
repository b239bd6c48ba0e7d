"""Manifests: the CSV files every loader writes and the rest of the pipeline reads.

Every loader returns a `LoadResult`: the kept rows plus what was set aside and why, so that
nothing is dropped silently (docs/design.md §3: "report unused classes"). The columns are fixed by
docs/architecture.md; this module is their one owner.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import soundfile as sf

from trnet.audio import quiet_decoder, unreadable
from trnet.utils import UserError, atomic_path, printable

LABELS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")

UTTERANCE_COLUMNS: tuple[str, ...] = ("id", "path", "label", "speaker", "session", "gender", "duration")
NOISE_COLUMNS: tuple[str, ...] = ("id", "path", "source", "category", "offset", "duration")
COLUMNS: dict[str, tuple[str, ...]] = {"utterances": UTTERANCE_COLUMNS, "noise": NOISE_COLUMNS}
FLOAT_COLUMNS = ("duration", "offset")

ManifestKind = Literal["utterances", "noise"]


class CorpusError(UserError):
    """A corpus or manifest that cannot be used; the message says what was expected where."""


@dataclass
class LoadResult:
    """What a loader found: manifest rows, plus counts of what it set aside (reason -> count)
    and free-text notes on choices it made, both printed by `trnet prepare`."""

    kind: ManifestKind
    rows: list[dict[str, Any]]
    set_aside: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key that orders numbers inside names numerically ("sp2" < "sp10", "2" < "10")."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name)))


def require_dir(path: Path, what: str) -> Path:
    """`path` as a directory, or a CorpusError naming what was expected there."""
    if not path.exists():
        raise CorpusError(f"{path}: not found (expected {what})")
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected {what})")
    return path


def open_csv(path: Path) -> TextIO:
    """A CSV opened for reading as UTF-8, with or without the byte-order mark that spreadsheet
    programs write ("CSV UTF-8"); readers turn a UnicodeDecodeError into `not_utf8(path, err)`."""
    return path.open(newline="", encoding="utf-8-sig")


def not_utf8(path: Path, err: UnicodeDecodeError) -> CorpusError:
    return CorpusError(
        f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
        'save it as UTF-8 ("CSV UTF-8" in spreadsheet programs)'
    )


def audio_frames(path: Path) -> tuple[int, int]:
    """(frames, sample rate) from the file header only: scanning thousands of files must not
    decode them."""
    try:
        with quiet_decoder():
            info = sf.info(os.fsencode(path))  # bytes: any file name, UTF-8 or not
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorpusError(unreadable(path, err)) from None
    return info.frames, info.samplerate


def write_manifest(path: str | Path, rows: Iterable[dict[str, Any]], kind: ManifestKind) -> Path:
    """Write rows as a manifest CSV with the contract's exact column order, atomically (a crash
    never leaves half a manifest). Paths are written absolute."""
    if kind not in COLUMNS:
        raise CorpusError(f"unknown manifest kind {kind!r}; expected one of {sorted(COLUMNS)}")
    columns = COLUMNS[kind]
    rows = list(rows)
    seen: set[str] = set()
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise CorpusError(f"{kind} row {i} ({row.get('id', '?')}) lacks column(s) {missing}")
        if not str(row["id"]) or str(row["id"]) in seen:
            raise CorpusError(f"{kind} row {i}: empty or duplicate id {row['id']!r}")
        seen.add(str(row["id"]))
    path = Path(path)
    for row in rows:
        try:
            "".join(map(str, (row[c] for c in columns))).encode("utf-8")
        except UnicodeEncodeError:
            raise CorpusError(
                f"{printable(row['path'])}: the file name is not valid UTF-8; rename the file "
                f"(e.g. convmv -f latin1 -t utf-8) and run again"
            ) from None
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            values = {**row, "path": os.path.abspath(row["path"])}
            writer.writerow([values[c] for c in columns])
    return path


def read_manifest(path: str | Path, kind: ManifestKind | None = None) -> list[dict[str, Any]]:
    """Read a manifest written by `write_manifest` (either kind, told apart by its header; with
    `kind`, a manifest of the other kind is a CorpusError). `duration`/`offset` come back as
    floats, everything else as strings; a relative path is taken relative to the manifest's
    folder."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: manifest not found (write it with `trnet prepare`)")
    try:
        return _read_manifest(path, kind)
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from None


def _read_manifest(path: Path, want: ManifestKind | None = None) -> list[dict[str, Any]]:
    with open_csv(path) as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        kind = next((k for k, cols in COLUMNS.items() if header == cols), None)
        if kind is None:
            expected = " or ".join(",".join(c) for c in COLUMNS.values())
            raise CorpusError(
                f"{path}: header {','.join(header) or '(empty file)'!r} is not a manifest header; expected {expected}"
            )
        if want is not None and kind != want:
            made_by = "iemocap|emodb|nemo|folder" if want == "utterances" else "esc50|musan|noise"
            raise CorpusError(
                f"{path} is a manifest of {kind}, not of {want} (write one with `trnet prepare {made_by}`)"
            )
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise CorpusError(f"{path}:{line}: {len(values)} fields, expected {len(header)}")
            row: dict[str, Any] = dict(zip(header, values, strict=False))
            if not row["id"] or row["id"] in seen:
                raise CorpusError(f"{path}:{line}: empty or duplicate id {row['id']!r}")
            seen.add(row["id"])
            for col in FLOAT_COLUMNS:
                if col in row:
                    try:
                        row[col] = float(row[col])
                    except ValueError:
                        raise CorpusError(f"{path}:{line}: {col} {row[col]!r} is not a number") from None
            row["path"] = os.path.abspath(path.parent / row["path"])
            rows.append(row)
    return rows
