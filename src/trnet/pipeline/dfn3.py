"""DeepFilterNet3 on one whole utterance as exportable PyTorch: `dfn3`'s signal path
(`trnet.enhance.dfn3.batched` / `signal`, libDF's frame loop) with the graphs of
`trnet.enhance.dfn3.torch_graphs`, written so that the ONNX exporter can follow it.

What changes in form, not in function (docs/design.md §12):
- the STFT/ISTFT are matmuls over hop-aligned frames (hop = fft / 2: a frame is two
  consecutive hop blocks), the overlap-add a sum of two reshaped halves;
- the two running means (libDF's exponential normalisation, `lfilter` in float64 in `dfn3`)
  are one-unit-per-band ReLU RNNs with diagonal weights alpha and 1 - alpha, on inputs shifted
  to be non-negative (ERB energies in dB are >= -100; magnitudes >= 0), so ReLU is the
  identity and the RNN is the recursion, exported as ONNX's RNN op;
- the model runs once over all frames with zero history and zero GRU states, which is what
  `dfn3` computes chunk by chunk (bitwise equal there, tested).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from trnet.enhance.dfn3.model import HISTORY, model_files
from trnet.enhance.dfn3.signal import SignalPath
from trnet.enhance.dfn3.torch_graphs import DfDecoder, Encoder, ErbDecoder
from trnet.pipeline.dsp import Resampler, dft_matrices, idft_matrices

DB_SHIFT = 100.0  # 10 log10(x + 1e-10) >= -100 dB: shifted, the running mean's input is >= 0


def _running_mean(alpha: float, init: np.ndarray, shift: float) -> tuple[nn.RNN, Tensor]:
    """y_t = alpha y_(t-1) + (1 - alpha) x_t per band, started at `init`, as a ReLU RNN on
    x + shift (>= 0); returns it and its initial state."""
    n = len(init)
    rnn = nn.RNN(n, n, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(n) * (1 - alpha))
        rnn.weight_hh_l0.copy_(torch.eye(n) * alpha)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    rnn.requires_grad_(False)
    return rnn, torch.from_numpy(init.astype(np.float32) + np.float32(shift))[None, None]


class DFN3Utterance(nn.Module):
    """wave [N] at 16 kHz -> enhanced [N]: `dfn3` with its default options (attenuation
    unlimited, no post-filter), soxr HQ resampling both ways included."""

    def __init__(self) -> None:
        super().__init__()
        files = model_files()
        p = self.p = files.params
        sp = SignalPath(p)
        self.up, self.down = Resampler(True), Resampler(False)
        self.enc = Encoder(files.raw["enc"])
        self.erb_dec = ErbDecoder(files.raw["erb_dec"])
        self.df_dec = DfDecoder(files.raw["df_dec"])
        self.hidden = {g: (getattr(self, g).gru.num_layers, files.hidden[g]) for g in ("enc", "erb_dec", "df_dec")}
        cos, sin = dft_matrices(p.fft_size, p.fft_size)
        window = torch.from_numpy(sp.window.astype(np.float32))
        self.register_buffer("analysis", torch.cat([cos, sin], 1) * window[:, None] * float(sp.wnorm))
        a, b = idft_matrices(p.fft_size)
        self.register_buffer("synthesis", torch.cat([a, b], 0) * window[None, :])
        bands = np.zeros((p.n_freqs, p.nb_erb), np.float32)
        for band, (start, width) in enumerate(zip(sp.band_starts, sp.widths, strict=False)):
            bands[start : start + width, band] = 1.0 / np.float32(width)
        self.register_buffer("bands", torch.from_numpy(bands))
        self.register_buffer("spread", torch.from_numpy((bands > 0).astype(np.float32).T.copy()))
        self.mean_rnn, mean0 = _running_mean(sp.alpha, sp.mean_init, DB_SHIFT)
        self.unit_rnn, unit0 = _running_mean(sp.alpha, sp.unit_init, 0.0)
        self.register_buffer("mean0", mean0)
        self.register_buffer("unit0", unit0)

    def forward(self, wave: Tensor) -> Tensor:
        p = self.p
        hop, la, order, nb_df, freqs = p.hop_size, p.lookahead, p.df_order, p.nb_df, p.n_freqs
        n16 = wave.shape[0]
        x = self.up(wave)
        n = x.shape[0]
        # analysis frames t = 0 .. T-1 over [hop zeros, x, zeros]: frame t = blocks t, t + 1
        total = (n + hop - 1) // hop + 1 + la
        buf = torch.cat([x.new_zeros(hop), x, x.new_zeros((total + 1) * hop - hop - n)])
        halves = buf.reshape(-1, hop)
        frames = torch.cat([halves[:-1], halves[1:]], dim=1)  # [T, fft]
        spec = frames @ self.analysis  # [T, 2F]: re | im
        re, im = spec[:, :freqs], spec[:, freqs:]
        erb = 10 * torch.log10((re * re + im * im) @ self.bands + 1e-10)
        mean = self.mean_rnn((erb + DB_SHIFT)[None], self.mean0)[0][0] - DB_SHIFT
        feat_erb = ((erb - mean) / 40)[None, None]
        lre, lim = re[:, :nb_df], im[:, :nb_df]
        unit = self.unit_rnn(torch.sqrt(lre * lre + lim * lim)[None], self.unit0)[0][0]
        scale = torch.sqrt(unit)
        feat_spec = torch.stack([lre / scale, lim / scale])[None]  # [1, 2, T, nb_df]
        # the graphs over all frames, zero history, zero states
        pad = lambda v, k: torch.cat([v.new_zeros(*v.shape[:2], k, v.shape[3]), v], dim=2)  # noqa: E731
        h = {g: wave.new_zeros(layers, 1, size) for g, (layers, size) in self.hidden.items()}
        e0, e1, e2, e3, emb, c0, _, _ = self.enc(
            pad(feat_erb, HISTORY["feat_erb"]), pad(feat_spec, HISTORY["feat_spec"]), h["enc"]
        )
        gains = self.erb_dec(emb, e3, e2, e1, e0, h["erb_dec"])[0][0, 0]  # [T, nb_erb]
        coefs = self.df_dec(emb, pad(c0, HISTORY["c0"]), h["df_dec"])[0][0]  # [T, nb_df, order * 2]
        coefs = coefs.reshape(coefs.shape[0], nb_df, order, 2)
        # output frame f (0 .. T - la - 1) from model outputs of f + la; DF reads frames f - ctx + k
        ctx = order - 1 - la
        outs = total - la
        g = gains[la:] @ self.spread  # [outs, F]
        ere, eim = re[:outs] * g, im[:outs] * g
        sre = torch.cat([re.new_zeros(ctx, nb_df), re[:, :nb_df]])
        sim = torch.cat([im.new_zeros(ctx, nb_df), im[:, :nb_df]])
        cre, cim = coefs[la:, :, :, 0], coefs[la:, :, :, 1]
        lowre = sum(cre[:, :, k] * sre[k : k + outs] - cim[:, :, k] * sim[k : k + outs] for k in range(order))
        lowim = sum(cre[:, :, k] * sim[k : k + outs] + cim[:, :, k] * sre[k : k + outs] for k in range(order))
        ere = torch.cat([lowre, ere[:, nb_df:]], dim=1)
        eim = torch.cat([lowim, eim[:, nb_df:]], dim=1)
        out = torch.cat([ere, eim], dim=1) @ self.synthesis  # [outs, fft]
        # overlap-add: frame f's first half at stream block f, second half at f + 1; sample = stream - hop
        first, second = out[:, :hop], out[:, hop:]
        stream = torch.cat([first, first.new_zeros(1, hop)]) + torch.cat([second.new_zeros(1, hop), second])
        y = stream.reshape(-1)[hop : hop + n]
        return self.down(y)[:n16]
