"""`spectral`: a classical enhancer with no learned model, a light fallback when no neural
back-end is usable. Wiener gain with decision-directed a priori SNR (Ephraim & Malah 1984),
noise PSD from minimum statistics (after Martin 2001: minimum of the smoothed periodogram
over a sliding window, times a bias factor). Offline, so the minimum window is centred; the
STFT/iSTFT pair is zero-phase, so the output is sample-aligned with the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy
import torch
from scipy.ndimage import minimum_filter1d
from scipy.signal import lfilter
from torch import Tensor

from trnet.enhance.base import SAMPLE_RATE, Enhancer, make_version
from trnet.options import ranged

N_FFT = 512
HOP = 128
# Mean periodogram / mean of the sliding minimum for stationary white noise with the
# default smoothing (0.9) and window (1.5 s); measured on 60 s of Gaussian noise.
MS_BIAS = 2.02
_EPS = 1e-12


@dataclass(frozen=True)
class SpectralOptions:
    window_s: float = ranged(1.5, 0.1, 10.0)  # seconds: below a pitch period, or beyond any utterance
    smoothing: float = ranged(0.9, 0.0, 1.0, hi_open=True)  # a recursive average's weight
    dd_alpha: float = ranged(0.98, 0.0, 1.0, hi_open=True)
    xi_min_db: float = ranged(-25.0, -100.0, 0.0)
    gain_floor_db: float = ranged(-12.0, -100.0, 0.0)


class Spectral(Enhancer):
    """`window_s`: minimum-statistics window; `smoothing`: periodogram smoothing;
    `dd_alpha`: decision-directed weight; `xi_min_db`: a priori SNR floor (limits musical
    noise); `gain_floor_db`: maximum attenuation. A mild floor trades residual noise for
    fewer artefacts: on the VoiceBank+DEMAND samples PESQ is 2.14 at -20 dB, 2.50 at -12 dB
    (noisy: 2.19)."""

    name = "spectral"
    Options = SpectralOptions

    def __init__(self, **options: float):
        o = self.configure(options)
        self.window_s, self.smoothing, self.dd_alpha = o.window_s, o.smoothing, o.dd_alpha
        self.xi_min_db, self.gain_floor_db = o.xi_min_db, o.gain_floor_db
        self._window = torch.hann_window(N_FFT)

    @property
    def version(self) -> str:
        return make_version(
            self.name,
            torch=torch.__version__,
            scipy=scipy.__version__,
            stft=f"{N_FFT}/{HOP}",
            window_s=self.window_s,
            smoothing=self.smoothing,
            dd_alpha=self.dd_alpha,
            xi_min_db=self.xi_min_db,
            gain_floor_db=self.gain_floor_db,
        )

    def noise_psd(self, power: np.ndarray) -> np.ndarray:
        """Minimum-statistics noise PSD of a periodogram [F, T] (same shape)."""
        a = self.smoothing
        smooth = lfilter([1 - a], [1, -a], power, axis=1, zi=a * power[:, :1])[0]
        frames = max(1, round(self.window_s * SAMPLE_RATE / HOP))
        return MS_BIAS * minimum_filter1d(smooth, frames, axis=1, mode="nearest") + _EPS

    def gains(self, power: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decision-directed Wiener gains [F, T]; sequential in time by construction."""
        xi_min = 10 ** (self.xi_min_db / 10)
        g_min = 10 ** (self.gain_floor_db / 20)
        gamma = power / noise  # a posteriori SNR
        gains = np.empty_like(power)
        prev = np.zeros(power.shape[0])  # |S_hat(t-1)|^2 / noise(t-1)
        for t in range(power.shape[1]):
            xi = self.dd_alpha * prev + (1 - self.dd_alpha) * np.maximum(gamma[:, t] - 1, 0)
            xi = np.maximum(xi, xi_min)
            g = np.maximum(xi / (1 + xi), g_min)
            gains[:, t] = g
            prev = g * g * gamma[:, t]
        return gains

    def _enhance_one(self, x: Tensor) -> Tensor:
        spec = torch.stft(x, N_FFT, HOP, window=self._window, center=True, pad_mode="constant", return_complex=True)
        power = spec.abs().double().square().numpy()
        gains = self.gains(power, self.noise_psd(power))
        out = spec * torch.from_numpy(gains).to(torch.float32)
        return torch.istft(out, N_FFT, HOP, window=self._window, center=True, length=x.numel())
