"""The contract every SE back-end meets (docs/design.md §4), so that the rest of trnet never needs to
know which model produced x_e: same shape, dtype and sample alignment as the input, zeros
beyond each utterance's length, and a `version` string that changes whenever the output
would change (the condition store keys its cache on it)."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trnet.audio import SAMPLE_RATE
from trnet.options import check
from trnet.utils import sha256_file

__all__ = ["SAMPLE_RATE", "Enhancer", "check_batch", "file_sha256", "make_version"]


@dataclass(frozen=True)
class NoOptions:
    """The options of a back-end that takes none."""


class Enhancer(ABC):
    """A frozen speech enhancer on 16 kHz mono audio.

    Sub-classes implement `_enhance_one` on a single utterance's valid samples; this class
    does the batching, the length handling and the checks, identically for all of them.
    """

    name: str
    Options: type = NoOptions  # the back-end's options: a frozen dataclass (fields, defaults, checks)

    @classmethod
    def configure(cls, options: dict) -> Any:
        """`options` checked against `Options` and filled in (OptionError if one is wrong)."""
        return check(cls.Options, options, f"SE back-end {cls.name!r}")

    @property
    @abstractmethod
    def version(self) -> str:
        """Changes when outputs would change: code/package version, model checksum, options."""

    @classmethod  # noqa: B027 - an optional hook, not abstract: most back-ends can always run
    def check(cls) -> None:
        """Raise (ImportError, OSError, RuntimeError...) if this back-end cannot run here.

        Cheap: used by `trnet.enhance.available()` without building the model."""

    @abstractmethod
    def _enhance_one(self, x: Tensor) -> Tensor:
        """Enhance one utterance: `x` is float32 [n] on the CPU, n >= 1; return float32 [n]."""

    def enhance(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Enhance a batch `wave` [B, N] (16 kHz). Only `wave[b, :lengths[b]]` is read, so
        whatever padding follows cannot leak into the output; beyond it the output is 0."""
        lengths = check_batch(wave, lengths)
        out = torch.zeros_like(wave)
        for b, n in enumerate(lengths.tolist()):
            if n > 0:
                x = wave[b, :n].detach().to("cpu", torch.float32).contiguous()
                out[b, :n] = self._enhance_one(x).to(out.dtype)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.version}>"


def check_batch(wave: Tensor, lengths: Tensor | None) -> Tensor:
    """Validate an SE input batch; return the lengths as an int64 CPU tensor."""
    if not isinstance(wave, Tensor) or wave.dim() != 2:
        raise ValueError(f"expected a waveform tensor [B, N], got {getattr(wave, 'shape', type(wave))}")
    if not wave.is_floating_point():
        raise TypeError(f"expected floating-point audio, got {wave.dtype}")
    batch, n = wave.shape
    if lengths is None:
        lengths = torch.full((batch,), n, dtype=torch.int64)
    lengths = torch.as_tensor(lengths).to("cpu", torch.int64).reshape(-1)
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {batch}")
    if batch and (lengths.min() < 0 or lengths.max() > n):
        raise ValueError(f"lengths must lie in [0, {n}], got {lengths.tolist()}")
    if not torch.isfinite(wave).all():
        raise ValueError("waveform contains NaN/Inf")
    return lengths


def make_version(name: str, **parts: object) -> str:
    """`name key=value ...` with the trnet version first: one readable, stable string."""
    fields = {"trnet": package_version("trnet"), **parts}
    return " ".join([name, *(f"{k}={v}" for k, v in fields.items())])


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a model file; cached per (path, size, mtime), as every instance asks."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
