"""Speech or not (trnet.vad, Silero VAD from its wheel): generated noise and tones are "no
speech", speech is kept, and a window without speech is labelled "no speech", unreliable and
left out of the file's result in the Python API, the table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf

import trnet
from tests.conftest import shared_path
from tests.test_predict import make_run, run_cli, speech_like
from trnet import vad
from trnet.corpora import LABELS

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 16_000


def generated(kind: str, seconds: float = 5.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "white":
        return (0.1 * rng.standard_normal(len(t))).astype(np.float32)
    if kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(len(t)))
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        x = np.fft.irfft(spec, len(t))
        return (0.3 * x / np.abs(x).max()).astype(np.float32)
    if kind == "silence":
        return np.zeros(len(t), np.float32)
    if kind == "tone":
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if kind == "chord":
        return (0.1 * sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392, 523))).astype(np.float32)
    raise ValueError(kind)


NOISES = ("white", "pink", "silence", "tone", "chord")


@pytest.mark.parametrize("kind", NOISES)
def test_generated_noise_and_tones_hold_no_speech(kind: str) -> None:
    probs = vad.chunk_probabilities(generated(kind))
    assert len(probs) == -(-5 * SR // vad.CHUNK)
    assert not vad.is_speech(vad.speech_fraction(probs, 0, 5 * SR))


def test_synthetic_speech_is_speech_and_the_fraction_counts_chunks_in_the_window() -> None:
    wave = np.concatenate([speech_like(5.0, seed=1), generated("white", 10.0)])
    probs = vad.chunk_probabilities(wave)
    assert vad.is_speech(vad.speech_fraction(probs, 0, 5 * SR))
    # Silero's state carries speech for a while into what follows (docs/design.md §12)
    assert not vad.is_speech(vad.speech_fraction(probs, 10 * SR, 15 * SR))
    assert vad.speech_fraction(probs, 0, 0) == 0.0
    # the chunks starting in [a, b): 512-sample steps
    assert vad.speech_fraction(np.array([1, 0, 1], np.float32), 0, 1024) == 0.5
    assert vad.speech_fraction(np.array([1, 0, 1], np.float32), 1, 1025) == 0.5  # chunks 1 and 2


def test_feeding_in_pieces_is_the_same_as_at_once() -> None:
    wave = speech_like(3.3, seed=2)
    track = vad.SpeechTrack()
    for piece in np.array_split(wave, [100, 2000, 2001, 30_000]):
        track.feed(piece)
    np.testing.assert_array_equal(track.finish(), vad.chunk_probabilities(wave))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def model(run_dir):
    with trnet.load(run_dir) as m:
        yield m


@pytest.mark.parametrize("kind", NOISES)
def test_noise_only_input_is_no_speech_and_unreliable(model, kind: str) -> None:
    p = model.predict(generated(kind, 3.0), SR)
    assert p.label == vad.NO_SPEECH and not p.reliable
    assert any("no speech found" in w for w in p.warnings)
    assert p.speech < vad.MIN_SPEECH_FRACTION


def test_window_without_speech_is_labelled_and_left_out(model) -> None:
    wave = np.concatenate([speech_like(7.5, seed=3), generated("pink", 7.5, seed=3)])  # 15 s
    p = model.predict(wave, SR)
    assert [(w.start, w.end) for w in p.windows] == [(0, 5), (2.5, 7.5), (5, 10), (7.5, 12.5), (10, 15)]
    voiced = [w.reliable for w in p.windows]
    assert voiced[:2] == [True, True] and voiced[3:] == [False, False]
    for w in p.windows:
        assert (w.label == vad.NO_SPEECH) == (not w.reliable) and (w.label in LABELS) == w.reliable
    assert p.reliable and p.label in LABELS
    kept = [w for w in p.windows if w.reliable]
    weights = np.array([w.end - w.start for w in kept])
    for k in LABELS:  # the file's result is the mean over the windows with speech only
        mean = weights @ np.array([w.probabilities[k] for w in kept]) / weights.sum()
        assert p.probabilities[k] == pytest.approx(mean, abs=1e-6)
    assert "window 12.5-17.5 s holds no speech" not in " ".join(p.warnings)
    assert any("10.0-15.0 s holds no speech" in w for w in p.warnings)


def test_json_and_csv_carry_label_speech_and_reliable(run_dir, tmp_path, capsys) -> None:
    path = tmp_path / "mixed.wav"
    sf.write(path, np.concatenate([speech_like(7.5, seed=3), generated("pink", 7.5, seed=3)]), SR)
    noise = tmp_path / "noise.wav"
    sf.write(noise, generated("white", 3.0), SR)
    code, out, err = run_cli(capsys, path, noise, "--model", run_dir, "--json")
    assert code == 0, err
    mixed, only_noise = json.loads(out)["results"]
    assert only_noise["label"] == "no speech" and only_noise["reliable"] is False and only_noise["speech"] < 0.25
    last = mixed["windows"][-1]
    assert last["label"] == "no speech" and last["reliable"] is False and 0 <= last["speech"] < 0.25
    assert mixed["windows"][0]["reliable"] is True and mixed["windows"][0]["speech"] >= 0.25
    code, out, err = run_cli(capsys, path, noise, "--model", run_dir, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[-3:] == ["speech", "reliable", "warnings"]
    window = [r for r in rows if r["file"] == str(path) and r["window"] == "4"][0]
    assert window["label"] == "no speech" and window["reliable"] == "false" and window["warnings"] == "no speech"
    total = [r for r in rows if r["file"] == str(noise)][0]
    assert total["label"] == "no speech" and total["reliable"] == "false" and "no speech found" in total["warnings"]
    code, out, err = run_cli(capsys, path, noise, "--model", run_dir)
    table = [line for line in out.splitlines() if line.startswith(str(noise))]
    assert table and "no speech" in table[0] and "unreliable" in table[0]


def test_speech_of_shared_corpora_is_kept() -> None:
    from trnet.audio import load_audio

    files = sorted(shared_path("emodb", "wav").glob("*.wav"))[::25][:20]
    files += sorted(shared_path("vbd-samples", "clean").glob("*.wav"))[:5]
    lost = []
    for path in files:
        wave = load_audio(path)
        if not vad.is_speech(vad.speech_fraction(vad.chunk_probabilities(wave), 0, len(wave))):
            lost.append(path.name)
    assert not lost, f"speech called no speech: {lost}"
