"""Built-in synthetic emotional-speech corpus, so that `trnet demo` and the tests can run the
whole pipeline offline, with no download, bit-for-bit reproducibly from a seed.

Speech comes from a small source-filter synthesiser (numpy/scipy only): a Rosenberg glottal
pulse train with jitter, shimmer and aspiration noise follows a pitch contour, and passes
through time-varying formant resonators that move between vowel targets; syllables get
consonant onsets (stops, fricatives, nasals, approximants). Speakers differ in habitual F0,
vocal-tract length, breathiness, spectral tilt, rate and expressiveness. Emotions are
rendered the way the SER literature describes them (Banse & Scherer 1996; Scherer 2003):

    angry    high F0, wide range, loud, fast, pressed voice (flat spectral tilt)
    happy    high F0, wide rising range, fast-ish, moderately loud
    neutral  mid F0, narrow range, moderate rate
    sad      low F0, narrow falling range, slow, quiet, breathy (steep tilt)

Each utterance blends its emotion with neutral by a random intensity and draws its own F0
offset, rate, syllable count and vowels, so the task is learnable but not trivial.

Layout written under `root` (the "folder" corpus format):

    labels.csv                       file,label,speaker,session,gender; `file` is relative to
                                     the CSV's folder, e.g. speech/F01_angry_00.wav
    speech/<speaker>_<label>_<k>.wav 16 kHz mono PCM16; speakers F01..F05, M01..M05,
                                     session i pairs F0i with M0i
    noise/<category>/<source>.wav    5-10 s noise recordings, one source per file
    synthetic.json                   the generation parameters; `"complete": false` while the
                                     corpus is written, the parameters alone once it is whole

The generator writes only into an empty folder or one that carries its marker: a folder that
holds anything else is a user's (a real corpus, perhaps) and is refused, never overwritten or
pruned (docs/design.md §9, "Never delete what trnet did not write").
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from trnet.audio import SAMPLE_RATE as SR
from trnet.audio import save_audio
from trnet.corpora.manifest import LABELS
from trnet.corpora.noisesynth import NOISE_CATEGORIES, NOISE_MAKERS
from trnet.corpora.speechsynth import make_voice, synthesise, utterance_style
from trnet.utils import write_json_atomic, write_text_atomic

# Bump whenever the generated audio would change, so an old corpus on disk is regenerated.
GENERATOR_VERSION = 1

NOISE_SOURCES = 5
NOISE_SECONDS = (5.0, 10.0)


def generate(
    root: Path,
    seed: int = 0,
    n_speakers: int = 10,
    utts_per_class: int = 12,
    duration: tuple[float, float] = (1.5, 3.0),
) -> Path:
    """Write the synthetic corpus under `root` and return the path of its labels.csv.

    Speakers alternate F/M and are paired into `n_speakers // 2` sessions; every speaker
    says `utts_per_class` utterances of each of the four classes, each lasting a uniform
    random time in `duration` (seconds). The same arguments give byte-identical files, and
    speaker i's files do not depend on `n_speakers`. A root that already holds a complete
    corpus with the same parameters is left untouched.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_speakers < 2 or n_speakers % 2:
        raise ValueError(f"n_speakers must be even and >= 2 (one F and one M per session), got {n_speakers}")
    if utts_per_class < 1:
        raise ValueError(f"utts_per_class must be >= 1, got {utts_per_class}")
    lo, hi = map(float, duration)
    if not 0.5 <= lo <= hi <= 5.0:
        raise ValueError(f"duration must satisfy 0.5 <= min <= max <= 5 s, got {duration}")
    root = Path(root)
    csv_path, marker = root / "labels.csv", root / "synthetic.json"
    params = dict(
        generator=GENERATOR_VERSION, seed=seed, n_speakers=n_speakers, utts_per_class=utts_per_class, duration=[lo, hi]
    )
    mark = _marker(root)
    if mark == params and csv_path.is_file():
        return csv_path
    if mark is None and root.exists() and any(root.iterdir()):
        raise ValueError(
            f"{root} is not empty and has no valid {marker.name} marker: it is not a corpus trnet generated, and "
            "trnet writes a synthetic corpus only into an empty or new folder (give another --root)"
        )
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {**params, "complete": False})  # ours from now on, even if stopped

    written: set[Path] = set()
    rows: list[dict[str, str]] = []
    for spk in range(n_speakers):
        gender, session = "FM"[spk % 2], spk // 2 + 1
        speaker = f"{gender}{session:02d}"
        voice = make_voice(np.random.default_rng([seed, 1, spk]), gender)
        for c, label in enumerate(LABELS):
            for k in range(utts_per_class):
                rng = np.random.default_rng([seed, 2, spk, c, k])
                n = int(round(rng.uniform(lo, hi) * SR))
                style = utterance_style(rng, voice, label)
                wave = synthesise(rng, voice, style, n)
                target_db = np.clip(-24 + 0.8 * (style.level_db + voice.level_db) + rng.normal(0, 1), -30, -18)
                path = root / "speech" / f"{speaker}_{label}_{k:02d}.wav"
                save_audio(path, _finish(rng, wave, target_db))
                written.add(path)
                rows.append(
                    dict(
                        file=path.relative_to(root).as_posix(),
                        label=label,
                        speaker=speaker,
                        session=str(session),
                        gender=gender,
                    )
                )
    for c, category in enumerate(NOISE_CATEGORIES):
        for s in range(NOISE_SOURCES):
            rng = np.random.default_rng([seed, 3, c, s])
            n = int(round(rng.uniform(*NOISE_SECONDS) * SR))
            wave = NOISE_MAKERS[category](rng, n)
            path = root / "noise" / category / f"{category}_{s:02d}.wav"
            save_audio(path, _finish(rng, wave, rng.uniform(-30, -22)))
            written.add(path)
    for stale in [*root.glob("speech/*.wav"), *root.glob("noise/*/*.wav")]:
        if stale not in written and _OURS.fullmatch(stale.name):  # left by other parameters
            stale.unlink()

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["file", "label", "speaker", "session", "gender"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(csv_path, buf.getvalue())
    write_json_atomic(marker, params)
    return csv_path


_OURS = re.compile(r"([FM]\d\d_[a-z]+|[a-z]+)_\d\d\.wav")  # the names written above


def _marker(root: Path) -> dict | None:
    """The parameters in `root`'s marker, or None where there is no marker of ours."""
    try:
        mark = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and "generator" in mark else None


def _finish(rng: np.random.Generator, wave: np.ndarray, level_db: float) -> np.ndarray:
    """Scale to an RMS of `level_db` dBFS (lower only if the peak would clip) and add a
    -75 dBFS noise floor, as any recording has: digital silence would make SNR mixing of a
    near-silent file degenerate."""
    wave = wave * (10 ** (level_db / 20) / np.sqrt(np.mean(wave**2)))
    wave *= min(1.0, 0.98 / np.abs(wave).max())
    return (wave + 10 ** (-75 / 20) * rng.standard_normal(len(wave))).astype(np.float32)
