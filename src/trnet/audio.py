"""Audio I/O: every file becomes mono float32 at 16 kHz, and every utterance a 5 s segment
whose true length is kept so that padded frames can be masked (docs/design.md §1)."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trnet.utils import UserError, atomic_path, printable

SAMPLE_RATE = 16_000  # the one sample rate of trnet: every signal is resampled to it on load
SEGMENT_SECONDS = 5.0
SEGMENT_SAMPLES = int(SAMPLE_RATE * SEGMENT_SECONDS)  # 80,000


class AudioError(UserError):
    """A file that cannot be used as audio; the message names the file and the fix."""


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op at the target rate."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def _check_path(path: Path) -> None:
    """AudioError unless `path` is a regular file (a FIFO or /dev/zero would block or never end)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioError(f"{printable(path)}: no such file") from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{printable(path)}: is a directory, expected an audio file")
    if not stat.S_ISREG(mode):
        raise AudioError(f"{printable(path)}: {file_kind(mode)}, not a regular file; expected an audio file")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a character device", ...)."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def unreadable(path: str | Path, err: Exception) -> str:
    """ "PATH: not a readable audio file (why)", without the byte-string repr of the name and
    the misleading "(possibly a pipe?)" that libsndfile adds for a format it does not know."""
    why = getattr(err, "error_string", None) or str(err)
    if "possibly a pipe" in why or "not a regular file" in why:
        why = "unknown format, or damaged data"
    return f"{printable(path)}: not a readable audio file ({' '.join(why.split()).rstrip('.')})"


@contextlib.contextmanager
def quiet_decoder() -> Iterator[None]:
    """Silence what decoder libraries (mpg123) print on the process's stderr while a file is
    opened or read: trnet reports a bad file in its own one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def declared_info(path: str | Path) -> tuple[int, int] | None:
    """(sample rate, frames) a regular file's header declares (None if it cannot be read; a
    FIFO is never opened, it would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with quiet_decoder():
            info = sf.info(os.fsencode(path))
        return int(info.samplerate), int(info.frames)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None


def declared_rate(path: str | Path) -> int | None:
    """The sample rate a file's header declares (None if it cannot be read)."""
    info = declared_info(path)
    return None if info is None else info[0]


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Read any soundfile-readable file (wav/flac/ogg, any rate, channels, bit depth) as
    mono float32 at `sample_rate`. `offset`/`duration` (seconds) read a segment only."""
    path = Path(path)
    _check_path(path)
    try:
        with quiet_decoder(), sf.SoundFile(os.fsencode(path)) as f:  # bytes: any file name, UTF-8 or not
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(unreadable(path, err)) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).any():
        raise AudioError(f"{path}: all samples are NaN/Inf")
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: contains NaN/Inf samples; repair or re-export the file")
    return resample(np.ascontiguousarray(wave), sr, sample_rate)


def stream_audio(path: str | Path, block_seconds: float = 10.0, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """The file as `load_audio` reads it, in consecutive blocks of mono float32 at
    `sample_rate` (about `block_seconds` each), so that an hour of audio never sits in memory
    at once. The blocks joined are exactly `load_audio(path)` (soxr's streaming resampler
    gives the samples of a one-shot resampling)."""
    path = Path(path)
    _check_path(path)
    try:
        with quiet_decoder():
            f = sf.SoundFile(os.fsencode(path))  # bytes: any file name, UTF-8 or not
        with f:
            stream = (
                None
                if f.samplerate == sample_rate
                else soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
            )
            total = 0
            while True:
                with quiet_decoder():
                    data = f.read(frames=max(1, int(block_seconds * f.samplerate)), dtype="float32", always_2d=True)
                last = data.shape[0] == 0
                wave = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
                if not np.isfinite(wave).all():
                    raise AudioError(f"{path}: contains NaN/Inf samples; repair or re-export the file")
                total += len(wave)
                if last and total == 0:
                    raise AudioError(f"{path}: contains no samples")
                out = wave if stream is None else stream.resample_chunk(wave, last=last)
                if len(out):
                    yield out
                if last:
                    return
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(unreadable(path, err)) from None


def wav_truncation(path: str | Path) -> tuple[float, float] | None:
    """(seconds the header declares, seconds the file holds) of a WAV file cut short (a
    copy or download that stopped), else None. libsndfile silently reads what is there.
    Only a regular file is opened (a FIFO would block here; the reader names it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            riff = f.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            size = Path(path).stat().st_size
            rate = align = 0
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return None
                chunk, length = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk == b"data":
                    held = size - f.tell()
                    if not rate or not align or length in (0, 0xFFFFFFFF) or length <= held:  # streamed: unknown
                        return None
                    return length / align / rate, held / align / rate
                body = f.read(length + length % 2)
                if chunk == b"fmt " and len(body) >= 14:
                    rate, align = struct.unpack("<I", body[4:8])[0], struct.unpack("<H", body[12:14])[0]
    except OSError:
        return None


def pad_or_trim(wave: np.ndarray, n: int = SEGMENT_SAMPLES) -> tuple[np.ndarray, int]:
    """Zero-pad or truncate to `n` samples; return (segment, true length in samples)."""
    length = min(len(wave), n)
    out = np.zeros(n, dtype=np.float32)
    out[:length] = wave[:length]
    return out, length


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit PCM wav, atomically. Encoded in memory and written by
    Python, so a full disk is an OSError naming the file (libsndfile would say "System error")."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
