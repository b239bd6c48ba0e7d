"""Audio I/O: every file becomes mono float32 at 16 kHz, and every utterance a 5 s segment
whose true length is kept so that padded frames can be masked (SPEC §1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trnet.utils import atomic_path

SAMPLE_RATE = 16_000  # the one sample rate of trnet: every signal is resampled to it on load
SEGMENT_SECONDS = 5.0
SEGMENT_SAMPLES = int(SAMPLE_RATE * SEGMENT_SECONDS)  # 80,000


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the fix."""


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op at the target rate."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Read any soundfile-readable file (wav/flac/ogg, any rate, channels, bit depth) as
    mono float32 at `sample_rate`. `offset`/`duration` (seconds) read a segment only."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).any():
        raise AudioError(f"{path}: all samples are NaN/Inf")
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: contains NaN/Inf samples; repair or re-export the file")
    return resample(np.ascontiguousarray(wave), sr, sample_rate)


def pad_or_trim(wave: np.ndarray, n: int = SEGMENT_SAMPLES) -> tuple[np.ndarray, int]:
    """Zero-pad or truncate to `n` samples; return (segment, true length in samples)."""
    length = min(len(wave), n)
    out = np.zeros(n, dtype=np.float32)
    out[:length] = wave[:length]
    return out, length


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit PCM wav, atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
