"""Stage 4 of `trnet bundle`, for systems with an SNR-aware module: what c reads when there is
no speech at all (docs/design.md §11). c is eq. (1)'s weight on the unenhanced input; nothing
in training pins its value on sounds that are not speech, and a user will feed such sounds, so
the model card states it, measured:

    silence    digital silence
    white      white noise at -26 dBFS (RMS)
    noise      each clip of the held-out test noise alone (DEMAND: never heard by the
               leave-one-corpus-out runs)

Each input is SECONDS long (a clip shorter than that: whole) and goes through the run's full
inference path (trnet.predict: its SE back-end with its training options, features, model),
as `trnet predict` hears it. Cached beside the run's transfer evaluation:

    RUN/transfer/nonspeech-<key>.json   keyed by VERSION, the checkpoint's SHA-256 and the
                                        noise manifest's SHA-256; written last
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from trnet.audio import load_audio
from trnet.corpora import read_manifest
from trnet.features import SAMPLE_RATE
from trnet.predict import load
from trnet.runs import BEST, RunError
from trnet.utils import damaged_cache, sha256_file, write_json_atomic

VERSION = 2  # 2: c per input, the statistics left to the summary (results.py)
SECONDS = 4.0
WHITE_DBFS = -26.0


def inputs(noise_manifest: Path) -> dict[str, list[np.ndarray]]:
    """The non-speech inputs by kind, at the model's sample rate."""
    n = round(SECONDS * SAMPLE_RATE)
    white = np.random.default_rng(0).standard_normal(n).astype(np.float32) * np.float32(10 ** (WHITE_DBFS / 20))
    clips = [
        load_audio(r["path"], offset=float(r.get("offset") or 0.0), duration=min(SECONDS, float(r["duration"])))
        for r in read_manifest(noise_manifest, "noise")
    ]
    return {"silence": [np.zeros(n, np.float32)], "white": [white], "noise": clips}


def nonspeech_c(run: Path, noise_manifest: Path) -> dict[str, list[float]] | None:
    """{"silence", "white", "noise": c of each input} for one run; None for a system without c.
    Cached (see the module's docstring)."""
    run = Path(run)
    ident = {"version": VERSION, "checkpoint": sha256_file(run / BEST), "noise": sha256_file(noise_manifest)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    path = run / "transfer" / f"nonspeech-{key}.json"
    if path.is_file():
        try:
            done = json.loads(path.read_text())
            if isinstance(done, dict) and "c" in done:
                return done["c"]
            raise ValueError("not a non-speech measurement")
        except ValueError as err:
            damaged_cache(path, err)
    with warnings.catch_warnings():  # "no speech found" is the point here, not news
        warnings.simplefilter("ignore")
        predictor = load(run)
        try:
            measured = {
                kind: [predictor.predict(wave, SAMPLE_RATE).c for wave in waves]
                for kind, waves in inputs(noise_manifest).items()
            }
        finally:
            predictor.close()
    c: dict[str, list[float]] | None = measured
    if any(v is None for cs in measured.values() for v in cs):
        c = None
    elif not all(np.isfinite(v) for cs in measured.values() for v in cs):
        raise RunError(f"{run}: c is not finite on input without speech ({measured}); the model is broken")
    write_json_atomic(path, {**ident, "run": str(run), "c": c})
    return c
