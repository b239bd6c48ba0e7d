"""`cmgan`: the SE model of the TRNet paper, CMGAN (Cao, Abdulatif & Yang, Interspeech 2022;
long version arXiv 2209.11112), re-implemented from the paper and the authors' public code.

Only the generator is needed at inference. Its module names and parameter shapes follow the
authors' `TSCNet` exactly, so their released checkpoint (`src/best_ckpt/ckpt` in
https://github.com/ruizhecao96/CMGAN) loads with `load_state_dict(strict=True)`:

    dense_encoder                 1x1 conv (3 -> 64) + 4-layer dilated DenseNet + conv halving F
    TSCB_1 .. TSCB_4              two-stage conformer: over time (per frequency), then over frequency
    mask_decoder                  magnitude mask (DenseNet + sub-pixel conv + PReLU per bin)
    complex_decoder               complex residual (DenseNet + sub-pixel conv)

Signal path (as in the authors' evaluation): x * c with c = sqrt(N / sum x^2) (RMS to 1);
STFT n_fft 400, hop 100, Hamming window; magnitude compressed by a power law 0.3, phase
kept; the generator sees [B, 2, T, F] (real, imag); its output is uncompressed, inverted,
and divided by c. Everything is non-causal and zero-phase, so the output is aligned.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet.enhance.base import Enhancer, file_sha256, make_version
from trnet.utils import UserError

N_FFT = 400
HOP = 100
COMPRESS = 0.3
CHECKPOINT_ENV = "TRNET_CMGAN_CHECKPOINT"
WHERE_TO_GET = (
    "the cmgan back-end needs the CMGAN authors' generator checkpoint: download `src/best_ckpt/ckpt` "
    "from https://github.com/ruizhecao96/CMGAN and pass load('cmgan', checkpoint=PATH) "
    f"(or `--opt checkpoint=PATH` on the command line, or set {CHECKPOINT_ENV}=PATH)"
)
# Attention over 801 frames x 101 frequency rows needs b*h*n*n scores; computing them for a
# slice of the rows at a time bounds memory to ~128 MB per score tensor, same result.
_ATTN_CHUNK = 1 << 25


# ---------------------------------------------------------------- conformer (time or frequency)


class _Scale(nn.Module):
    def __init__(self, scale: float, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) * self.scale


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class _Transpose(nn.Module):
    """[B, N, C] <-> [B, C, N] inside an nn.Sequential (keeps the checkpoint's indices)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


class _DepthwiseConv1d(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult), nn.SiLU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Attention(nn.Module):
    """Multi-head self-attention with Shaw relative position embeddings (clipped at ±512)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0, max_pos_emb: int = 512):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.max_pos_emb = max_pos_emb
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.rel_pos_emb = nn.Embedding(2 * max_pos_emb + 1, dim_head)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = (self.to_q(x), *self.to_kv(x).chunk(2, dim=-1))
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # [b, h, n, d]
        pos = torch.arange(n, device=x.device)
        dist = (pos[:, None] - pos[None, :]).clamp(-self.max_pos_emb, self.max_pos_emb) + self.max_pos_emb
        rel = self.rel_pos_emb(dist).to(q)  # [n, n, d]
        step = max(1, _ATTN_CHUNK // (self.heads * n * n))
        outs = []
        for s in range(0, b, step):
            qs = q[s : s + step]
            scores = (qs @ k[s : s + step].transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", qs, rel)) * self.scale
            outs.append(scores.softmax(dim=-1) @ v[s : s + step])
        out = torch.cat(outs).transpose(1, 2).reshape(b, n, -1)
        return self.dropout(self.to_out(out))


class _ConvModule(nn.Module):
    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 31, dropout: float = 0.0):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            _Transpose(),
            nn.Conv1d(dim, inner * 2, 1),
            nn.GLU(dim=1),
            _DepthwiseConv1d(inner, kernel_size),
            nn.BatchNorm1d(inner),
            nn.SiLU(),
            nn.Conv1d(inner, dim, 1),
            _Transpose(),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConformerBlock(nn.Module):
    """Macaron conformer: ½FF, MHSA, conv, ½FF (each residual), then LayerNorm."""

    def __init__(self, dim: int, heads: int, dim_head: int, kernel_size: int = 31, dropout: float = 0.0):
        super().__init__()
        self.ff1 = _Scale(0.5, _PreNorm(dim, _FeedForward(dim, dropout=dropout)))
        self.attn = _PreNorm(dim, _Attention(dim, heads, dim_head, dropout=dropout))
        self.conv = _ConvModule(dim, kernel_size=kernel_size)
        self.ff2 = _Scale(0.5, _PreNorm(dim, _FeedForward(dim, dropout=dropout)))
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + self.ff2(x)
        return self.post_norm(x)


class TSCB(nn.Module):
    """Two-stage conformer block: a conformer along time for every frequency bin, then one
    along frequency for every frame, each with an outer residual. [B, C, T, F] -> same."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.time_conformer = ConformerBlock(channels, heads=4, dim_head=channels // 4, dropout=0.2)
        self.freq_conformer = ConformerBlock(channels, heads=4, dim_head=channels // 4, dropout=0.2)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, f = x.shape
        xt = x.permute(0, 3, 2, 1).reshape(b * f, t, c)
        xt = self.time_conformer(xt) + xt
        xf = xt.reshape(b, f, t, c).transpose(1, 2).reshape(b * t, f, c)
        xf = self.freq_conformer(xf) + xf
        return xf.reshape(b, t, f, c).permute(0, 3, 1, 2)


# ---------------------------------------------------------------- encoder / decoders


class DilatedDenseNet(nn.Module):
    """4 densely connected (2, 3) convs, time dilation 1, 2, 4, 8, causal in time."""

    def __init__(self, depth: int = 4, channels: int = 64):
        super().__init__()
        self.depth = depth
        for i in range(1, depth + 1):
            setattr(self, f"conv{i}", nn.Conv2d(channels * i, channels, (2, 3), dilation=(2 ** (i - 1), 1)))
            setattr(self, f"norm{i}", nn.InstanceNorm2d(channels, affine=True))
            setattr(self, f"prelu{i}", nn.PReLU(channels))

    def forward(self, x: Tensor) -> Tensor:
        skip = x
        for i in range(1, self.depth + 1):
            out = F.pad(skip, (1, 1, 2 ** (i - 1), 0))  # frequency: 1 each side; time: dilation, past only
            out = getattr(self, f"prelu{i}")(getattr(self, f"norm{i}")(getattr(self, f"conv{i}")(out)))
            skip = torch.cat([out, skip], dim=1)
        return out


class DenseEncoder(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64):
        super().__init__()
        self.conv_1 = nn.Sequential(
            nn.Conv2d(in_channels, channels, (1, 1)), nn.InstanceNorm2d(channels, affine=True), nn.PReLU(channels)
        )
        self.dilated_dense = DilatedDenseNet(4, channels)
        self.conv_2 = nn.Sequential(
            nn.Conv2d(channels, channels, (1, 3), (1, 2), padding=(0, 1)),
            nn.InstanceNorm2d(channels, affine=True),
            nn.PReLU(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_2(self.dilated_dense(self.conv_1(x)))


class SPConvTranspose2d(nn.Module):
    """Sub-pixel up-sampling along frequency: a conv to r x channels, interleaved into F."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], r: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * r, kernel_size)
        self.r = r

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.pad(x, (1, 1, 0, 0)))
        b, c, t, f = out.shape
        out = out.reshape(b, self.r, c // self.r, t, f).permute(0, 2, 3, 4, 1)
        return out.reshape(b, c // self.r, t, f * self.r)


class MaskDecoder(nn.Module):
    def __init__(self, num_features: int = 201, channels: int = 64):
        super().__init__()
        self.dense_block = DilatedDenseNet(4, channels)
        self.sub_pixel = SPConvTranspose2d(channels, channels, (1, 3), 2)
        self.conv_1 = nn.Conv2d(channels, 1, (1, 2))
        self.norm = nn.InstanceNorm2d(1, affine=True)
        self.prelu = nn.PReLU(1)
        self.final_conv = nn.Conv2d(1, 1, (1, 1))
        self.prelu_out = nn.PReLU(num_features, init=-0.25)  # one learned slope per frequency bin

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.norm(self.conv_1(self.sub_pixel(self.dense_block(x)))))
        x = self.final_conv(x)[:, 0].transpose(1, 2)  # [B, F, T]: PReLU channels = bins
        return self.prelu_out(x).transpose(1, 2).unsqueeze(1)


class ComplexDecoder(nn.Module):
    def __init__(self, channels: int = 64):
        super().__init__()
        self.dense_block = DilatedDenseNet(4, channels)
        self.sub_pixel = SPConvTranspose2d(channels, channels, (1, 3), 2)
        self.prelu = nn.PReLU(channels)
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.conv = nn.Conv2d(channels, 2, (1, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.prelu(self.norm(self.sub_pixel(self.dense_block(x)))))


class CMGANGenerator(nn.Module):
    """The CMGAN generator (the authors' `TSCNet`): compressed spectrum [B, 2, T, F] ->
    enhanced compressed (real, imag), each [B, 1, T, F]; F = n_fft / 2 + 1 = 201."""

    def __init__(self, channels: int = 64, num_features: int = N_FFT // 2 + 1):
        super().__init__()
        self.dense_encoder = DenseEncoder(3, channels)
        self.TSCB_1 = TSCB(channels)
        self.TSCB_2 = TSCB(channels)
        self.TSCB_3 = TSCB(channels)
        self.TSCB_4 = TSCB(channels)
        self.mask_decoder = MaskDecoder(num_features, channels)
        self.complex_decoder = ComplexDecoder(channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mag = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2).unsqueeze(1)
        phase = torch.atan2(x[:, 1], x[:, 0]).unsqueeze(1)
        h = self.dense_encoder(torch.cat([mag, x], dim=1))
        h = self.TSCB_4(self.TSCB_3(self.TSCB_2(self.TSCB_1(h))))
        out_mag = self.mask_decoder(h) * mag
        residual = self.complex_decoder(h)
        return out_mag * torch.cos(phase) + residual[:, :1], out_mag * torch.sin(phase) + residual[:, 1:]


# ---------------------------------------------------------------- the back-end


class CheckpointError(UserError):
    """A CMGAN checkpoint that cannot be used (unreadable, pickled objects, other weights)."""


@dataclass(frozen=True)
class CMGANOptions:
    checkpoint: Path | None = None  # default: ${TRNET_CMGAN_CHECKPOINT}
    device: str = "cpu"


class CMGAN(Enhancer):
    """`checkpoint`: the authors' generator state_dict (default: ${TRNET_CMGAN_CHECKPOINT});
    `device`: where the generator runs. Utterances are enhanced one at a time at their true
    length (the RMS normalisation and instance norms see the whole utterance)."""

    name = "cmgan"
    Options = CMGANOptions

    def __init__(self, **options: object):
        o = self.configure(options)
        path = _checkpoint_path(o.checkpoint)
        self.checkpoint = path
        self._sha = file_sha256(path)
        try:  # weights only: a pickled object is refused, never run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says it all
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a file it cannot read
            why = (
                (
                    "it is not a torch checkpoint, or holds Python objects besides tensors (refused: only weights "
                    "are loaded)"
                )
                if isinstance(err, pickle.UnpicklingError)
                else f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
            )
            raise CheckpointError(f"{path}: not a readable generator checkpoint ({why}); {WHERE_TO_GET}") from None
        if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
            raise CheckpointError(f"{path}: not a generator state_dict; {WHERE_TO_GET}")
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from (D)DP
        self.device = torch.device(o.device)
        self.net = CMGANGenerator()
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as err:  # "Error(s) in loading state_dict ...:" and the first key that differs
            lines = [line.strip() for line in str(err).strip().splitlines()]
            why = " ".join(lines[1:2] or lines[:1])[:200]
            raise CheckpointError(f"{path}: not the CMGAN generator's weights ({why}); {WHERE_TO_GET}") from None
        self.net.eval().requires_grad_(False).to(self.device)
        self._window = torch.hamming_window(N_FFT, device=self.device)

    @classmethod
    def check(cls) -> None:
        _checkpoint_path(None)

    @property
    def version(self) -> str:
        return make_version(self.name, torch=torch.__version__, checkpoint=self._sha[:16], device=self.device.type)

    @torch.inference_mode()
    def _enhance_one(self, x: Tensor) -> Tensor:
        n = x.numel()
        energy = x.double().square().sum()
        if energy == 0:
            return torch.zeros_like(x)
        c = math.sqrt(n / float(energy))
        m = max(N_FFT, -(-n // HOP) * HOP)  # whole hops, and long enough for reflect padding
        padded = torch.zeros(m, device=self.device)
        padded[:n] = x.to(self.device) * c
        spec = torch.stft(padded, N_FFT, HOP, window=self._window, center=True, return_complex=True)
        comp = torch.polar(spec.abs() ** COMPRESS, spec.angle())
        real, imag = self.net(torch.stack([comp.real, comp.imag])[None].transpose(2, 3))
        est = torch.complex(real[0, 0], imag[0, 0]).T  # [F, T]
        est = torch.polar(est.abs() ** (1 / COMPRESS), est.angle())
        y = torch.istft(est, N_FFT, HOP, window=self._window, center=True, length=m)
        return (y[:n] / c).float().cpu()


def _checkpoint_path(checkpoint: str | Path | None) -> Path:
    value = checkpoint if checkpoint is not None else os.environ.get(CHECKPOINT_ENV)
    if not value:
        raise FileNotFoundError(errno.ENOENT, f"no checkpoint given; {WHERE_TO_GET}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no such checkpoint; {WHERE_TO_GET}", str(path))
    return path
