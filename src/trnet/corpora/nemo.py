"""nEMO (Christop 2024): Polish acted emotional speech, 9 speakers, 6 emotions, 24 kHz,
CC BY-NC-SA 4.0; the public repository github.com/amu-cai/nEMO.

Layout of a release: `ROOT/data.tsv` (tab-separated, header
`file_id, emotion, raw_text, normalized_text, speaker_id, gender, age`) and
`ROOT/samples/<file_id>`. In the release `speaker_id` carries leading blanks (`"        EB0"`),
which are stripped; `gender` is `female`/`male`. The 4 classes are anger -> angry,
happiness -> happy, neutral -> neutral, sadness -> sad (3,076 utterances); fear and surprised
are set aside and reported.

nEMO has no sessions: every speaker is its own session, so each speaker draws noise from a
pool of its own (`trnet.protocol.noise`) and the folds follow the one-speaker-per-session
rule of `trnet.protocol.folds` (the next speaker of the same gender validates;
docs/design.md §10).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import (
    CorpusError,
    LoadResult,
    audio_frames,
    natural_key,
    not_utf8,
    open_csv,
    require_dir,
)

EMOTIONS = {"anger": "angry", "happiness": "happy", "neutral": "neutral", "sadness": "sad"}
SET_ASIDE = {"fear": "fear", "surprised": "surprised"}
GENDERS = {"female": "F", "male": "M"}
COLUMNS = ("file_id", "emotion", "speaker_id", "gender")  # the ones read; the release has 7


def load(root: Path) -> LoadResult:
    """Read `ROOT/data.tsv` of an nEMO release and check that every kept sample exists."""
    root = require_dir(Path(root), "the nEMO release folder with data.tsv and samples/")
    tsv = root / "data.tsv"
    if not tsv.is_file():
        raise CorpusError(f"{tsv}: not found (expected nEMO's data.tsv beside samples/)")
    samples = require_dir(root / "samples", "nEMO's samples/ folder with <file_id>.wav files")
    try:
        with open_csv(tsv) as f:
            reader = csv.DictReader(f, delimiter="\t")
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise CorpusError(
                    f"{tsv}: header lacks column(s) {missing} (expected {', '.join(COLUMNS)}, tab-separated)"
                )
            entries = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as err:
        raise not_utf8(tsv, err) from None
    rows: list[dict[str, Any]] = []
    set_aside: Counter[str] = Counter()
    for line, row in entries:
        file_id, emotion = (row["file_id"] or "").strip(), (row["emotion"] or "").strip()
        speaker, gender = (row["speaker_id"] or "").strip(), (row["gender"] or "").strip()
        if not file_id or "/" in file_id or "\\" in file_id or file_id in (".", ".."):
            raise CorpusError(f"{tsv}:{line}: file_id {row['file_id']!r} is not a file name in samples/")
        if not speaker:
            raise CorpusError(f"{tsv}:{line}: empty speaker_id")
        if gender not in GENDERS:
            raise CorpusError(f"{tsv}:{line}: gender {gender!r}, expected female or male")
        if emotion not in EMOTIONS:
            set_aside[SET_ASIDE.get(emotion, f"unknown emotion ({emotion})")] += 1
            continue
        path = samples / file_id
        if not path.is_file():
            raise CorpusError(f"{tsv}:{line}: {path} not found")
        frames, sr = audio_frames(path)
        rows.append(
            dict(
                id=Path(file_id).stem,
                path=str(path),
                label=EMOTIONS[emotion],
                speaker=speaker,
                session=speaker,
                gender=GENDERS[gender],
                duration=frames / sr,
            )
        )
    if not rows:
        raise CorpusError(f"{tsv}: no utterance of the four classes ({', '.join(EMOTIONS)})")
    rows.sort(key=lambda r: natural_key(r["id"]))  # the release lists files in no particular order
    return LoadResult(
        "utterances",
        rows,
        dict(sorted(set_aside.items())),
        [
            "no sessions in nEMO: each speaker is its own session (own noise pool; "
            "the next speaker of the same gender validates)"
        ],
    )
