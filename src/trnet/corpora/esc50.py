"""ESC-50 noise clips (docs/design.md §2): `ROOT/meta/esc50.csv` + `ROOT/audio/<filename>`.

Every clip is one 5 s noise row (offset 0, duration 5); its source is the metadata's
`src_file` (the Freesound recording it was cut from), which is what the source-disjoint
noise pools group on. The CSV is the authority on which clips exist, so a subset release
(e.g. folds 1-2 only, with a matching esc50.csv) loads unchanged.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, not_utf8, open_csv, require_dir

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
CLIP_SECONDS = 5.0


def load(root: Path) -> LoadResult:
    """Read ESC-50's metadata and check that each listed clip is in `ROOT/audio/`."""
    root = require_dir(Path(root), "an ESC-50 release with meta/esc50.csv and audio/")
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise CorpusError(f"{meta}: not found (expected ESC-50's metadata at ROOT/meta/esc50.csv)")
    audio = require_dir(root / "audio", "ESC-50's clips at ROOT/audio/*.wav")
    try:
        with open_csv(meta) as f:
            reader = csv.DictReader(f)
            missing_cols = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing_cols:
                raise CorpusError(f"{meta}: lacks column(s) {missing_cols}; expected {','.join(COLUMNS)}")
            entries = list(reader)
    except UnicodeDecodeError as err:
        raise not_utf8(meta, err) from None
    rows: list[dict[str, Any]] = []
    set_aside: Counter[str] = Counter()
    notes: list[str] = []
    for entry in entries:
        clip = audio / entry["filename"]
        if not clip.is_file():
            set_aside["listed in esc50.csv, no audio"] += 1
            if not notes:
                notes.append(f"clips listed in {meta} but absent, e.g. {clip}")
            continue
        rows.append(
            dict(
                id=clip.stem,
                path=str(clip),
                source=entry["src_file"],
                category=entry["category"],
                offset=0.0,
                duration=CLIP_SECONDS,
            )
        )
    if not rows:
        raise CorpusError(f"{audio}: none of the {len(entries)} clips listed in {meta} is there")
    return LoadResult("noise", rows, dict(set_aside), notes)
