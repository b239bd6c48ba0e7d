"""EmoDB (Berlin Database of Emotional Speech), the development stand-in for IEMOCAP (docs/design.md §3).

File names encode everything: `03a01Fa.wav` = speaker 03, text a01, emotion F, version a.
The 4 classes are W->angry, F->happy, N->neutral, T->sad (339 utterances); boredom (L),
disgust (E) and fear (A) are set aside and reported. The ten speakers are paired into five
sessions of one man and one woman, in the fixed order (03,08) (09,10) (11,13) (12,14)
(15,16), so that the IEMOCAP leave-one-speaker-out protocol applies unchanged.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, audio_frames, require_dir

EMOTIONS = {"W": "angry", "F": "happy", "N": "neutral", "T": "sad"}
SET_ASIDE = {"L": "boredom (L)", "E": "disgust (E)", "A": "fear (A)"}
SESSIONS = (("03", "08"), ("09", "10"), ("11", "13"), ("12", "14"), ("15", "16"))
MEN = frozenset({"03", "10", "11", "12", "15"})  # the other five (08 09 13 14 16) are women
SESSION_OF = {spk: str(i) for i, pair in enumerate(SESSIONS, start=1) for spk in pair}
NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")


def load(root: Path) -> LoadResult:
    """Scan `ROOT/wav/*.wav` of an EmoDB release."""
    wav_dir = require_dir(Path(root) / "wav", "ROOT/wav/ with EmoDB's *.wav files (e.g. 03a01Fa.wav)")
    files = sorted(wav_dir.glob("*.wav"))
    if not files:
        raise CorpusError(f"{wav_dir}: no *.wav files (expected EmoDB names such as 03a01Fa.wav)")
    rows: list[dict[str, Any]] = []
    set_aside: Counter[str] = Counter()
    for wav in files:
        m = NAME.match(wav.stem)
        if not m:
            raise CorpusError(f"{wav}: not an EmoDB file name (expected e.g. 03a01Fa.wav)")
        speaker, _text, emotion, _version = m.groups()
        if speaker not in SESSION_OF:
            raise CorpusError(f"{wav}: unknown EmoDB speaker {speaker} (known: {', '.join(sorted(SESSION_OF))})")
        if emotion not in EMOTIONS:
            set_aside[SET_ASIDE.get(emotion, f"unknown emotion ({emotion})")] += 1
            continue
        frames, sr = audio_frames(wav)
        rows.append(
            dict(
                id=wav.stem,
                path=str(wav),
                label=EMOTIONS[emotion],
                speaker=speaker,
                session=SESSION_OF[speaker],
                gender="M" if speaker in MEN else "F",
                duration=frames / sr,
            )
        )
    return LoadResult("utterances", rows, dict(sorted(set_aside.items())))
