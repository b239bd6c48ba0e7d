"""Protocol: leave-one-speaker-out folds, SNR mixing and source-disjoint noise assignment."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tests.corpus_fixtures import iemocap_tree, read_tsv, shared
from trnet.audio import load_audio, pad_or_trim
from trnet.corpora import LABELS, emodb, esc50, iemocap
from trnet.protocol.folds import Fold, loso_folds, split
from trnet.protocol.mixing import mix_at_snr, snr_db
from trnet.protocol.noise import assign_noise, noise_pools

Row = dict[str, Any]


def toy_utterances(per_speaker: int = 6) -> list[Row]:
    """Five sessions of one woman (listed second, to test the ordering) and one man."""
    return [
        dict(id=f"{spk}_{k}", speaker=spk, session=str(s), gender=spk[0], label=LABELS[k % 4])
        for s in range(1, 6)
        for spk in (f"M{s}", f"F{s}")
        for k in range(per_speaker)
    ]


def toy_noise(n_sources: int = 60) -> list[Row]:
    rng = np.random.default_rng(1)
    return [
        dict(id=f"src{i:02d}_{k}", source=f"src{i:02d}", category=f"cat{i % 6}", offset=5.0 * k, duration=5.0)
        for i in range(n_sources)
        for k in range(int(rng.integers(1, 5)))
    ]


def esc50_full_rows() -> list[Row]:
    return [
        dict(id=r["filename"][:-4], source=r["src_file"], category=r["category"], offset=0.0, duration=5.0)
        for r in read_tsv("ESC50.tsv")
    ]


def musan_rows() -> list[Row]:
    return [
        dict(id=r["filename"][:-4], source=r["src_file"], category="free-sound", offset=0.0, duration=5.0)
        for r in read_tsv("MUSAN.tsv")
    ]


@pytest.fixture(scope="module")
def iemocap_rows(tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    return iemocap.load(iemocap_tree(tmp_path_factory)[0]).rows


def emodb_rows() -> list[Row]:
    return emodb.load(shared("emodb")).rows


# ---------------------------------------------------------------- folds


def check_folds(rows: list[Row], folds: list[Fold]) -> None:
    """Every speaker tested once; within a fold no speaker is in two of train/val/test, the
    validation speaker shares the test speaker's session, and training has all others."""
    speakers = {r["speaker"] for r in rows}
    session = {r["speaker"]: r["session"] for r in rows}
    assert sorted(f.test_speaker for f in folds) == sorted(speakers)
    assert [f.index for f in folds] == list(range(len(folds)))
    for fold in folds:
        s = split(rows, fold)
        assert s.fold == fold and split(rows, fold.index).fold == fold
        train, val, test = ([rows[i] for i in part] for part in (s.train, s.val, s.test))
        groups = [{r["speaker"] for r in part} for part in (train, val, test)]
        assert groups[1] == {fold.val_speaker} and groups[2] == {fold.test_speaker}
        assert groups[0] == set(fold.train_speakers) == speakers - groups[1] - groups[2]
        assert session[fold.val_speaker] == session[fold.test_speaker]
        assert session[fold.test_speaker] not in {session[s] for s in fold.train_speakers}
        assert len(train) + len(val) + len(test) == len(rows)


def test_folds_order_sessions_then_women_first() -> None:
    rows = toy_utterances()
    folds = loso_folds(rows)
    assert [(f.test_speaker, f.val_speaker) for f in folds[:4]] == [
        ("F1", "M1"),
        ("M1", "F1"),
        ("F2", "M2"),
        ("M2", "F2"),
    ]
    assert folds[0].train_speakers == ("F2", "M2", "F3", "M3", "F4", "M4", "F5", "M5")
    check_folds(rows, folds)
    assert loso_folds(list(reversed(rows))) == folds


def test_folds_sort_sessions_numerically() -> None:
    rows = [dict(id=f"{s}{g}", speaker=f"{g}{s}", session=str(s), gender=g) for s in (10, 2, 1) for g in "MF"]
    assert [f.test_speaker for f in loso_folds(rows)] == ["F1", "M1", "F2", "M2", "F10", "M10"]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [dict(speaker="a", session="1"), dict(speaker="b", session="1"), dict(speaker="c", session="1")],
            "session 1 has 3 speaker",
        ),
        (
            [dict(speaker="a", session="1"), dict(speaker="b", session="1"), dict(speaker="c", session="2")],
            "session 2 has 1 speaker",
        ),
        ([dict(speaker="a", session="1"), dict(speaker="a", session="2")], "speaker a appears in sessions 1 and 2"),
    ],
)
def test_folds_need_two_speakers_per_session(rows: list[Row], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loso_folds(rows)


def test_iemocap_folds_on_the_generated_release(iemocap_rows: list[Row]) -> None:
    folds = loso_folds(iemocap_rows)
    assert [f.test_speaker for f in folds] == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    check_folds(iemocap_rows, folds)
    assert len(split(iemocap_rows, folds[0]).test) == 528 and len(split(iemocap_rows, folds[0]).val) == 557


def test_emodb_folds() -> None:
    rows = emodb_rows()
    folds = loso_folds(rows)
    assert [f.test_speaker for f in folds] == ["08", "03", "09", "10", "13", "11", "14", "12", "16", "15"]
    check_folds(rows, folds)


# ---------------------------------------------------------------- mixing

SNRS = (0, 5, 10, 15, 20)


def test_mix_reaches_the_target_snr_and_loops_short_noise() -> None:
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(80_000)).astype(np.float32)
    short_noise = rng.uniform(-1, 1, 30_000).astype(np.float32)
    for snr in (*SNRS, -5, 37.5):
        mix = mix_at_snr(speech, short_noise, snr)
        assert mix.dtype == np.float32 and mix.shape == speech.shape
        assert abs(snr_db(speech, mix - speech) - snr) < 0.01
    added = mix_at_snr(speech, short_noise, 10) - speech
    assert np.allclose(added[30_000:60_000], added[:30_000], atol=1e-6)  # looped, not zero-padded
    long_noise = rng.standard_normal(200_000).astype(np.float32)
    added = mix_at_snr(speech, long_noise, 10) - speech
    assert np.corrcoef(added, long_noise[:80_000])[0, 1] > 0.999  # trimmed from the start


def test_mix_on_real_audio() -> None:
    speech, _ = pad_or_trim(load_audio(shared("emodb", "wav", "03a01Fa.wav")))
    noise = load_audio(shared("esc50", "audio", "1-100032-A-0.wav"))
    demand = load_audio(shared("noise", "demand-vbd", "p232_003_noise.wav"))
    for n in (noise, demand):
        for snr in SNRS:
            mix = mix_at_snr(speech, n, snr)
            assert np.isfinite(mix).all() and abs(snr_db(speech, mix - speech) - snr) < 0.01


def test_mix_measures_powers_over_the_valid_samples_spec_2() -> None:
    """A 2 s utterance zero-padded to 5 s, mixed at 0 dB, is at 0 dB where the speech is."""
    rng = np.random.default_rng(1)
    speech, n = pad_or_trim((0.1 * rng.standard_normal(32_000)).astype(np.float32))
    assert n == 32_000 and len(speech) == 80_000
    noise = rng.uniform(-1, 1, 80_000).astype(np.float32)
    for snr in (*SNRS, -5):
        mix = mix_at_snr(speech, noise, snr, valid=n)
        assert abs(snr_db(speech, mix - speech, valid=n) - snr) < 0.01
    # the old rule (powers over the padded 5 s) labels this 0 dB mixture ~4 dB too clean
    biased = mix_at_snr(speech, noise, 0)
    assert abs(snr_db(speech, biased - speech, valid=n) - 10 * np.log10(80_000 / 32_000)) < 0.1
    with pytest.raises(ValueError, match="valid length"):
        mix_at_snr(speech, noise, 0, valid=0)
    with pytest.raises(ValueError, match="noise is silent"):
        mix_at_snr(speech, np.zeros(n + 10), 0, valid=n)


def test_noise_silent_where_the_speech_is_starts_at_its_first_sound() -> None:
    """An ESC-50 clip that opens with digital silence, against a 0.9 s utterance: the clip is
    rotated to start at its first non-zero sample (and still loops), so the SNR is reached;
    a clip audible over the valid samples is mixed exactly as before."""
    rng = np.random.default_rng(2)
    speech, n = pad_or_trim((0.1 * rng.standard_normal(14_400)).astype(np.float32))
    sound = rng.uniform(-1, 1, 8_000)
    clip = np.r_[np.zeros(40_000), sound, np.zeros(32_000)].astype(np.float32)
    mix = mix_at_snr(speech, clip, -5, valid=n)
    assert abs(snr_db(speech, mix - speech, valid=n) + 5) < 0.01
    added = mix[:8_000].astype(np.float64) - speech[:8_000]
    assert np.corrcoef(added, sound)[0, 1] > 0.9999  # the added noise begins with the clip's first sound
    audible = rng.uniform(-1, 1, 80_000).astype(np.float32)
    unchanged = mix_at_snr(speech, audible, 0, valid=n)
    p_s, p_n = np.mean(speech[:n].astype(np.float64) ** 2), np.mean(audible[:n].astype(np.float64) ** 2)
    assert np.array_equal(unchanged, (speech + np.sqrt(p_s / p_n) * audible.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize(
    "speech, noise, message",
    [
        (np.zeros(1000), np.ones(1000), "speech is silent"),
        (np.ones(1000), np.zeros(1000), "noise is silent"),
        (np.ones(1000), np.zeros(0), "noise has no samples"),
        (np.zeros(0), np.ones(10), "speech has no samples"),
        (np.r_[np.ones(10), np.nan], np.ones(10), "NaN"),
    ],
)
def test_mix_rejects_silence_instead_of_returning_nan(speech: np.ndarray, noise: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mix_at_snr(speech, noise, 10)


# ---------------------------------------------------------------- noise pools


def check_pools(rows: list[Row], pools: list[list[Row]]) -> None:
    """Disjoint by source, every clip once, clip counts within 10%, categories spread."""
    sources = [{r["source"] for r in pool} for pool in pools]
    assert all(not (a & b) for i, a in enumerate(sources) for b in sources[i + 1 :])
    assert sorted(r["id"] for pool in pools for r in pool) == sorted(r["id"] for r in rows)
    sizes = [len(p) for p in pools]
    assert max(sizes) - min(sizes) <= max(1, 0.1 * np.mean(sizes)), sizes
    by_category: dict[str, set[str]] = {}
    for r in rows:
        by_category.setdefault(r["category"], set()).add(r["source"])
    for category, srcs in by_category.items():
        used = sum(any(r["category"] == category for r in pool) for pool in pools)
        assert used == min(len(pools), len(srcs)), category


def test_pools_toy() -> None:
    rows = toy_noise()
    pools = noise_pools(rows, 5, seed=0)
    check_pools(rows, pools)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert noise_pools(shuffled, 5, seed=0) == pools
    assert noise_pools(rows, 5, seed=1) != pools
    with pytest.raises(ValueError, match="cannot fill 5 disjoint pools"):
        noise_pools(rows[:3], 5, seed=0)


@pytest.mark.parametrize("make_rows", [esc50_full_rows, musan_rows, lambda: esc50.load(shared("esc50")).rows])
def test_pools_on_real_noise_lists(make_rows: Any) -> None:
    rows = make_rows()
    for seed in (0, 1):
        check_pools(rows, noise_pools(rows, 5, seed))


def check_assignment(utterances: list[Row], noise: list[Row]) -> None:
    """Sources never shared across sessions; deterministic; independent of order and subset."""
    chosen = assign_noise(utterances, noise, seed=0, corpus_name="esc50")
    assert set(chosen) == {u["id"] for u in utterances}
    session_of_source: dict[str, str] = {}
    for u in utterances:
        assert session_of_source.setdefault(chosen[u["id"]]["source"], u["session"]) == u["session"]
    assert assign_noise(list(reversed(utterances)), noise[::-1], seed=0, corpus_name="esc50") == chosen
    subset = utterances[::7]
    assert assign_noise(subset, noise, seed=0, corpus_name="esc50") == {u["id"]: chosen[u["id"]] for u in subset}
    other_seed = assign_noise(utterances, noise, seed=1, corpus_name="esc50")
    other_corpus = assign_noise(utterances, noise, seed=0, corpus_name="musan")
    assert sum(other_seed[k]["id"] != v["id"] for k, v in chosen.items()) > len(chosen) // 2
    assert sum(other_corpus[k]["id"] != v["id"] for k, v in chosen.items()) > len(chosen) // 2


def test_assignment_toy() -> None:
    utterances = toy_utterances(per_speaker=20)
    check_assignment(utterances, toy_noise())
    chosen = assign_noise(utterances, toy_noise(), seed=0, corpus_name="toy")
    assert len({c["id"] for c in chosen.values()}) > 50  # the pools are actually drawn from


def test_assignment_emodb_esc50() -> None:
    check_assignment(emodb_rows(), esc50.load(shared("esc50")).rows)


def test_assignment_iemocap_esc50_and_musan(iemocap_rows: list[Row]) -> None:
    check_assignment(iemocap_rows, esc50_full_rows())
    chosen = assign_noise(iemocap_rows, musan_rows(), seed=0, corpus_name="musan")
    per_session: dict[str, set[str]] = {}
    for u in iemocap_rows:
        per_session.setdefault(u["session"], set()).add(chosen[u["id"]]["source"])
    assert sum(len(s) for s in per_session.values()) == len(set().union(*per_session.values()))


def test_pool_of_session_i_is_pool_i() -> None:
    utterances, noise = toy_utterances(), toy_noise()
    pools = noise_pools(noise, 5, seed=4)
    chosen = assign_noise(utterances, noise, seed=4, corpus_name="x")
    for u in utterances:
        assert chosen[u["id"]] in pools[int(u["session"]) - 1]
