"""The noise generators of the built-in synthetic corpus: coloured noise, babble, mains hum,
engine, rain and siren, each from a seeded RNG (`NOISE_MAKERS[category](rng, n)`)."""

from __future__ import annotations

import numpy as np
from scipy import fft, signal

from trnet.audio import SAMPLE_RATE as SR
from trnet.corpora.manifest import LABELS
from trnet.corpora.speechsynth import make_voice, smooth, synthesise, utterance_style


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with a 1/f^exponent power spectrum (pink = 1, brown = 2), flat below
    20 Hz so that sub-audible drift does not dominate."""
    size = fft.next_fast_len(n, real=True)  # random lengths can be prime: slow FFTs
    spec = fft.rfft(rng.standard_normal(size))
    spec /= np.maximum(fft.rfftfreq(size, 1 / SR), 20.0) ** (exponent / 2)
    return fft.irfft(spec, size)[:n]


def _white(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    return _coloured(rng, n, 1.0)


def _brown(rng: np.random.Generator, n: int) -> np.ndarray:
    return _coloured(rng, n, 2.0)


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """4-8 overlapping talkers, voices drawn afresh (never corpus speakers) with random
    emotions, each at its own level."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(4, 9))):
        voice = make_voice(rng, "FM"[rng.integers(2)])
        talk = synthesise(rng, voice, utterance_style(rng, voice, LABELS[rng.integers(len(LABELS))]), n)
        out += np.roll(talk, rng.integers(n)) / np.sqrt(np.mean(talk**2)) * 10 ** (rng.uniform(-4, 4) / 20)
    return out


def _harmonics(f0: np.ndarray, amps: list[float] | np.ndarray) -> np.ndarray:
    """Sum of harmonics k*f0(t) with amplitudes `amps[k-1]`, each muted where it would alias.
    sin(k*phase) comes from the Chebyshev recurrence, far cheaper than one sin per harmonic."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros_like(phase), np.sin(phase)
    out = np.zeros_like(phase)
    for k, a in enumerate(amps, start=1):
        out += a * cur * (k * f0 < 0.45 * SR)
        prev, cur = cur, two_cos * cur - prev
    return out


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum/buzz: 50 or 60 Hz with many harmonics, slight drift, a little hiss."""
    f0 = rng.choice([50.0, 60.0]) * (1 + 0.002 * smooth(rng.standard_normal(n // 800 + 2), 5))
    f0 = np.interp(np.arange(n), np.linspace(0, n, len(f0)), f0)
    amps = rng.uniform(0.3, 1.0, 40) / np.arange(1, 41) ** rng.uniform(0.5, 1.5)
    return _harmonics(f0, amps) + 0.05 * rng.standard_normal(n)


def _engine(rng: np.random.Generator, n: int) -> np.ndarray:
    """Engine: a firing rate of 20-70 Hz that drifts with the revs, its harmonics, and low
    rumble."""
    revs = smooth(rng.standard_normal(n // 1600 + 2), 5)
    f0 = rng.uniform(20, 70) * (1 + 0.15 * revs / (np.abs(revs).max() + 1e-9))
    f0 = np.interp(np.arange(n), np.linspace(0, n, len(f0)), f0)
    tone = _harmonics(f0, rng.uniform(0.5, 1.0, 60) / np.arange(1, 61) ** 0.8)
    rumble = _coloured(rng, n, 2.0)
    return tone / np.std(tone) + 0.5 * rumble / np.std(rumble)


def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rain: Poisson-timed droplets (short decaying noise bursts; big drops rarer, louder and
    longer) over a pink bed, plus sparse crackle."""
    out = np.zeros(n)
    for rate, tau_ms, level in ((rng.uniform(500, 3000), 0.7, 0.5), (rng.uniform(20, 150), 3.0, 2.0)):
        hits = np.zeros(n)
        where = rng.integers(n, size=rng.poisson(rate * n / SR))
        np.add.at(hits, where, level * rng.lognormal(0, 0.6, len(where)))
        length = int(8 * tau_ms * SR / 1000)
        drop = np.diff(rng.standard_normal(length + 1)) * np.exp(-np.arange(length) / (tau_ms * SR / 1000))
        out += signal.oaconvolve(hits, drop)[:n]
    crackle = np.zeros(n)
    clicks = int(rng.uniform(5, 30) * n / SR)
    crackle[rng.integers(n, size=clicks)] = rng.choice([-3.0, 3.0], size=clicks)
    bed = _coloured(rng, n, 1.0)
    return out / np.std(out) + crackle + 0.3 * bed / np.std(bed)


def _siren(rng: np.random.Generator, n: int) -> np.ndarray:
    """Siren: a wail (slow sine sweep) or yelp (fast sawtooth sweep) tone with odd harmonics,
    fading in and out, over faint pink background."""
    t = np.arange(n) / SR
    if rng.random() < 0.5:
        sweep = np.sin(2 * np.pi * t / rng.uniform(3, 6) + rng.uniform(0, 2 * np.pi))
    else:
        sweep = 2 * ((t / rng.uniform(0.25, 0.45) + rng.random()) % 1) - 1
    f0 = rng.uniform(800, 1200) + rng.uniform(250, 450) * sweep
    tone = _harmonics(f0, [1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7])
    fade = 0.6 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(8, 20) + rng.uniform(0, 2 * np.pi))
    bed = _coloured(rng, n, 1.0)
    return fade * tone / np.std(tone) + 0.1 * bed / np.std(bed)


NOISE_MAKERS = {
    "white": _white,
    "pink": _pink,
    "brown": _brown,
    "babble": _babble,
    "hum": _hum,
    "engine": _engine,
    "rain": _rain,
    "siren": _siren,
}
NOISE_CATEGORIES = tuple(NOISE_MAKERS)
