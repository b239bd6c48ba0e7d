"""IEMOCAP from its raw release layout (docs/design.md §3).

Labels come from `ROOT/Session{n}/dialog/EmoEvaluation/<dialog>.txt`, one line per turn:
`[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`; every other
line (header, blank, `C-E1:`/`A-F2:` annotator lines) is ignored, as are the sub-folders
(`Categorical/`, `Attribute/`, ...). Audio is `ROOT/Session{n}/sentences/wav/<dialog>/<utt>.wav`.
The 4-class setup keeps neu/ang/sad/hap and merges exc into happy (5531 utterances); other
labels are set aside and counted. The speaker is the session plus the letter before the
number of the last id field (`Ses01F_script01_3_M012` -> Ses01M): the dialog prefix names the
session's recording, not who speaks.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, audio_frames, natural_key, require_dir

LABEL_MAP = {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"}
LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\d\d[FM]\S*)\s+(\w+)\s+\[")
SPEAKER = re.compile(r"^Ses(\d\d)[FM]\S*_([FM])\d+$")
LAYOUT = "ROOT/Session{1..5}/dialog/EmoEvaluation/*.txt (the raw IEMOCAP release)"


def parse_evaluation(text: str) -> list[tuple[str, str]]:
    """(utterance id, raw label) for each turn line of one EmoEvaluation file."""
    return [(m[1], m[2]) for line in text.splitlines() if (m := LINE.match(line))]


def speaker_of(utt_id: str) -> tuple[str, str, str]:
    """(speaker, session, gender) of an utterance id, e.g. Ses01F_script01_3_M012 ->
    ("Ses01M", "1", "M")."""
    m = SPEAKER.match(utt_id)
    if not m:
        raise CorpusError(f"{utt_id}: not an IEMOCAP utterance id (expected e.g. Ses01F_impro01_F000)")
    return f"Ses{m[1]}{m[2]}", str(int(m[1])), m[2]


def load(root: Path) -> LoadResult:
    """Scan an IEMOCAP release; rows for the 4 classes, the rest counted by raw label."""
    root = require_dir(Path(root), LAYOUT)
    sessions = sorted((p for p in root.glob("Session*") if p.is_dir()), key=lambda p: natural_key(p.name))
    files = [
        f
        for s in sessions
        for f in sorted((s / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not f.name.startswith(".")
    ]
    if not files:
        raise CorpusError(f"{root}: no EmoEvaluation files; expected {LAYOUT}")
    rows: list[dict[str, Any]] = []
    set_aside: Counter[str] = Counter()
    missing: Path | None = None
    for file in files:
        session_dir = file.parents[2]
        for utt_id, raw in parse_evaluation(file.read_text(errors="replace")):
            label = LABEL_MAP.get(raw)
            if label is None:
                set_aside[f"label {raw}"] += 1
                continue
            speaker, session, gender = speaker_of(utt_id)
            if session_dir.name != f"Session{session}":
                raise CorpusError(f"{file}: utterance {utt_id} belongs to Session{session}, not {session_dir.name}")
            wav = session_dir / "sentences" / "wav" / file.stem / f"{utt_id}.wav"
            if not wav.is_file():
                set_aside["missing wav"] += 1
                missing = missing or wav
                continue
            frames, sr = audio_frames(wav)
            rows.append(
                dict(
                    id=utt_id,
                    path=str(wav),
                    label=label,
                    speaker=speaker,
                    session=session,
                    gender=gender,
                    duration=frames / sr,
                )
            )
    if not rows:
        raise CorpusError(
            f"{root}: no usable utterance (no 4-class label with a wav at "
            "ROOT/Session{n}/sentences/wav/<dialog>/<utt>.wav)"
        )
    notes = [f"{set_aside['missing wav']} labelled utterances have no wav, e.g. {missing}"] if missing else []
    found = {p.name for p in sessions}
    if found != {f"Session{n}" for n in range(1, 6)}:
        notes.append(f"sessions found: {', '.join(sorted(found, key=natural_key))} (the release has Session1..5)")
    return LoadResult("utterances", rows, dict(sorted(set_aside.items())), notes)
