"""The built-in synthetic corpus: layout the folder loader reads, balance, audio sanity, and
bit-exact determinism (the demo and CI rely on it being reproducible)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trnet.corpora import LABELS
from trnet.corpora.synthetic import NOISE_CATEGORIES, generate

N_SPEAKERS, UTTS, DURATION = 2, 2, (1.5, 3.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("syn") / "corpus", seed=0, n_speakers=N_SPEAKERS, utts_per_class=UTTS, duration=DURATION
    )


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_layout_and_columns(corpus: Path) -> None:
    root = corpus.parent
    assert corpus.name == "labels.csv"
    assert corpus.read_text().splitlines()[0] == "file,label,speaker,session,gender"
    rows = _rows(corpus)
    for row in rows:
        assert not Path(row["file"]).is_absolute() and row["file"].startswith("speech/")
        assert (root / row["file"]).is_file()
    assert sorted(p.name for p in (root / "speech").iterdir()) == sorted(Path(r["file"]).name for r in rows)
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 0


def test_balance(corpus: Path) -> None:
    rows = _rows(corpus)
    assert len(rows) == N_SPEAKERS * len(LABELS) * UTTS
    assert Counter((r["speaker"], r["label"]) for r in rows) == {
        (s, lab): UTTS for s in {r["speaker"] for r in rows} for lab in LABELS
    }
    genders = {r["speaker"]: r["gender"] for r in rows}
    assert Counter(genders.values()) == {"F": N_SPEAKERS // 2, "M": N_SPEAKERS // 2}
    sessions: dict[str, list[str]] = {}
    for speaker, gender in genders.items():
        sessions.setdefault(next(r["session"] for r in rows if r["speaker"] == speaker), []).append(gender)
    assert len(sessions) == N_SPEAKERS // 2
    assert all(sorted(g) == ["F", "M"] for g in sessions.values())


def test_speech_audio(corpus: Path) -> None:
    rms_by_label: dict[str, list[float]] = {lab: [] for lab in LABELS}
    for row in _rows(corpus):
        path = corpus.parent / row["file"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert DURATION[0] <= info.duration <= DURATION[1]
        wave, _ = sf.read(str(path), dtype="float32")
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
        rms_db = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2))
        assert -31 <= rms_db <= -17
        rms_by_label[row["label"]].append(rms_db)
    assert np.mean(rms_by_label["angry"]) > np.mean(rms_by_label["sad"]) + 2  # emotion level survives


def test_noise_folder(corpus: Path) -> None:
    noise = corpus.parent / "noise"
    assert sorted(p.name for p in noise.iterdir()) == sorted(NOISE_CATEGORIES)
    assert len(NOISE_CATEGORIES) >= 6
    for category in NOISE_CATEGORIES:
        files = sorted((noise / category).glob("*.wav"))
        assert len(files) >= 5
        for path in files:
            info = sf.info(str(path))
            assert (info.samplerate, info.channels) == (16_000, 1)
            assert 5.0 <= info.duration <= 10.0
            wave, _ = sf.read(str(path))
            assert np.isfinite(wave).all() and 1e-3 < np.sqrt(np.mean(wave**2)) < 0.2


def test_existing_corpus_is_reused(corpus: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in corpus.parent.rglob("*") if p.is_file()}
    assert generate(corpus.parent, seed=0, n_speakers=N_SPEAKERS, utts_per_class=UTTS, duration=DURATION) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.parent.rglob("*") if p.is_file()} == before


def test_same_seed_identical_bytes(corpus: Path, tmp_path: Path) -> None:
    # More speakers: speaker i's files must not depend on how many speakers there are.
    other = generate(tmp_path, seed=0, n_speakers=4, utts_per_class=UTTS, duration=DURATION)
    names = ["speech/F01_angry_00.wav", "speech/M01_sad_01.wav", "noise/babble/babble_00.wav", "noise/rain/rain_04.wav"]
    for name in names:
        assert (corpus.parent / name).read_bytes() == (other.parent / name).read_bytes(), name
    assert len(_rows(other)) == 4 * len(LABELS) * UTTS


def test_other_parameters_regenerate(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(corpus.parent, root)
    csv_path = generate(root, seed=1, n_speakers=N_SPEAKERS, utts_per_class=1, duration=DURATION)
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 1
    assert len(_rows(csv_path)) == N_SPEAKERS * len(LABELS)
    assert not (root / "speech" / "F01_angry_01.wav").exists()  # stale files of the old corpus are gone
    for name in ["speech/F01_angry_00.wav", "noise/pink/pink_00.wav"]:
        assert (root / name).read_bytes() != (corpus.parent / name).read_bytes(), name


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_speakers=3),
        dict(n_speakers=0),
        dict(utts_per_class=0),
        dict(duration=(3.0, 2.0)),
        dict(duration=(1.0, 6.0)),
        dict(seed=-1),
    ],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
