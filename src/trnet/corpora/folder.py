"""Bring-your-own emotion corpus: a folder of audio plus a CSV (RAVDESS-style).

The CSV (default `ROOT/labels.csv`) has columns `file,label,speaker` and optionally
`session,gender`; `file` is relative to ROOT (or absolute). The leave-one-speaker-out
protocol validates on the other speaker of the test speaker's session, so sessions must pair
speakers: a `session` column must give every session exactly two speakers, and without one
the speakers are paired in sorted order ((1st, 2nd) -> session 1, ...), which the summary
says. Labels outside the class set (LABELS unless `labels` is given, a subset of LABELS: the
models and the training have exactly those four classes) are set aside and counted. Gender
(F/M) is optional; without it the fold order within a session is by id. Errors name the CSV
line (as a spreadsheet numbers it, header = 1).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trnet.audio import file_kind
from trnet.corpora.manifest import (
    LABELS,
    CorpusError,
    LoadResult,
    audio_frames,
    natural_key,
    not_utf8,
    open_csv,
    require_dir,
)

REQUIRED = ("file", "label", "speaker")
GENDERS = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M", "": ""}


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(columns, [(CSV line of the row, row)])."""
    if not path.is_file():
        raise CorpusError(
            f"{path}: {_missing(path)} (expected a CSV with columns {','.join(REQUIRED)}[,session,gender])"
        )
    try:
        with open_csv(path) as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in columns]
            if missing:
                raise CorpusError(f"{path}: lacks column(s) {missing}; expected {','.join(REQUIRED)}[,session,gender]")
            reader.fieldnames = columns
            entries = []
            line = reader.line_num + 1  # where the next row starts
            for row in reader:
                entries.append((line, {k: (v or "").strip() for k, v in row.items() if k}))
                line = reader.line_num + 1
            return columns, entries
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from None


def _missing(path: Path) -> str:
    """Why `path` is not a file that can be read: not found, or what it is instead."""
    try:
        return f"is {file_kind(path.stat().st_mode)}, not a regular file"
    except OSError:
        return "not found"


def check_labels(labels: Sequence[str] | None) -> tuple[str, ...]:
    """The class set: LABELS, or a subset of it (CorpusError for any other label)."""
    if not labels:
        return LABELS
    classes = tuple(label.strip().lower() for label in labels)
    other = [c for c in classes if c not in LABELS]
    if other:
        raise CorpusError(
            f"labels {','.join(classes)}: {', '.join(other)} is not one of the classes trnet models "
            f"({', '.join(LABELS)}); the class set may be a subset of them"
        )
    return classes


def _single(values: dict[str, set[str]], what: str, csv_path: Path) -> dict[str, str]:
    """speaker -> its one value of `what`; a speaker with two is an error."""
    clash = {spk: vals for spk, vals in values.items() if len(vals) > 1}
    if clash:
        spk, vals = next(iter(clash.items()))
        raise CorpusError(f"{csv_path}: speaker {spk} has several {what} values {sorted(vals)}")
    return {spk: next(iter(vals)) for spk, vals in values.items()}


def load(root: Path, csv_path: Path | None = None, labels: Sequence[str] | None = None) -> LoadResult:
    """Read the CSV, keep rows whose label is in the class set, and give each speaker a session."""
    root = Path(root)
    if root.is_file():  # the CSV itself was given
        root, csv_path = root.parent, root
    root = require_dir(root, "a folder of audio with labels.csv")
    csv_path = Path(csv_path) if csv_path else root / "labels.csv"
    classes = check_labels(labels)
    columns, entries = _read_csv(csv_path)
    rows: list[dict[str, Any]] = []
    set_aside: Counter[str] = Counter()
    sessions: dict[str, set[str]] = defaultdict(set)
    genders: dict[str, set[str]] = defaultdict(set)
    first_line: dict[str, int] = {}  # utterance id -> the CSV line that gave it
    for line, entry in entries:
        label, speaker = entry["label"].lower(), entry["speaker"]
        if not entry["file"] or not speaker:
            raise CorpusError(f"{csv_path}:{line}: empty file or speaker")
        if label not in classes:
            set_aside[f"label {label or '(empty)'}"] += 1
            continue
        audio = root / entry["file"]
        if not audio.is_file():
            raise CorpusError(f"{csv_path}:{line}: {audio} {_missing(audio)} (file is relative to {root})")
        gender = GENDERS.get(entry.get("gender", "").lower())
        if gender is None:
            raise CorpusError(f"{csv_path}:{line}: gender {entry['gender']!r} is not F/M")
        if "session" in columns:
            if not entry["session"]:
                raise CorpusError(f"{csv_path}:{line}: empty session")
            sessions[speaker].add(entry["session"])
        genders[speaker].add(gender)
        frames, sr = audio_frames(audio)
        rel = audio.relative_to(root) if audio.is_relative_to(root) else Path(audio.name)
        utt_id = rel.with_suffix("").as_posix().replace("/", "__")
        if utt_id in first_line:
            raise CorpusError(
                f"{csv_path}:{line}: {entry['file']} is listed again (first at line "
                f"{first_line[utt_id]}); list each file once"
            )
        first_line[utt_id] = line
        rows.append(
            dict(
                id=utt_id,
                path=str(audio),
                label=label,
                speaker=speaker,
                session="",
                gender=gender,
                duration=frames / sr,
            )
        )
    if not rows:
        raise CorpusError(
            f"{csv_path}: no row with a label in {', '.join(classes)} (the labels option sets the class set: "
            "--opt labels=a,b,... or labels = [...] in a recipe)"
        )
    speakers = sorted({r["speaker"] for r in rows}, key=natural_key)
    notes: list[str] = []
    if "session" in columns:
        session_of = _single(sessions, "session", csv_path)
        members: dict[str, list[str]] = defaultdict(list)
        for spk in speakers:
            members[session_of[spk]].append(spk)
        bad = {s: m for s, m in members.items() if len(m) != 2}
        if bad:
            s, m = next(iter(bad.items()))
            raise CorpusError(
                f"{csv_path}: session {s} has {len(m)} speaker(s) ({', '.join(m)}); each session must pair exactly 2"
            )
    else:
        if len(speakers) % 2:
            raise CorpusError(
                f"{csv_path}: {len(speakers)} speakers cannot be paired into sessions; add a session column"
            )
        session_of = {spk: str(i // 2 + 1) for i, spk in enumerate(speakers)}
        pairs = ", ".join(f"{i // 2 + 1}=({speakers[i]},{speakers[i + 1]})" for i in range(0, len(speakers), 2))
        notes.append(f"no session column: speakers paired in sorted order into sessions {pairs}")
    gender_of = _single(genders, "gender", csv_path)
    for row in rows:
        row["session"], row["gender"] = session_of[row["speaker"]], gender_of[row["speaker"]]
    return LoadResult("utterances", rows, dict(sorted(set_aside.items())), notes)
