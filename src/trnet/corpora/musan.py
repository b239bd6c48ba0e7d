"""MUSAN `noise/` cut into 5 s segments (docs/design.md §2: 3860 segments; the unmatched test noise).

Layout: `ROOT/noise/{free-sound,sound-bible}/*.wav` (ANNOTATIONS, LICENSE and other non-wav
files are ignored). A segment row is `<recording>_<k>`, source = recording, category = the
sub-corpus, offset = 5k s, duration 5 s.

The cutting rule, worked out from the authors' segment list (reference_meta/MUSAN.tsv:
3860 segments, 631 recordings):
  * only `free-sound` was used: all 631 recordings are noise-free-sound-NNNN (out of 843),
    none of the 87 noise-sound-bible-NNNN appears. Hence `subsets=("free-sound",)` by
    default; pass both to use all of noise/.
  * a recording of d seconds gives floor(d / 5) segments k = 0..floor(d/5)-1, covering
    [5k, 5k+5) s; the tail shorter than 5 s is dropped, and a recording shorter than 5 s
    gives none. Every listed recording has segments numbered 0..n-1 without gaps, and 212
    of the 843 free-sound recordings are absent, as under floor (not ceil or round-up),
    with ~5.4 h of segments out of ~6 h of audio.
Durations come from the file headers (frames // (5 * rate), exact integer arithmetic).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, audio_frames, require_dir

SUBSETS = ("free-sound", "sound-bible")
SEGMENT_SECONDS = 5


def segment_rows(recording: Path, rec_id: str, category: str, frames: int, sr: int) -> list[dict[str, Any]]:
    """The floor(d/5) full 5 s segments of one recording as noise rows."""
    return [
        dict(
            id=f"{rec_id}_{k}",
            path=str(recording),
            source=rec_id,
            category=category,
            offset=float(SEGMENT_SECONDS * k),
            duration=float(SEGMENT_SECONDS),
        )
        for k in range(frames // (SEGMENT_SECONDS * sr))
    ]


def load(root: Path, subsets: Sequence[str] = ("free-sound",)) -> LoadResult:
    """Scan `ROOT/noise/<subset>/*.wav` and cut every recording into 5 s segments."""
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        raise CorpusError(f"unknown MUSAN noise subset(s) {unknown}; expected some of {list(SUBSETS)}")
    noise = require_dir(Path(root) / "noise", "MUSAN's noise/ folder at ROOT/noise/{free-sound,sound-bible}/*.wav")
    rows: list[dict[str, Any]] = []
    short: Counter[str] = Counter()
    for subset in subsets:
        files = sorted(require_dir(noise / subset, f"MUSAN recordings at ROOT/noise/{subset}/*.wav").glob("*.wav"))
        if not files:
            raise CorpusError(f"{noise / subset}: no *.wav recordings")
        for wav in files:
            segments = segment_rows(wav, wav.stem, subset, *audio_frames(wav))
            if not segments:
                short[f"{subset} recordings shorter than 5 s"] += 1
            rows.extend(segments)
    if not rows:
        raise CorpusError(f"{noise}: no recording of at least 5 s in {', '.join(subsets)}")
    notes = [f"subsets used: {', '.join(subsets)}; recordings cut into floor(duration / 5) segments of 5 s"]
    return LoadResult("noise", rows, dict(short), notes)
