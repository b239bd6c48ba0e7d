"""Emotion prediction on your own audio: SE front-end -> LMFB -> trained system.

    model = trnet.load("runs/trnet/fold0-seed1")
    p = model.predict(wave, sample_rate)      # Prediction(label, probabilities, c, reliable, ...)

Inputs are handled as at training time (docs/design.md §1): mono, 16 kHz, SE on the waveform, LMFB of
the noisy and the enhanced signal, padded frames masked. The models were trained on segments
of at most 5 s, so a longer input is cut into 5 s windows with overlap (hop 2.5 s); the file's
result is the mean of the window probabilities weighted by each window's length. A window
without speech (Silero VAD, `trnet.vad`) is labelled "no speech", unreliable, and left out of
the file's result, as are digitally silent windows of an otherwise audible input (with a
warning); an input without any speech is "no speech" and unreliable. The input is
streamed: a file is read block by block, and SE, features and model run on batches of
windows, SE on a stretch of signal that covers the batch plus SE_CONTEXT seconds on each side
(`trnet.predict.stream`), so memory stays flat however long the input. Inputs under 0.5 s,
digitally silent, far beyond full scale or cut short (a WAV whose header promises more than
the file holds) or declared at a sample rate below 4 kHz still get a prediction, flagged
unreliable with a warning: a caller sorting thousands of files wants a row per file, not a
crash. An input so loud that its features overflow (a float file at 1e18) is that file's
error (AudioError), never the model's; non-finite model outputs from finite features (damaged
weights) are an error of the model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trnet import enhance, pretrained, vad
from trnet.audio import SAMPLE_RATE, AudioError, declared_info, resample, stream_audio, wav_truncation
from trnet.device import torch_device
from trnet.enhance import Enhancer
from trnet.features import FRAME_LENGTH, fbank, num_frames
from trnet.models import SERSystem
from trnet.predict.inputs import (  # noqa: F401 - the input checks and their bounds, re-exported
    MAX_LOW_RATE_SECONDS,
    MAX_WINDOW_SECONDS,
    MIN_HOP_SECONDS,
    MIN_RATE,
    MIN_SECONDS,
    check_low_rate,
    check_windows,
    timed,
    timed_blocks,
    to_mono_float,
)
from trnet.predict.stream import Segment, WindowStream, spans
from trnet.runs import RunError, load_run

SILENCE_PEAK = 1e-4  # peak amplitude below this (about -80 dBFS) is digital silence
LOUD_PEAK = 4.0  # peak amplitude above this (12 dB over full scale) is not audio as the model knows it
WINDOW_SECONDS = 5.0  # the training segment length (docs/design.md §1)
HOP_SECONDS = 2.5
WINDOW_BATCH = 16  # windows per model call: bounds memory (activations) on hour-long inputs
SE_WINDOWS = 64  # windows per SE call: 162.5 s of signal, plus the context
SE_CONTEXT = 10.0  # seconds of signal enhanced on each side of an SE call's windows (then dropped)
BLOCK_SECONDS = 10.0  # audio read per step


@dataclass
class Window:
    """The prediction for one window of a long input; times in seconds."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]
    c: float | None
    silent: bool = False  # digitally silent: left out of the file's result (when the rest is audible)
    speech: float = 1.0  # share of Silero VAD's 32 ms chunks that hold speech (trnet.vad)
    reliable: bool = True  # False for a window without speech (labelled "no speech") or silent


@dataclass
class Prediction:
    """One input's result. `c` is the SNR coefficient of systems with an SNR-aware
    module (eq. (1): the weight of the unenhanced input; not calibrated), else None.
    `windows` is empty for inputs no longer than one window."""

    label: str
    probabilities: dict[str, float]
    c: float | None
    reliable: bool
    warnings: list[str]
    windows: list[Window]
    duration: float  # seconds of input audio
    speech: float = 1.0  # the largest speech share of a window; label "no speech" below vad.MIN_SPEECH_FRACTION


class Predictor:
    """A trained system with its SE front-end, ready for inference. Build it with `load`."""

    def __init__(
        self,
        model: SERSystem,
        config: dict,
        se: Enhancer | None,
        device: str,
        window: float = WINDOW_SECONDS,
        hop: float = HOP_SECONDS,
    ) -> None:
        check_windows(window, hop)
        self.model = model
        self.config = config  # the run's config.json: fold, speakers, SE, training settings
        self.se = se
        self.device = device
        self.labels: list[str] = list(config["labels"])
        if len(self.labels) != model.cfg.n_classes:
            raise RunError(f"config.json lists {len(self.labels)} labels for a {model.cfg.n_classes}-class model")
        self.window = round(window * SAMPLE_RATE)
        self.hop = round(hop * SAMPLE_RATE)
        self.warnings: list[str] = []  # about the model as a whole (e.g. an SE it was not trained with)
        self.path: Path | None = None  # the run directory or bundle it was loaded from (set by `load`)

    @property
    def system(self) -> str:
        return self.model.cfg.name

    @property
    def se_name(self) -> str | None:
        return None if self.se is None else self.se.name

    def predict_file(self, path: str | Path, timings: dict[str, float] | None = None) -> Prediction:
        """Read any file trnet.audio accepts (raises trnet.audio.AudioError), block by block,
        and predict."""
        warns = []
        cut = wav_truncation(path)
        if cut is not None:
            warns.append(f"the file is truncated: its header says {cut[0]:.2f} s, it holds {cut[1]:.2f} s")
        rate, frames = declared_info(path) or (None, 0)
        if rate is not None and rate < MIN_RATE:
            check_low_rate(rate, frames, str(path))
            warns.append(
                f"the file declares a sample rate of {rate} Hz (< {MIN_RATE} Hz): it cannot hold speech "
                "as the model knows it; check its header"
            )
        try:
            return self._predict(timed_blocks(stream_audio(path, BLOCK_SECONDS), timings), warns, timings)
        except InputOverflow as err:
            raise AudioError(f"{path}: {err}") from None

    def predict(self, wave: Any, sample_rate: int, timings: dict[str, float] | None = None) -> Prediction:
        """Predict on a waveform: numpy array or torch tensor, [N], [N, C] or [C, N] (the
        shorter axis is channels), float in [-1, 1] or integer PCM, any sample rate.
        `timings`, if given, accumulates seconds per stage (load, SE, features, model)."""
        with timed(timings, "load"):
            audio = self.prepare(wave, sample_rate)
        step = int(BLOCK_SECONDS * SAMPLE_RATE)
        warns = (
            []
            if sample_rate >= MIN_RATE
            else [f"sample rate {sample_rate} Hz (< {MIN_RATE} Hz): it cannot hold speech as the model knows it"]
        )
        try:
            return self._predict((audio[i : i + step] for i in range(0, len(audio), step)), warns, timings)
        except InputOverflow as err:
            raise AudioError(f"waveform: {err}") from None

    def _predict(self, blocks: Any, warns: list[str], timings: dict[str, float] | None) -> Prediction:
        stream = WindowStream(
            blocks,
            self.window,
            self.hop,
            SE_WINDOWS,
            round(SE_CONTEXT * SAMPLE_RATE),
            min_tail=round(MIN_SECONDS * SAMPLE_RATE),
            min_length=FRAME_LENGTH,
        )
        probs, cs, spans, silent = [], [], [], []
        track = vad.SpeechTrack()
        for segment in stream:
            if segment.start + len(segment.samples) > track.fed:  # segments overlap: feed the new part
                track.feed(segment.samples[track.fed - segment.start :])
            p, c = self.segment(segment, timings)
            probs.append(p)
            cs.append(c)
            spans += segment.spans
            silent += [np.abs(segment.samples[a:b]).max() < SILENCE_PEAK for a, b in segment.local()]
        n_true = stream.n_true
        warns += self.check(n_true, stream.peak)
        prob = np.concatenate(probs)
        c_all = None if cs[0] is None else np.concatenate(cs)
        weights = np.array([stop - start for start, stop in spans], dtype=np.float64)
        chunks = track.finish()
        speech = [vad.speech_fraction(chunks, start, stop) for start, stop in spans]
        voiced = [vad.is_speech(f) for f in speech]
        reliable = not warns
        if not any(voiced):
            warns.append(
                "no speech found (Silero VAD): labelled 'no speech'; the probabilities are what the "
                "model says about the sound and mean nothing about emotion"
            )
        for k, (start, stop) in enumerate(spans):  # windows without speech don't vote, nor silent ones
            span = f"{start / SAMPLE_RATE:.1f}-{stop / SAMPLE_RATE:.1f} s"
            if len(spans) > 1 and reliable and not all(silent) and silent[k]:
                weights[k] = 0.0
                warns.append(f"window {span} is digitally silent: left out of the result")
            elif len(spans) > 1 and any(voiced) and not voiced[k]:
                weights[k] = 0.0
                warns.append(f"window {span} holds no speech: left out of the result")
        weights /= weights.sum()
        mean = weights @ prob
        c_list = [None] * len(spans) if c_all is None else [float(c) for c in c_all]
        windows = [
            Window(
                start / SAMPLE_RATE,
                min(stop, n_true) / SAMPLE_RATE,
                *self._label(p, voiced[k]),
                c_list[k],
                silent=bool(silent[k]),
                speech=speech[k],
                reliable=voiced[k] and not silent[k],
            )  # fmt: skip
            for k, ((start, stop), p) in enumerate(zip(spans, prob, strict=False))
        ]
        return Prediction(
            *self._label(mean, any(voiced)),
            c=None if c_all is None else float(weights @ c_all),
            reliable=reliable and any(voiced),
            warnings=warns,
            windows=windows if len(windows) > 1 else [],
            duration=n_true / SAMPLE_RATE,
            speech=max(speech),
        )

    def segment(
        self, segment: Segment, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and c of a segment's windows: SE on the segment, then features and
        model on batches of WINDOW_BATCH windows."""
        with timed(timings, "SE"):
            enhanced = self.enhance(segment.samples)
        wave, spans = torch.from_numpy(segment.samples), segment.local()
        probs, cs = [], []
        for i in range(0, len(spans), WINDOW_BATCH):
            with timed(timings, "features"):
                x, xe, frames = self.features(wave, enhanced, spans[i : i + WINDOW_BATCH])
            for feats in (x, xe):
                if feats is not None and not torch.isfinite(feats).all():
                    peak = float(np.abs(segment.samples).max())
                    raise InputOverflow(
                        f"peak amplitude {peak:.3g} is so far beyond full scale (1.0) that its "
                        "features overflow: not audio as the model knows it; skipped (check the "
                        "file's sample format or scaling)"
                    )
            with timed(timings, "model"):
                p, c = self.classify(x, xe, frames)
            probs.append(p)
            cs.append(c)
        return np.concatenate(probs), None if cs[0] is None else np.concatenate(cs)

    def prepare(self, wave: Any, sample_rate: int) -> np.ndarray:
        """Mono float32 at 16 kHz."""
        audio = to_mono_float(wave)
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise AudioError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if sample_rate < MIN_RATE:
            check_low_rate(int(sample_rate), len(audio), "waveform")
        return np.ascontiguousarray(resample(audio, int(sample_rate), SAMPLE_RATE), dtype=np.float32)

    @staticmethod
    def check(n: int, peak: float) -> list[str]:
        """Why a prediction on n samples (at 16 kHz) with this peak amplitude is unreliable."""
        warns = []
        seconds = n / SAMPLE_RATE
        if seconds < MIN_SECONDS:
            warns.append(f"only {seconds:.2f} s of audio (< {MIN_SECONDS} s): too short for a reliable estimate")
        if peak < SILENCE_PEAK:
            warns.append(f"digitally silent (peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e})")
        if peak > LOUD_PEAK:
            warns.append(
                f"peak amplitude {peak:.3g} is far beyond full scale (1.0): not audio as the model "
                "was trained on; check the file's sample format or scaling"
            )
        return warns

    def spans(self, n: int) -> list[tuple[int, int]]:
        """Sample ranges of the windows over n samples (`trnet.predict.stream.spans`)."""
        return spans(n, self.window, self.hop, round(MIN_SECONDS * SAMPLE_RATE))

    def enhance(self, audio: np.ndarray) -> torch.Tensor | None:
        """x_e of a stretch of input, or None for systems that never read it."""
        if self.model.cfg.input == "x":
            return None
        return self.se.enhance(torch.from_numpy(audio)[None])[0]

    def features(
        self, wave: torch.Tensor, enhanced: torch.Tensor | None, spans: list[tuple[int, int]]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """LMFB X and X_e [B, T, 80] of the windows (only those the system reads) + frames [B]."""
        lengths = torch.tensor([stop - start for start, stop in spans])

        def lmfb(signal: torch.Tensor) -> torch.Tensor:
            batch = torch.zeros(len(spans), int(lengths.max()))
            for b, (start, stop) in enumerate(spans):
                batch[b, : stop - start] = signal[start:stop]
            return fbank(batch.to(self.device))[0]

        need = self.model.cfg.input
        x = lmfb(wave) if need != "xe" else None
        xe = lmfb(enhanced) if need != "x" else None
        return x, xe, num_frames(lengths).to(self.device)

    def classify(
        self, x: torch.Tensor | None, xe: torch.Tensor | None, frames: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities [B, classes] and c [B] (None for systems without one)."""
        with torch.inference_mode():
            out = self.model(x, xe, frames)
        if not torch.isfinite(out.logits).all() or (out.c is not None and not torch.isfinite(out.c).all()):
            raise RunError(
                "the model's outputs are NaN/Inf: its weights are damaged (or were trained into "
                "NaN); restore best.safetensors, or train the run again"
            )
        c = None if out.c is None else out.c.float().cpu().numpy()
        return out.logits.float().softmax(-1).cpu().numpy(), c

    def _label(self, probs: np.ndarray, speech: bool = True) -> tuple[str, dict[str, float]]:
        label = self.labels[int(np.argmax(probs))] if speech else vad.NO_SPEECH
        return label, {k: float(v) for k, v in zip(self.labels, probs, strict=False)}

    def close(self) -> None:
        """Release the SE back-end's resources (threads, native states) now."""
        close = getattr(self.se, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InputOverflow(AudioError):
    """An input whose features are not finite (samples far beyond full scale)."""


def load(
    path: str | Path | None = None,
    se: str | None = None,
    device: str = "cpu",
    se_options: dict | None = None,
    window: float = WINDOW_SECONDS,
    hop: float = HOP_SECONDS,
    allow_unfinished: bool = False,
) -> Predictor:
    """A trained run (directory or its best.safetensors) with its SE front-end; None (or a
    bundle's name) is a model bundled with the package (`trnet.pretrained`), checked against
    its SHA-256 first.

    `se` defaults to the back-end the model was trained with, with its training options; any
    other back-end gives a UserWarning, since the model learnt the artefacts of its own SE.
    Systems that read only the noisy X (Baseline-c/-n) load no SE at all. A run without
    done.json is refused unless `allow_unfinished`: then its last checkpoint is used, with a
    UserWarning saying so."""
    check_windows(window, hop)
    device = str(torch_device(device))
    path = pretrained.resolve(path)
    model, config = load_run(path, device=device, allow_unfinished=allow_unfinished)
    trained = enhance.Spec.from_fields(config)
    trained_se = None if trained is None else trained.name
    notes = []
    if "unfinished" in config:
        notes.append(
            f"{path} is not a finished run: using its last checkpoint "
            f"({config['unfinished']['checkpoint']}, epoch {config['unfinished']['epoch']}), not the "
            "weights validation would choose"
        )
    backend = None
    if model.cfg.input == "x":
        if se is not None:
            notes.append(f"system {model.cfg.name!r} reads only the noisy input; SE {se!r} is not used")
    else:
        name = se or trained_se
        if name is None:
            raise RunError(f"{path}: config.json names no SE back-end; pass se=NAME")
        if name != trained_se:
            notes.append(
                f"model was trained on features enhanced by {trained_se!r}, not {name!r}: "
                "expect lower accuracy (the model learnt its own SE's artefacts)"
            )
        if se_options is None:
            se_options = trained.options if trained is not None and name == trained.name else {}
        backend = enhance.load(name, **se_options)
    predictor = Predictor(model, config, backend, device, window, hop)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    predictor.warnings = notes
    predictor.path = path
    return predictor
