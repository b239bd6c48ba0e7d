"""Inference on your own audio (the library part; `trnet predict` is `trnet.commands.predict`).

model = trnet.predict.load("runs/trnet/fold0-seed1")    # or trnet.load(...)
p = model.predict(wave, sample_rate)                     # Prediction(label, probabilities, c, ...)
"""

from trnet.predict.predictor import (
    HOP_SECONDS,
    MIN_SECONDS,
    SILENCE_PEAK,
    WINDOW_SECONDS,
    Prediction,
    Predictor,
    Window,
    check_windows,
    load,
)

__all__ = [
    "HOP_SECONDS",
    "MIN_SECONDS",
    "SILENCE_PEAK",
    "WINDOW_SECONDS",
    "Prediction",
    "Predictor",
    "Window",
    "check_windows",
    "load",
]
