"""The speech detector of `trnet predict` (trnet.vad): how many windows of speech it calls "no
speech", and how many windows of non-speech it lets through, on a declared tuning split (where
MIN_SPEECH_FRACTION is chosen) and a separate test split (where it is measured).

    python bench/speech_detector.py [--shared ../shared/data] [--out speech.json]

Speech: EmoDB (resampled from 22.05 kHz as `trnet predict` does) and the VoiceBank samples,
clean and mixed at 0 and -5 dB with ESC-50 (any class) and DEMAND noise. Non-speech: ESC-50
clips without human vocal sounds (VOICE_CLASSES excluded), DEMAND, white and pink noise,
digital silence and synthetic tones. Each clip is cut into the windows `trnet predict` uses.

Split (declared before measuring): tune = EmoDB speakers 03 08 09 10 11, VoiceBank and DEMAND
of speaker p232, ESC-50 fold 1, synthetic signals of seed 0; test = EmoDB speakers 12-16,
p257, ESC-50 fold 2, synthetic signals of seed 1. The rule: the threshold on the window's
chunk threshold and the share of speech chunks per window that lose the fewest speech windows
of the tune split while rejecting at least 97.5 % of its non-speech windows (`choose`).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from trnet import vad
from trnet.audio import SAMPLE_RATE, load_audio
from trnet.predict.stream import spans
from trnet.protocol.mixing import fit_length, mix_at_snr

VOICE_CLASSES = {"crying_baby", "laughing", "coughing", "sneezing", "snoring", "breathing"}
TUNE_SPEAKERS = {"03", "08", "09", "10", "11"}
SNRS = (0.0, -5.0)
GRID = np.round(np.arange(0.01, 0.61, 0.01), 2)  # candidate shares of speech chunks per window
FRAMES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # candidate chunk thresholds (Silero's default: 0.5)
TUNE_REJECT = 0.975  # non-speech rejected on the tune split, with room below it for the 95 % target


def windows(wave: np.ndarray) -> list[list[float]]:
    """Silero's chunk probabilities in each window `trnet predict` would cut the signal into."""
    wave = np.pad(wave, (0, max(0, 400 - len(wave))))
    probs = vad.chunk_probabilities(wave)
    return [
        probs[-(-a // vad.CHUNK) : -(-b // vad.CHUNK)].round(4).tolist()
        for a, b in spans(len(wave), 80_000, 40_000, 8_000)
    ]


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    x = np.fft.irfft(spec, n)
    return x / np.abs(x).max()


def synthetic(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(12 * SAMPLE_RATE) / SAMPLE_RATE
    out: dict[str, np.ndarray] = {"silence": np.zeros(len(t))}
    for level in (0.003, 0.03, 0.3):
        out[f"white-{level}"] = rng.standard_normal(len(t)) * level
        out[f"pink-{level}"] = pink(len(t), rng) * level * 3
    for f in rng.uniform(80, 4000, 6).round():
        out[f"tone-{f:.0f}"] = 0.3 * np.sin(2 * np.pi * f * t)
        out[f"square-{f:.0f}"] = 0.1 * np.sign(np.sin(2 * np.pi * f * t))
    f0, f1 = rng.uniform(100, 300), rng.uniform(2000, 6000)
    out["chirp"] = 0.3 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / t[-1] / 2) * t)
    out["dtmf"] = 0.2 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)) * (t % 0.2 < 0.1)
    return {k: v.astype(np.float32) for k, v in out.items()}


def measure(shared: Path) -> list[dict]:
    rows: list[dict] = []

    def add(kind: str, split: str, source: str, wave: np.ndarray) -> None:
        rows.extend({"kind": kind, "split": split, "source": source, "probs": p} for p in windows(wave))

    esc = list(csv.DictReader((shared / "esc50/meta/esc50.csv").open()))
    esc_noise = {s: [r for r in esc if r["fold"] == ("1" if s == "tune" else "2")] for s in ("tune", "test")}
    demand = sorted((shared / "noise/demand-vbd").glob("*.wav"))
    demand_noise = {"tune": [p for p in demand if "p232" in p.name], "test": [p for p in demand if "p257" in p.name]}
    speech = [
        (p, "tune" if p.name[:2] in TUNE_SPEAKERS else "test") for p in sorted((shared / "emodb/wav").glob("*.wav"))
    ]
    speech += [
        (p, "tune" if "p232" in p.name else "test") for p in sorted((shared / "vbd-samples/clean").glob("*.wav"))
    ]
    rng = np.random.default_rng(0)
    for path, split in speech:
        clean = load_audio(path)
        corpus = "emodb" if "emodb" in str(path) else "vbd"
        add("speech", split, f"{corpus} clean", clean)
        for snr in SNRS:
            esc_files = [shared / "esc50/audio" / r["filename"] for r in esc_noise[split]]
            for name, files in (("esc50", esc_files), ("demand", demand_noise[split])):
                while True:  # a clip silent over the speech's length cannot reach an SNR: draw again
                    noise = fit_length(load_audio(files[rng.integers(len(files))]), len(clean))
                    if np.abs(noise).max() > 0:
                        break
                add("speech", split, f"{corpus} + {name} {snr:g} dB", mix_at_snr(clean, noise, snr))
    for split, clips in esc_noise.items():
        for r in clips:
            if r["category"] not in VOICE_CLASSES:
                add("non-speech", split, "esc50", load_audio(shared / "esc50/audio" / r["filename"]))
        for path in demand_noise[split]:
            add("non-speech", split, "demand", load_audio(path))
    for split, seed in (("tune", 0), ("test", 1)):
        for name, wave in synthetic(seed).items():
            add("non-speech", split, name.split("-")[0], wave)
    return rows


def called_no_speech(rows: list[dict], frame: float, share: float) -> np.ndarray:
    """Whether each row's window is called "no speech" by the rule (frame, share)."""
    return np.array([np.mean(np.array(r["probs"]) >= frame) < share if r["probs"] else True for r in rows])


def rates(rows: list[dict], frame: float, share: float, split: str) -> tuple[float, float]:
    """(share of speech windows called no speech, share of non-speech windows called no speech)."""
    sp = [r for r in rows if r["split"] == split and r["kind"] == "speech"]
    ns = [r for r in rows if r["split"] == split and r["kind"] == "non-speech"]
    return float(called_no_speech(sp, frame, share).mean()), float(called_no_speech(ns, frame, share).mean())


def choose(rows: list[dict]) -> tuple[float, float]:
    """The declared rule: on the tune split, among (frame, share) that reject at least
    TUNE_REJECT of non-speech, the fewest speech windows lost; ties: more rejected."""
    best = None
    for frame in FRAMES:
        for share in GRID:
            miss, reject = rates(rows, frame, share, "tune")
            key = (miss, -reject)
            if reject >= TUNE_REJECT and (best is None or key < best[0]):
                best = (key, (float(frame), float(share)))
    assert best is not None, "no rule reaches the rejection target on the tune split"
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data")
    ap.add_argument("--out", type=Path, help="write every window's chunk probabilities here (JSON)")
    ap.add_argument("--rows", type=Path, help="read them from here instead of measuring again")
    args = ap.parse_args()
    rows = json.loads(args.rows.read_text()) if args.rows else measure(args.shared)
    if args.out:
        args.out.write_text(json.dumps(rows))
    frame, share = choose(rows)
    print(f"chosen on the tune split: FRAME_THRESHOLD = {frame:.2f}, MIN_SPEECH_FRACTION = {share:.2f}")
    print(f"trnet.vad has FRAME_THRESHOLD = {vad.FRAME_THRESHOLD}, MIN_SPEECH_FRACTION = {vad.MIN_SPEECH_FRACTION}")
    frame, share = vad.FRAME_THRESHOLD, vad.MIN_SPEECH_FRACTION
    for split in ("tune", "test"):
        miss, reject = rates(rows, frame, share, split)
        n_sp = sum(r["split"] == split and r["kind"] == "speech" for r in rows)
        n_ns = sum(r["split"] == split and r["kind"] == "non-speech" for r in rows)
        print(
            f"{split}: speech windows called no speech {miss:.2%} of {n_sp}; "
            f"non-speech called no speech {reject:.2%} of {n_ns}"
        )
    print("\ntest split, by source (share called no speech):")
    for kind, source in sorted({(r["kind"], r["source"]) for r in rows if r["split"] == "test"}):
        part = [r for r in rows if r["split"] == "test" and r["source"] == source]
        print(f"  {kind:<10} {source:<24} {called_no_speech(part, frame, share).mean():7.2%} of {len(part)}")


if __name__ == "__main__":
    main()
