"""The emotions of the synthetic corpus as prosody and voice quality (`Style`), one per class,
after the acoustic correlates of emotional speech (Scherer 2003; Banse and Scherer 1996):
`trnet.corpora.speechsynth` renders them."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Style:
    """Prosody and voice quality of one emotion."""

    f0_scale: float  # mean F0 re the speaker's habitual F0
    range_st: float  # height of pitch accents, semitones
    slope_st: float  # declination (<0) or rise (>0) over the utterance, semitones
    terminal_st: float  # final rise/fall on the last syllable, semitones
    rate: float  # syllables per second
    level_db: float  # loudness re neutral
    tilt: float  # one-pole low-pass coefficient on the source: higher = steeper tilt
    open_quotient: float  # low = pressed voice, high = breathy voice
    closing: float  # closing phase as a fraction of the open phase: low = abrupt closure
    breath: float
    jitter: float
    shimmer: float
    pause_prob: float
    accent_prob: float
    f1_scale: float  # jaw opening in loud speech raises F1
    formant_scale: float  # smiling shortens the vocal tract
    b1_scale: float  # breathy voice damps F1

    def towards(self, other: Style, t: float) -> Style:
        """The style a fraction `t` of the way from self to `other` (t may exceed 1)."""
        return Style(
            *(getattr(self, f.name) + t * (getattr(other, f.name) - getattr(self, f.name)) for f in fields(Style))
        )


STYLES = {
    "angry": Style(
        f0_scale=1.40,
        range_st=7.0,
        slope_st=-3.0,
        terminal_st=-3.0,
        rate=5.6,
        level_db=6.0,
        tilt=0.15,
        open_quotient=0.40,
        closing=0.22,
        breath=0.04,
        jitter=0.015,
        shimmer=0.08,
        pause_prob=0.08,
        accent_prob=0.60,
        f1_scale=1.08,
        formant_scale=1.00,
        b1_scale=1.0,
    ),
    "happy": Style(
        f0_scale=1.30,
        range_st=8.0,
        slope_st=2.0,
        terminal_st=3.0,
        rate=5.0,
        level_db=2.0,
        tilt=0.35,
        open_quotient=0.55,
        closing=0.33,
        breath=0.07,
        jitter=0.010,
        shimmer=0.05,
        pause_prob=0.10,
        accent_prob=0.50,
        f1_scale=1.04,
        formant_scale=1.03,
        b1_scale=1.0,
    ),
    "neutral": Style(
        f0_scale=1.00,
        range_st=3.0,
        slope_st=-2.0,
        terminal_st=-2.0,
        rate=4.4,
        level_db=0.0,
        tilt=0.45,
        open_quotient=0.60,
        closing=0.40,
        breath=0.08,
        jitter=0.008,
        shimmer=0.05,
        pause_prob=0.15,
        accent_prob=0.30,
        f1_scale=1.00,
        formant_scale=1.00,
        b1_scale=1.0,
    ),
    "sad": Style(
        f0_scale=0.90,
        range_st=1.5,
        slope_st=-3.0,
        terminal_st=-2.0,
        rate=3.2,
        level_db=-5.0,
        tilt=0.70,
        open_quotient=0.75,
        closing=0.50,
        breath=0.30,
        jitter=0.012,
        shimmer=0.07,
        pause_prob=0.30,
        accent_prob=0.15,
        f1_scale=0.97,
        formant_scale=0.98,
        b1_scale=1.4,
    ),
}
