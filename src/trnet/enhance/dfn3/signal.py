"""DeepFilterNet's signal path around the DFN3 graphs, rebuilt from libDF: the 960/480
analysis/synthesis STFT, ERB and complex features with running-mean normalisation, applying
the ERB gains and the deep-filter coefficients, the post-filter and the attenuation limit.
See `trnet.enhance.dfn3.batched` for what makes it equal to libDF's frame loop."""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import lfilter

from trnet.enhance.dfn3.model import Params

# libDF's initial running-normalisation states (MEAN_NORM_INIT, UNIT_NORM_INIT in lib.rs).
MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)


class SignalPath:
    """DeepFilterNet's analysis, features and synthesis around the graphs, on [B, ...] arrays."""

    def __init__(self, p: Params):
        self.p = p
        self.window = p.window()
        self.wnorm = np.float32(1.0 / (p.fft_size**2 / (2 * p.hop_size)))  # analysis only, as libDF
        self.widths = p.erb_widths()
        self.band_starts = np.concatenate([[0], np.cumsum(self.widths)[:-1]])
        self.alpha = p.alpha
        self.mean_init = np.linspace(*MEAN_NORM_INIT, p.nb_erb, dtype=np.float32)
        self.unit_init = np.linspace(*UNIT_NORM_INIT, p.nb_df, dtype=np.float32)

    def frames_for(self, n: int) -> int:
        """Model frames for `n` samples at 48 kHz: every output frame plus the lookahead."""
        hop = self.p.hop_size
        return (n + hop - 1) // hop + 1 + self.p.lookahead

    def padded(self, x: np.ndarray) -> np.ndarray:
        """x [B, N] (zero after each utterance) -> the analysis buffer: `hop` zeros, x, zeros
        up to the last frame."""
        hop = self.p.hop_size
        buf = np.zeros((x.shape[0], (self.frames_for(x.shape[1]) + 1) * hop), np.float32)
        buf[:, hop : hop + x.shape[1]] = x
        return buf

    def analysis(self, buf: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """Spectrum of frames [t0, t1) of `padded(x)` -> [B, t1 - t0, F] complex64. Frame f
        covers samples [(f - 1) hop, f hop + hop) of x: libDF's streaming STFT, frame for frame."""
        hop, fft = self.p.hop_size, self.p.fft_size
        segments = np.lib.stride_tricks.sliding_window_view(buf[:, t0 * hop : (t1 + 1) * hop], fft, axis=1)[:, ::hop]
        return _rfft(segments * self.window) * self.wnorm

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """lfilter states of the two running means, at libDF's initial values."""
        a = self.alpha
        return tuple(
            np.broadcast_to(a * init.astype(np.float64), (batch, 1, len(init))).copy()
            for init in (self.mean_init, self.unit_init)
        )

    def _running_mean(self, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.alpha
        return lfilter([1 - a], [1, -a], x.astype(np.float64), axis=1, zi=zi)

    def features(self, spec: np.ndarray, state: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        """-> feat_erb [B, 1, T, nb_erb], feat_spec [B, 2, T, nb_df] (float32), next state."""
        power = spec.real**2 + spec.imag**2
        erb = np.add.reduceat(power, self.band_starts, axis=-1) / self.widths.astype(np.float32)
        erb = np.float32(10) * np.log10(erb + np.float32(1e-10))
        mean, zi_erb = self._running_mean(erb, state[0])
        feat_erb = ((erb - mean) / 40).astype(np.float32)
        low = spec[..., : self.p.nb_df]
        unit, zi_unit = self._running_mean(np.abs(low), state[1])
        cplx = low / np.sqrt(unit).astype(np.float32)
        feat_spec = np.stack([cplx.real, cplx.imag], axis=1).astype(np.float32)
        return feat_erb[:, None], feat_spec, (zi_erb, zi_unit)

    @property
    def context(self) -> int:
        """Spectrum frames before an output frame that the deep filter reads."""
        return self.p.df_order - 1 - self.p.lookahead

    def enhance_frames(
        self, spec: np.ndarray, gains: np.ndarray, coefs: np.ndarray, post_filter_beta: float, atten_lim: float | None
    ) -> np.ndarray:
        """Enhanced frames [fa, fa + n): `gains` [B, n, nb_erb] and `coefs` [B, n, nb_df, order]
        are the model outputs of frames fa + lookahead ..; `spec` [B, context + n + lookahead, F]
        holds the spectrum of frames fa - context .. fa + n + lookahead - 1."""
        ctx, order, nb_df = self.context, self.p.df_order, self.p.nb_df
        n = gains.shape[1]
        noisy = spec[:, ctx : ctx + n]
        enh = noisy * np.repeat(gains, self.widths, axis=-1)
        # Deep filter on the noisy low band: frame f reads frames f - context + k.
        low = coefs[..., 0] * spec[:, :n, :nb_df]
        for k in range(1, order):
            low += coefs[..., k] * spec[:, k : k + n, :nb_df]
        enh[..., :nb_df] = low
        if post_filter_beta > 0:
            post_filter(noisy, enh, post_filter_beta)
        if atten_lim is not None:
            enh = enh * np.float32(1 - atten_lim) + noisy * np.float32(atten_lim)
        return enh

    def synthesis(self, spec: np.ndarray, carry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhanced frames [B, n, F] -> [B, n hop] samples (frame f's first half at f hop)
        and the last frame's second half for the next call: inverse FFT (unnormalised, as
        libDF), window, overlap-add."""
        hop, fft = self.p.hop_size, self.p.fft_size
        frames = _irfft(spec, fft) * self.window
        batch = frames.shape[0]
        out = frames[..., :hop].reshape(batch, -1)
        out[:, :hop] += carry
        out[:, hop:] += frames[:, :-1, hop:].reshape(batch, -1)
        return out, frames[:, -1, hop:]


# FFTs through torch.fft (zero-copy on numpy arrays): 3.7x faster than numpy's on [16, 503,
# 960] frames here, and, like numpy's, row by row identical whatever the batch (tested).
def _rfft(x: np.ndarray) -> np.ndarray:
    return torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(x, np.float32)), dim=-1).numpy()


def _irfft(x: np.ndarray, n: int) -> np.ndarray:
    """Unnormalised inverse (libDF's realfft does not scale)."""
    return torch.fft.irfft(torch.from_numpy(np.ascontiguousarray(x, np.complex64)), n, dim=-1, norm="forward").numpy()


def post_filter(noisy: np.ndarray, enh: np.ndarray, beta: float) -> None:
    """libDF's `post_filter` (in place): a gain-dependent attenuation of the enhanced spectrum,
    on the bins it reaches (it steps 4 bins at a time: 480 of 481 at 48 kHz)."""
    n = (enh.shape[-1] // 4) * 4
    eps = np.float32(1e-12)
    g = np.abs(enh[..., :n]) / (np.abs(noisy[..., :n]) + eps)
    g = np.clip(g, eps, np.float32(1))
    g_sin = g * np.sin(g * np.float32(np.pi / 2))
    pf = (np.float32(beta + 1) * g / (np.float32(1) + np.float32(beta) * (g / g_sin) ** 2)) / g
    enh[..., :n] *= pf


def attenuation_limit(atten_lim_db: float) -> float | None:
    """libDF's mixing weight of the noisy spectrum: None (no limit) at 100 dB or more."""
    if atten_lim_db < 0:
        raise ValueError(f"atten_lim_db must be >= 0 (100 = unlimited), got {atten_lim_db}")
    if atten_lim_db >= 100:
        return None
    if atten_lim_db < 0.01:
        return 1.0
    return float(np.float32(10) ** np.float32(-atten_lim_db / 20))
