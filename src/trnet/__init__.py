"""TRNet: noise-robust speech emotion recognition (Chen & Zhang) with a frozen SE front-end,
an SNR-aware module, and low-level (feature) plus high-level (representation) refinement.

This package root is the top of the house: `trnet.load` is the one entry point a library user
needs. It imports `trnet.predict` on first call, so that `import trnet.features` (or any other
lower module, which imports this package first) stays cheap."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trnet.predict import Predictor

__version__ = version("trnet")  # one owner: pyproject.toml


def load(path: str | Path | None = None, se: str | None = None, device: str = "cpu", **options: Any) -> Predictor:
    """A trained run ready for `.predict(wave, sample_rate)` / `.predict_file(path)`; without
    `path`, the model bundled with the package (`trnet models` lists it). See
    `trnet.predict.load`."""
    from trnet.predict import load as _load

    return _load(path, se=se, device=device, **options)
