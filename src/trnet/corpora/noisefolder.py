"""Any folder of noise audio as a noise corpus (`trnet prepare noise`).

Files are found recursively (wav, flac, ogg). Each file is its own source recording, so the
source-disjoint pools never split one file across sessions; its category is its parent
folder's name. A file longer than 5 s is cut into floor(d/5) segments of 5 s exactly as
MUSAN is; a file of 5 s or less gives one clip of its own length, which the mixer loops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trnet.corpora.manifest import CorpusError, LoadResult, audio_frames, require_dir
from trnet.corpora.musan import SEGMENT_SECONDS, segment_rows

EXTENSIONS = (".wav", ".flac", ".ogg")


def load(root: Path) -> LoadResult:
    """Scan ROOT recursively for noise files and turn them into 5 s noise rows."""
    root = require_dir(Path(root), "a folder of noise audio (wav/flac/ogg, searched recursively)")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise CorpusError(f"{root}: no {'/'.join(e[1:] for e in EXTENSIONS)} files found (searched recursively)")
    rows: list[dict[str, Any]] = []
    owner: dict[str, Path] = {}
    whole = 0
    for path in files:
        rec_id = path.relative_to(root).with_suffix("").as_posix().replace("/", "__")
        if rec_id in owner:
            raise CorpusError(f"{path}: same name as {owner[rec_id]} once the extension is dropped; rename one")
        owner[rec_id] = path
        frames, sr = audio_frames(path)
        if frames == 0:
            raise CorpusError(f"{path}: contains no samples")
        if frames > SEGMENT_SECONDS * sr:
            rows.extend(segment_rows(path, rec_id, path.parent.name, frames, sr))
        else:
            rows.append(
                dict(
                    id=f"{rec_id}_0",
                    path=str(path),
                    source=rec_id,
                    category=path.parent.name,
                    offset=0.0,
                    duration=frames / sr,
                )
            )
            whole += 1
    notes = [
        f"{len(files)} files, each its own source recording; {whole} of 5 s or less kept whole (looped when mixed)"
    ]
    return LoadResult("noise", rows, {}, notes)
