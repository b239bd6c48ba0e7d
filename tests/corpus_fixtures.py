"""Generated corpus trees in the real release layouts, built from the authors' reference
metadata (../shared/data/reference_meta), so that loaders are checked against the real
counts without the real audio. Audio files are header-valid PCM wavs of silence written as
raw bytes; files of equal length are hard links to one file (thousands of them are made in
a fraction of a second). Only their lengths matter to the loaders."""

from __future__ import annotations

import csv
import os
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
REFERENCE = DATA / "reference_meta"

# Label counts of the full IEMOCAP release beyond the 4-class set (and hap vs exc within it).
IEMOCAP_EXC = 1041
IEMOCAP_OTHER = {"fru": 1849, "sur": 107, "fea": 40, "dis": 2, "oth": 3, "xxx": 2507}
TSV_TO_RAW = {"A": "ang", "N": "neu", "S": "sad", "H": "hap"}
ANNOTATOR_LINES = (
    "C-E2:\tNeutral;\t()",
    "C-E3:\tFrustration; Anger;\t(annoyed)",
    "C-F1:\tNeutral;\t()",
    "A-E3:\tval 3; act 2; dom  2;\t()",
    "A-F1:\tval 2; act 3; dom  3;\t(mildly aggravated but staying polite, attitude)",
)
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test saying what is missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared is absent on this machine)")
    return path


def read_tsv(name: str) -> list[dict[str, str]]:
    with shared("reference_meta", name).open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def wav_bytes(frames: int, sample_rate: int) -> bytes:
    """A mono 16-bit PCM wav of `frames` zero samples."""
    size = 2 * frames
    return (
        b"RIFF"
        + struct.pack("<I", 36 + size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
        + b"data"
        + struct.pack("<I", size)
        + bytes(size)
    )


def write_wav(path: Path, frames: int, sample_rate: int = 16_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(frames, sample_rate))
    return path


def link_copies(template: Path, paths: list[Path]) -> None:
    """Make each path a hard link to `template`: same bytes, no data written."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(template, path)


def evaluation_text(turns: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """An EmoEvaluation file in the release's format: header, then per turn a blank line, the
    turn line and annotator lines."""
    lines, t = [HEADER, ""], 1.0
    for utt_id, raw in turns:
        start, t = t, t + float(rng.uniform(1, 8))
        lines += [
            f"[{start:.4f} - {t:.4f}]\t{utt_id}\t{raw}\t[2.5000, 3.0000, 2.5000]",
            *ANNOTATOR_LINES[: int(rng.integers(2, len(ANNOTATOR_LINES) + 1))],
            "",
        ]
    return "\n".join(lines) + "\n"


def write_iemocap(root: Path, turns: dict[str, list[tuple[str, str]]], seed: int = 0) -> None:
    """IEMOCAP layout for dialog -> [(utterance id, raw label)], with a wav of 0.05 s per turn
    plus the clutter of the release (Categorical/ annotations, a macOS `._` file)."""
    rng = np.random.default_rng(seed)
    wavs: list[Path] = []
    for dialog, dialog_turns in turns.items():
        session = root / f"Session{int(dialog[3:5])}"
        evaluation = session / "dialog" / "EmoEvaluation"
        (evaluation / "Categorical").mkdir(parents=True, exist_ok=True)
        (evaluation / f"{dialog}.txt").write_text(evaluation_text(dialog_turns, rng))
        (evaluation / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{dialog_turns[0][0]} :Neutral; ()\n")
        wavs += [session / "sentences" / "wav" / dialog / f"{utt_id}.wav" for utt_id, _ in dialog_turns]
    link_copies(write_wav(root / "tiny.wav", 800), wavs)
    (root / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07\xff" * 20)


def make_iemocap(root: Path, seed: int = 0) -> list[dict[str, str]]:
    """The full 4-class IEMOCAP tree from IEMOCAP_4.tsv: its 5531 ids with their labels mapped
    back to raw codes (1041 of the happy ones as `exc`), plus turns of every other label in
    the release's numbers. Returns the TSV rows (the expected result)."""
    rows = read_tsv("IEMOCAP_4.tsv")
    rng = np.random.default_rng(seed)
    happy = [i for i, r in enumerate(rows) if r["label"] == "H"]
    excited = set(rng.choice(happy, IEMOCAP_EXC, replace=False).tolist())
    turns: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for i, r in enumerate(rows):
        turns[r["filename"].rsplit("_", 1)[0]].append(
            (r["filename"], "exc" if i in excited else TSV_TO_RAW[r["label"]])
        )
    dialogs = sorted(turns)
    numbers: dict[str, int] = defaultdict(lambda: 500)
    for raw, count in IEMOCAP_OTHER.items():
        for _ in range(count):
            dialog, letter = dialogs[int(rng.integers(len(dialogs)))], "FM"[int(rng.integers(2))]
            numbers[dialog + letter] += 1
            turns[dialog].append((f"{dialog}_{letter}{numbers[dialog + letter]:03d}", raw))
    for dialog_turns in turns.values():
        rng.shuffle(dialog_turns)
    write_iemocap(root, turns, seed)
    return rows


def iemocap_tree(factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """The generated IEMOCAP release, built once per test session and shared by test files."""
    root = factory.getbasetemp() / "iemocap-release"
    if not (root / "complete").exists():
        make_iemocap(root)
        (root / "complete").write_text("")
    return root, read_tsv("IEMOCAP_4.tsv")


def make_esc50(root: Path) -> list[dict[str, str]]:
    """The full ESC-50 layout (2000 clips) from ESC50.tsv; returns the TSV rows."""
    rows = read_tsv("ESC50.tsv")
    (root / "meta").mkdir(parents=True)
    columns = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in rows)
    link_copies(write_wav(root / "tiny.wav", 80), [root / "audio" / r["filename"] for r in rows])
    return rows


MUSAN_RATE = 100  # Hz; a low rate keeps 6 h of silent audio to a few MB, headers stay exact
MUSAN_FREE_SOUND, MUSAN_SOUND_BIBLE = 843, 87


def make_musan(root: Path, seed: int = 0) -> list[dict[str, str]]:
    """MUSAN noise/ with the real file names: each free-sound recording of MUSAN.tsv lasts
    5n s plus a tail in [0, 5) s (n = its segment count), the other free-sound recordings
    last under 5 s, and the sound-bible ones 1-30 s; plus the ANNOTATIONS/LICENSE files.
    Returns the TSV rows."""
    rows = read_tsv("MUSAN.tsv")
    segments: dict[str, int] = defaultdict(int)
    for r in rows:
        segments[r["src_file"]] += 1
    rng = np.random.default_rng(seed)
    step = 5 * MUSAN_RATE
    noise = root / "noise"
    for i in range(MUSAN_FREE_SOUND):
        name = f"noise-free-sound-{i:04d}"
        n = segments.get(name, 0)
        frames = n * step + int(rng.integers(0, step)) if n else int(rng.integers(1, step))
        write_wav(noise / "free-sound" / f"{name}.wav", frames, MUSAN_RATE)
    for i in range(MUSAN_SOUND_BIBLE):
        write_wav(
            noise / "sound-bible" / f"noise-sound-bible-{i:04d}.wav", int(rng.integers(step // 5, 6 * step)), MUSAN_RATE
        )
    for sub in ("free-sound", "sound-bible"):
        (noise / sub / "ANNOTATIONS").write_text("noise-x.wav some annotation\n")
        (noise / sub / "LICENSE").write_text("CC\n")
    (noise / "README").write_text("MUSAN noise\n")
    return rows
