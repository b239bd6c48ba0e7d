"""The source-filter speech synthesiser behind the built-in synthetic corpus (numpy/scipy
only): a Rosenberg glottal pulse train with jitter, shimmer and aspiration noise follows a
pitch contour, and passes through time-varying formant resonators that move between vowel
targets; syllables get consonant onsets (stops, fricatives, nasals, approximants).
Emotions are prosody and voice-quality styles (`STYLES`); `make_voice` draws a speaker,
`utterance_style` an utterance's blend of its emotion with neutral, and
`synthesise(rng, voice, style, n)` renders it. `trnet.corpora.synthetic` writes the corpus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from trnet.audio import SAMPLE_RATE as SR
from trnet.corpora.speechstyles import STYLES, Style

NPERSEG, HOP = 512, 128  # STFT used to apply the time-varying filters (8 ms control rate)
FREQS = np.fft.rfftfreq(NPERSEG, 1 / SR)
WINDOW = np.hanning(NPERSEG + 1)[:-1]  # periodic Hann, as scipy's stft

# Male vowel formants F1-F3 in Hz (Hillenbrand et al. 1995): iy ih eh ae aa ao uh uw ah er.
VOWELS = np.array(
    [
        [270, 2290, 3010],
        [390, 1990, 2550],
        [530, 1840, 2480],
        [660, 1720, 2410],
        [730, 1090, 2440],
        [570, 840, 2410],
        [440, 1020, 2240],
        [300, 870, 2240],
        [640, 1190, 2390],
        [490, 1350, 1690],
    ],
    dtype=float,
)
HIGH_FORMANTS = np.array([3500.0, 4500.0])  # F4, F5 of a male vocal tract
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 220.0, 300.0])


@dataclass(frozen=True)
class Consonant:
    """A syllable onset: its manner, its constriction formants (male Hz; None = those of the
    following vowel) and, for stops/fricatives, the noise band and its level re the vowel."""

    manner: str  # stop | fric | asp | nasal | approx
    formants: tuple[float, float, float] | None
    noise_hz: float = 0.0
    noise_width: float = 1.0
    noise_db: float = 0.0


CONSONANTS = (
    Consonant("stop", (300, 900, 2200), 900, 1500, -6),  # p
    Consonant("stop", (300, 1700, 2700), 4200, 2000, -4),  # t
    Consonant("stop", (300, 2000, 2500), 2300, 800, -4),  # k
    Consonant("fric", (300, 1700, 2700), 6200, 1200, -8),  # s
    Consonant("fric", (300, 1900, 2500), 3300, 900, -8),  # sh
    Consonant("fric", (300, 1000, 2300), 5000, 3500, -18),  # f
    Consonant("asp", None, noise_db=-5),  # h
    Consonant("nasal", (250, 1100, 2300)),  # m
    Consonant("nasal", (250, 1600, 2600)),  # n
    Consonant("approx", (360, 1100, 2700)),  # l
    Consonant("approx", (350, 1200, 1600)),  # r
    Consonant("approx", (300, 700, 2200)),  # w
    Consonant("approx", (280, 2200, 3000)),  # y
)


@dataclass(frozen=True)
class Voice:
    """Speaker identity: what stays the same across all of a speaker's utterances."""

    f0: float  # habitual pitch, Hz
    vtl: float  # formant scale; a shorter vocal tract raises every formant
    skew: tuple[float, ...]  # idiosyncratic factor per formant F1-F5
    breath: float  # aspiration noise re the voiced source
    tilt: float  # added to the source low-pass coefficient
    rate: float  # speaking-rate factor
    range: float  # pitch-range factor
    expressivity: float  # how far this speaker's emotions depart from neutral
    level_db: float


def make_voice(rng: np.random.Generator, gender: str) -> Voice:
    """A random speaker of the given gender (F ~200 Hz, M ~110 Hz; female vocal tracts ~15%
    shorter)."""
    female = gender == "F"
    return Voice(
        f0=(200.0 if female else 110.0) * float(np.exp(rng.normal(0, 0.08))),
        vtl=(1.17 if female else 1.0) * float(np.exp(rng.normal(0, 0.03))),
        skew=tuple(np.exp(rng.normal(0, 0.04, 5)).tolist()),
        breath=(0.06 if female else 0.02) + float(rng.uniform(0, 0.05)),
        tilt=float(rng.normal(0, 0.08)),
        rate=float(np.exp(rng.normal(0, 0.08))),
        range=float(np.exp(rng.normal(0, 0.15))),
        expressivity=float(np.exp(rng.normal(0, 0.15))),
        level_db=float(rng.normal(0, 1.5)),
    )


def utterance_style(rng: np.random.Generator, voice: Voice, label: str) -> Style:
    """The emotion's style, blended with neutral by a random intensity scaled by the speaker's
    expressivity: real emotional speech ranges from mild to full-blown."""
    return STYLES["neutral"].towards(STYLES[label], rng.uniform(0.45, 1.0) * voice.expressivity)


@dataclass
class _Segment:
    """A stretch of one syllable (or a pause) with constant source settings."""

    start: int
    end: int
    syllable: int  # -1 for silence
    voice: float = 0.0  # voiced-source amplitude
    noise: float = 0.0  # fricative/burst noise amplitude
    noise_hz: float = 0.0
    noise_width: float = 1.0
    aspiration: float = 0.0  # noise through the vocal tract (h, stop release)
    formants: tuple[np.ndarray, ...] = ()  # F1-F3 targets, spread evenly over the segment
    bandwidth: float = 1.0


def _plan(rng: np.random.Generator, voice: Voice, style: Style, n: int) -> tuple[list[_Segment], np.ndarray]:
    """Lay out syllables (onset consonant + vowel), pauses and edge silences over `n` samples.
    Returns the segments and the (start, end) sample of every syllable."""
    dur = n / SR
    lead, trail = rng.uniform(0.05, 0.2, 2)
    speech = dur - lead - trail
    rate = style.rate * voice.rate * np.exp(rng.normal(0, 0.08))
    n_syll = max(2, int(round(speech * rate)))
    pauses = np.where(rng.random(n_syll - 1) < style.pause_prob, rng.uniform(0.08, 0.25, n_syll - 1), 0.0)
    pauses *= min(1.0, 0.3 * speech / max(pauses.sum(), 1e-9))
    weights = rng.gamma(8.0, size=n_syll)
    weights[-1] *= 1.4  # phrase-final lengthening
    syll_dur = (speech - pauses.sum()) * weights / weights.sum()
    starts = lead + np.concatenate([[0.0], np.cumsum(syll_dur[:-1] + pauses)])
    bounds = np.round(np.stack([starts, starts + syll_dur], axis=1) * SR).astype(int)

    segs = [_Segment(0, int(bounds[0, 0]), -1)]
    for i, (start, end) in enumerate(bounds):
        if start > segs[-1].end:
            segs.append(_Segment(segs[-1].end, int(start), -1))
        s, d = segs[-1].end, end - segs[-1].end
        v1, v2 = VOWELS[rng.integers(len(VOWELS), size=2)] * (style.f1_scale, 1, 1)
        vowel = (v1, v2 if rng.random() < 0.2 else v1)  # some diphthongs
        if rng.random() < 0.8:
            cons = CONSONANTS[rng.integers(len(CONSONANTS))]
            # coarticulation: the constriction's formants are pulled towards the vowel's
            locus = v1 if cons.formants is None else 0.6 * np.array(cons.formants) + 0.4 * v1
            noise = dict(noise=10 ** (cons.noise_db / 20), noise_hz=cons.noise_hz, noise_width=cons.noise_width)
            if cons.manner == "stop":  # closure, burst, aspirated release
                closure = s + int(0.15 * d)
                burst = closure + min(int(0.015 * SR), int(0.1 * d))  # short syllables: shorter burst
                segs += [
                    _Segment(s, closure, i, formants=(locus,)),
                    _Segment(closure, burst, i, formants=(locus,), **noise),
                    _Segment(burst, burst + int(0.13 * d), i, aspiration=0.3, formants=(locus,)),
                ]
            elif cons.manner == "fric":
                segs.append(_Segment(s, s + int(0.3 * d), i, formants=(locus,), **noise))
            elif cons.manner == "asp":
                segs.append(_Segment(s, s + int(0.2 * d), i, aspiration=noise["noise"], formants=(locus,)))
            else:
                nasal = cons.manner == "nasal"
                segs.append(
                    _Segment(
                        s,
                        s + int(0.22 * d),
                        i,
                        voice=0.3 if nasal else 0.7,
                        formants=(np.array(cons.formants),),
                        bandwidth=2.0 if nasal else 1.0,
                    )
                )
        segs.append(_Segment(segs[-1].end, int(end), i, voice=1.0, formants=vowel))
    segs.append(_Segment(segs[-1].end, n, -1))
    return segs, bounds


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average with edge padding: turns step tracks into smooth gestures."""
    kernel = np.hanning(width + 2)[1:-1]
    kernel = (kernel / kernel.sum()).reshape((1,) * (x.ndim - 1) + (-1,))
    pad = width // 2 + 1
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="edge")
    return signal.oaconvolve(padded, kernel, mode="same", axes=-1)[..., pad:-pad]


def _piecewise(segs: list[_Segment], values: list[float]) -> np.ndarray:
    """A per-sample track holding `values[i]` over segment i."""
    return np.repeat(values, [g.end - g.start for g in segs])


def _glottal_flow(frac: np.ndarray, open_quotient: float, closing: float) -> np.ndarray:
    """Rosenberg (1971) glottal flow over one cycle (`frac` in [0, 1)): raised-cosine opening,
    quarter-cosine closing, then closed. A short closing phase = abrupt closure = strong high
    harmonics (pressed voice); a long open phase = breathy voice."""
    tp, tn = open_quotient * (1 - closing), open_quotient * closing
    rise = 0.5 * (1 - np.cos(np.pi * np.minimum(frac / tp, 1.0)))
    fall = np.cos(0.5 * np.pi * np.clip((frac - tp) / tn, 0.0, 1.0))
    return np.where(frac < tp, rise, np.where(frac < open_quotient, fall, 0.0))


def _formant_response(freqs: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Complex response (frames x bins) of cascaded two-pole resonators with unit DC gain
    (Klatt 1980), from formant frequencies and bandwidths (frames x formants, Hz). The
    cascade's denominator is one polynomial in z^-1 per frame, evaluated at every STFT bin
    at once by an FFT of its coefficients."""
    r = np.exp(-np.pi * bands / SR)
    c = 2 * r * np.cos(2 * np.pi * freqs / SR)
    poly = np.ones((len(freqs), 1))
    for k in range(freqs.shape[1]):  # multiply by (1 - c z^-1 + r^2 z^-2)
        poly = np.pad(poly, ((0, 0), (0, 2)))
        poly = poly - c[:, k, None] * np.roll(poly, 1, axis=1) + r[:, k, None] ** 2 * np.roll(poly, 2, axis=1)
    return np.prod(1 - c + r**2, axis=1)[:, None] / fft.rfft(poly, NPERSEG)


def _overlap_add(frames: np.ndarray) -> np.ndarray:
    """Sum frames (count x NPERSEG), frame j starting at sample j*HOP, into one signal."""
    quarters = frames.reshape(len(frames), -1, HOP)
    out = np.zeros((len(frames) + quarters.shape[1] - 1, HOP))
    for i in range(quarters.shape[1]):  # frame j's i-th quarter lands in block j + i
        out[i : i + len(frames)] += quarters[:, i]
    return out.ravel()


def _filter(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Time-varying filtering by STFT: row j of `response` (frames x bins), the filter around
    sample j*HOP, multiplies the spectrum of x there; weighted overlap-add resynthesises (the
    same result as scipy's stft/istft, at a third of the cost)."""
    count = len(response)
    keep = slice(NPERSEG // 2, NPERSEG // 2 + len(x))
    padded = np.zeros(NPERSEG + (count - 1) * HOP)
    padded[keep] = x
    segments = np.lib.stride_tricks.sliding_window_view(padded, NPERSEG)[::HOP] * WINDOW
    out = _overlap_add(fft.irfft(fft.rfft(segments) * response, NPERSEG) * WINDOW)
    norm = _overlap_add(np.broadcast_to(WINDOW**2, (count, NPERSEG)))
    return out[keep] / norm[keep]


def synthesise(rng: np.random.Generator, voice: Voice, style: Style, n: int) -> np.ndarray:
    """One utterance of `n` samples in `voice` and `style` (unnormalised float64)."""
    segs, bounds = _plan(rng, voice, style, n)
    n_frames = -(-n // HOP) + 1  # filter frames, centred at j*HOP, covering all n samples
    frame_t = np.arange(n_frames) * HOP

    # Pitch, in semitones re the utterance's base F0: declination/rise, one accent per
    # syllable (tall on accented ones), a terminal rise/fall and slow wander.
    base = voice.f0 * style.f0_scale * 2 ** (rng.normal(0, 1.2) / 12)
    span = style.range_st * voice.range * rng.uniform(0.7, 1.3)
    st = style.slope_st * (frame_t / n - 0.5)
    accented = rng.random(len(bounds)) < style.accent_prob
    heights = span * np.where(accented, rng.uniform(0.5, 1.0, len(bounds)), rng.uniform(0.0, 0.25, len(bounds)))
    for (s, e), h in zip(bounds, heights, strict=False):
        pos = np.clip((frame_t - s) / (e - s), 0, 1)
        st += h * 0.5 * (1 - np.cos(2 * np.pi * pos))
    s, e = bounds[-1]
    st += style.terminal_st * rng.uniform(0.3, 1.2) * np.clip((frame_t - s) / (e - s), 0, 1)
    wander = smooth(rng.standard_normal(n_frames), 25)
    st += 0.5 * wander / (wander.std() + 1e-9)
    f0 = base * 2 ** (np.interp(np.arange(n), frame_t, st) / 12)

    # Glottal source: jitter and shimmer vary per cycle, aspiration noise rides on the flow.
    cycle = (np.cumsum(f0) / SR).astype(int)
    f0 = f0 * (1 + style.jitter * rng.standard_normal(cycle[-1] + 1)[cycle])
    phase = np.cumsum(f0) / SR
    cycle = phase.astype(int)
    flow = _glottal_flow(phase - cycle, style.open_quotient, style.closing)
    pulses = np.diff(flow, prepend=0.0) * (1 + style.shimmer * rng.standard_normal(cycle[-1] + 1)[cycle])
    tilt = float(np.clip(style.tilt + voice.tilt, 0.0, 0.95))
    pulses = signal.lfilter([1 - tilt], [1, -tilt], pulses)
    pulses /= np.sqrt(np.mean(pulses**2))
    hiss = np.diff(rng.standard_normal(n + 1)) / np.sqrt(2)  # high-tilted noise, unit power

    # Syllable loudness: accents are louder, loudness declines over the utterance.
    syll_db = 0.5 * heights - 3 * (bounds[:, 0] / n)
    gain = _piecewise(segs, [10 ** (syll_db[g.syllable] / 20) if g.syllable >= 0 else 0.0 for g in segs])
    on_off = int(0.01 * SR)  # 10 ms onsets and offsets
    voiced_amp = smooth(_piecewise(segs, [g.voice for g in segs]) * gain, on_off)
    breath = style.breath + voice.breath
    aspiration = smooth(_piecewise(segs, [g.aspiration for g in segs]) * gain, on_off)
    source = voiced_amp * (pulses + breath * hiss * (0.4 + flow)) + aspiration * hiss
    frication = smooth(_piecewise(segs, [g.noise for g in segs]) * gain, on_off) * rng.standard_normal(n)

    # Vocal tract: formant targets at fixed points of each segment, interpolated per frame.
    knot_t, knot_f = [], []
    for g in segs:
        for j, target in enumerate(g.formants):
            knot_t.append(g.start + (j + 1) * (g.end - g.start) / (len(g.formants) + 1))
            knot_f.append(target)
    scale = voice.vtl * style.formant_scale * np.array(voice.skew)
    tract = np.concatenate([np.array(knot_f), np.broadcast_to(HIGH_FORMANTS, (len(knot_f), 2))], axis=1)
    formants = np.stack([np.interp(frame_t, knot_t, tract[:, k]) for k in range(5)], axis=1)
    formants = np.minimum(smooth(formants.T, 5).T * scale, 7000.0)
    seg_of_frame = np.minimum(np.searchsorted([g.end for g in segs], frame_t, side="right"), len(segs) - 1)
    widen = np.array([g.bandwidth for g in segs])[seg_of_frame]
    bands = BANDWIDTHS * np.stack([widen * style.b1_scale] + [widen] * 4, axis=1)
    tract_h = _formant_response(formants, bands)

    # Frication: a noise band per segment, interpolated between noisy segments.
    noisy = [g for g in segs if g.noise > 0] or [segs[0]]
    mids = [(g.start + g.end) / 2 for g in noisy]
    centre = np.interp(frame_t, mids, [g.noise_hz for g in noisy]) * voice.vtl
    width = np.interp(frame_t, mids, [g.noise_width for g in noisy])
    band = np.exp(-0.5 * ((FREQS - centre[:, None]) / width[:, None]) ** 2)
    band /= np.sqrt(np.mean(band**2, axis=1, keepdims=True)) + 1e-12

    voiced, fric = _filter(source, tract_h), _filter(frication, band)
    active = voiced_amp > 0.5 * voiced_amp.max()
    voiced /= np.sqrt(np.mean(voiced[active] ** 2))
    return voiced + fric
