"""TRNet: noise-robust speech emotion recognition (Chen & Zhang) with a frozen SE front-end,
an SNR-aware module, and low-level (feature) plus high-level (representation) refinement."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from trnet.predict import Predictor

__version__ = "0.1.0"


def load(path: str | Path, se: str | None = None, device: str = "cpu", **options: Any) -> Predictor:
    """A trained run ready for `.predict(wave, sample_rate)` / `.predict_file(path)`; see
    `trnet.predict.load`. Imported on first call so that `import trnet` stays cheap."""
    from trnet.predict import load as _load

    return _load(path, se=se, device=device, **options)
