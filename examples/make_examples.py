"""Regenerate the example clips (`trnet predict examples/`): synthetic speech made here with
espeak-ng (`apt-get install espeak-ng`; its own voices, no MBROLA), so the clips are ours and
MIT-licensed like the code. Voice variant, speaking rate and pitch are varied (slow and low,
fast and high), and each clip is named after that; espeak-ng is not an actor, so the clips
show the model running, not its accuracy. One clip is mixed with noise generated here
(`babble_noise`) at 5 dB SNR, so that c has something to respond to, and that noise alone is
a clip of its own, so that the first run shows what `no speech` looks like.

    python examples/make_examples.py        # writes examples/*.flac (16 kHz mono FLAC)
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from trnet.audio import SAMPLE_RATE, load_audio
from trnet.protocol.mixing import mix_at_snr

HERE = Path(__file__).resolve().parent
# name -> (voice+variant, words per minute, pitch 0-99, amplitude, text)
CLIPS = {
    "espeak-de-slow-low": ("de+m3", 135, 35, 100, "Heute Abend gehen wir gemeinsam ins Kino und danach nach Hause."),
    "espeak-de-fast-high": ("de+f3", 205, 80, 160, "Das ist ja unglaublich, wir haben tatsächlich gewonnen!"),
    "espeak-pl-slow-low": ("pl+m3", 130, 35, 100, "Jutro rano pojedziemy pociągiem do Krakowa."),
    "espeak-pl-fast-high": ("pl+f3", 200, 80, 160, "Nie wierzę, to jest naprawdę wspaniała wiadomość!"),
}
NOISY = ("espeak-de-slow-low", "espeak-de-slow-low-noise5db", 5.0)  # clip, new name, SNR in dB
NOISE_ONLY = ("noise-only", 4.0)  # the noise alone: what `trnet predict` calls "no speech"


def speak(voice: str, wpm: int, pitch: int, amplitude: int, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-a", str(amplitude), "-w", str(wav), text],
            check=True,
        )
        return load_audio(wav)  # mono float32 at 16 kHz


def babble_noise(n: int, seed: int = 0) -> np.ndarray:
    """Brown-ish noise with a slow amplitude wobble: ours, nothing recorded."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(400) / 400, mode="same")  # remove the drift
    wobble = 1 + 0.5 * np.sin(2 * np.pi * 0.7 * np.arange(n) / SAMPLE_RATE)
    return (brown * wobble + 0.3 * white).astype(np.float32)


def main() -> None:
    made = {}
    for name, args in CLIPS.items():
        wave = speak(*args)
        wave = wave / max(np.abs(wave).max(), 1e-6) * 0.5
        made[name] = wave
    clip, name, snr = NOISY
    made[name] = mix_at_snr(made[clip], babble_noise(len(made[clip])), snr)
    name, seconds = NOISE_ONLY
    noise = babble_noise(int(seconds * SAMPLE_RATE), seed=1)
    made[name] = noise / np.abs(noise).max() * 0.3
    for name, wave in made.items():
        sf.write(HERE / f"{name}.flac", wave, SAMPLE_RATE, subtype="PCM_16")
        print(f"{name}.flac: {len(wave) / SAMPLE_RATE:.2f} s")


if __name__ == "__main__":
    main()
