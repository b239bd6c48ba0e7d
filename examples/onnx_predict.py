"""Emotion of an audio file with the one-file ONNX pipeline; needs only onnxruntime, numpy, soundfile.

    trnet export --format onnx --pipeline --out trnet.onnx      # once, where trnet is installed
    python examples/onnx_predict.py trnet.onnx speech.wav       # anywhere
"""

import json
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf


def resample(x: np.ndarray, rate: int, to: int = 16_000, half: int = 32) -> np.ndarray:
    """Kaiser-windowed sinc interpolation, low-passed at the lower of the two Nyquists."""
    cut, t = min(1.0, to / rate), np.arange(int(len(x) * to / rate)) * (rate / to)
    out = np.empty(len(t), np.float32)
    for i in range(0, len(t), 8192):
        k = np.floor(t[i : i + 8192, None]) + np.arange(1 - half, half + 1)
        d = t[i : i + 8192, None] - k
        w = cut * np.sinc(cut * d) * np.i0(8.0 * np.sqrt(np.clip(1 - (d / half) ** 2, 0, 1))) / np.i0(8.0)
        out[i : i + 8192] = (w * np.where((k >= 0) & (k < len(x)), x[np.clip(k, 0, len(x) - 1).astype(int)], 0)).sum(1)
    return out


session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items() if k != "trnet.aggregate"}
wave, rate = sf.read(sys.argv[2], dtype="float32", always_2d=True)
x = wave.mean(axis=1) if rate == 16_000 else resample(wave.mean(axis=1), rate)
probs, c, speech = session.run(["probabilities", "c", "speech"], {"waveform": x[None].astype(np.float32)})
win, hop, n = meta["trnet.windows"]["window_samples"], meta["trnet.windows"]["hop_samples"], max(len(x), 400)
length = np.minimum(n, np.arange(len(probs)) * hop + win) - np.arange(len(probs)) * hop
voiced = speech >= meta["trnet.speech"]["min_speech_fraction"]
mean = (length * voiced) @ probs / (length * voiced).sum() if voiced.any() else length @ probs / length.sum()
label = meta["trnet.labels"][int(mean.argmax())] if voiced.any() else "no speech"
print(f"{sys.argv[2]}: {label}  " + "  ".join(f"{k} {p:.3f}" for k, p in zip(meta["trnet.labels"], mean, strict=False)))
