"""SE front-ends (SPEC §4): the contract every back-end meets (length, dtype, zero tail,
silence, sample alignment on real speech), DeepFilterNet3 on real noisy speech (SI-SDR gain,
order independence, libDF's delay), and the CMGAN generator's checkpoint compatibility.
The batched DFN3 back-end against libDF's frame loop: tests/test_enhance_dfn3.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import shared_path
from trnet import enhance
from trnet.audio import load_audio
from trnet.enhance.metrics import si_sdr
from trnet.utils import UserError

try:
    from trnet.protocol.mixing import mix_at_snr
except ImportError:  # the project mixer is written in parallel; this is its formula (SPEC §2)

    def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
        noise = np.resize(noise, len(speech))
        k = np.sqrt(
            np.mean(speech.astype(np.float64) ** 2) / (np.mean(noise.astype(np.float64) ** 2) * 10 ** (snr_db / 10))
        )
        return (speech + k * noise).astype(np.float32)


AVAILABLE = enhance.available()
# CMGAN runs ~9x slower than real time on a CPU: with a real checkpoint configured it is
# part of the contract tests, but marked slow.
BACKENDS = [pytest.param(n, marks=pytest.mark.slow) if n == "cmgan" else n for n in AVAILABLE]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def enhancers() -> dict[str, enhance.Enhancer]:
    """One instance per back-end for the whole module (DFN3 states are per utterance anyway)."""
    return {name: enhance.load(name) for name in AVAILABLE}


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real EmoDB utterance (22.05 kHz file, read as 16 kHz)."""
    return load_audio(shared_path("emodb", "wav") / "03a01Fa.wav")


def xcorr_lag(output: np.ndarray, reference: np.ndarray) -> int:
    """Lag of the cross-correlation peak: > 0 when `output` is late."""
    n = len(output) + len(reference)
    spec = np.fft.rfft(output, n) * np.conj(np.fft.rfft(reference, n))
    corr = np.fft.irfft(spec, n)
    lag = int(np.argmax(corr))
    return lag if lag < len(output) else lag - n


# ---------------------------------------------------------------- registry


def test_registry_lists_usable_backends_and_rejects_unknown_names() -> None:
    assert {"identity", "spectral"} <= set(AVAILABLE) <= set(enhance.BACKENDS)
    with pytest.raises(ValueError, match="known: .*identity"):
        enhance.load("no-such-se")


def test_version_changes_with_options_and_backend() -> None:
    a, b = enhance.load("spectral"), enhance.load("spectral", gain_floor_db=-20)
    assert a.version == enhance.load("spectral").version
    assert a.version != b.version != enhance.load("identity").version
    assert a.name == "spectral" and a.version.startswith("spectral ")


def test_bad_input_is_rejected() -> None:
    se = enhance.load("identity")
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        se.enhance(torch.zeros(10))
    with pytest.raises(ValueError, match="lengths"):
        se.enhance(torch.zeros(2, 10), torch.tensor([10, 11]))
    with pytest.raises(TypeError):
        se.enhance(torch.zeros(1, 10, dtype=torch.int16))


# ---------------------------------------------------------------- contract, every back-end


def babble(n: int, seed: int = 0) -> np.ndarray:
    """A speech-like test signal needing no data: noise-excited harmonics, syllable-rate AM."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16_000
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16_000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return (0.1 * envelope * voiced + 0.003 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("name", BACKENDS)
def test_length_dtype_and_zero_tail(name: str, enhancers: dict) -> None:
    n = 16_000
    wave = torch.from_numpy(np.stack([babble(n, 0), babble(n, 1), babble(n, 2)]))
    wave[1, n // 2 :] = 0.3  # garbage beyond the length must not leak into the output
    out = enhancers[name].enhance(wave, torch.tensor([n, n // 2, 0]))
    assert out.shape == wave.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (out[1, n // 2 :] == 0).all() and (out[2] == 0).all()
    alone = enhancers[name].enhance(wave[1:2, : n // 2].clone())
    assert torch.equal(out[1, : n // 2], alone[0])


@pytest.mark.parametrize("name", BACKENDS)
def test_silence_in_gives_near_silence_out(name: str, enhancers: dict) -> None:
    out = enhancers[name].enhance(torch.zeros(1, 8_000))
    assert out.abs().max() < 1e-4


@pytest.mark.parametrize("name", BACKENDS)
def test_output_is_sample_aligned_on_real_speech(name: str, enhancers: dict, speech: np.ndarray) -> None:
    out = enhancers[name].enhance(torch.from_numpy(speech)[None])[0].numpy()
    assert xcorr_lag(out, speech) == 0
    assert np.std(out) > 0.5 * np.std(speech)  # clean speech is kept


@pytest.mark.parametrize("name", [n for n in ("identity", "spectral") if n in AVAILABLE])
def test_dtype_is_kept(name: str, enhancers: dict) -> None:
    wave = torch.from_numpy(babble(4_000)).double()[None]
    assert enhancers[name].enhance(wave).dtype == torch.float64


# ---------------------------------------------------------------- DeepFilterNet3 on real data

dfn3_only = pytest.mark.skipif("dfn3" not in AVAILABLE, reason=f"dfn3 unusable: {enhance.unavailable_reason('dfn3')}")
N_MIXTURES = 30


@pytest.fixture(scope="module")
def mixtures() -> tuple[list[np.ndarray], list[np.ndarray], list[Path]]:
    """30 EmoDB utterances (every 11th file) + ESC-50 clips (seeded draw) mixed at 5 dB."""
    speech_files = sorted(shared_path("emodb", "wav").glob("*.wav"))[::11][:N_MIXTURES]
    noise_files = sorted(shared_path("esc50", "audio").glob("*.wav"))
    picks = np.random.default_rng(0).choice(len(noise_files), N_MIXTURES, replace=False)
    clean = [load_audio(f) for f in speech_files]
    noisy = [mix_at_snr(s, load_audio(noise_files[i]), 5.0) for s, i in zip(clean, picks, strict=False)]
    return clean, noisy, speech_files


def batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths


@pytest.fixture(scope="module")
def dfn3_outputs(enhancers: dict, mixtures: tuple) -> torch.Tensor:
    wave, lengths = batch(mixtures[1])
    return enhancers["dfn3"].enhance(wave, lengths)


@dfn3_only
def test_dfn3_raises_si_sdr_on_esc50_noise_at_5db(mixtures: tuple, dfn3_outputs: torch.Tensor) -> None:
    clean, noisy, _ = mixtures
    gains = [
        si_sdr(dfn3_outputs[i, : len(s)].numpy(), s) - si_sdr(x, s)
        for i, (s, x) in enumerate(zip(clean, noisy, strict=False))
    ]
    mean = float(np.mean(gains))
    print(f"dfn3 SI-SDR gain at 5 dB (ESC-50, {len(gains)} EmoDB utterances): {mean:.2f} dB")
    assert mean >= 3.0, f"mean SI-SDR gain {mean:.2f} dB < 3 dB; per utterance: {np.round(gains, 1)}"


@dfn3_only
def test_dfn3_output_does_not_depend_on_processing_order(mixtures: tuple, dfn3_outputs: torch.Tensor) -> None:
    noisy = mixtures[1]
    # The shared instance has just processed 30 other utterances; process two in reverse.
    again, lengths = batch([noisy[7], noisy[0]])
    out = enhance.load("dfn3").enhance(again, lengths)
    assert torch.equal(out[0, : len(noisy[7])], dfn3_outputs[7, : len(noisy[7])])
    assert torch.equal(out[1, : len(noisy[0])], dfn3_outputs[0, : len(noisy[0])])
    alone = enhance.load("dfn3", batch_frames=1).enhance(torch.from_numpy(noisy[0])[None])
    assert torch.equal(alone[0], dfn3_outputs[0, : len(noisy[0])])


@pytest.mark.skipif("dfn3-libdf" not in AVAILABLE, reason=f"{enhance.unavailable_reason('dfn3-libdf')}")
def test_dfn3_library_delay_is_the_compensated_constant(speech: np.ndarray) -> None:
    """The raw library at 48 kHz lags by DELAY samples exactly (re-measured, in case the
    wheel changes): the cross-correlation peaks there and the residual is far smaller than
    one sample off on either side."""
    import soxr

    from trnet.enhance.dfn3 import libdf

    se = libdf.DFN3LibDF(prefetch=False)
    x48 = soxr.resample(speech, 16_000, 48_000, quality="HQ")
    buf = np.zeros(-(-(len(x48) + 4 * libdf.HOP) // libdf.HOP) * libdf.HOP, dtype=np.float32)
    buf[: len(x48)] = x48
    out = np.empty_like(buf)
    state = se._new_state()
    for offset in range(0, buf.nbytes, libdf.HOP * 4):
        se._rt.lib.df_process_frame(state, buf.ctypes.data + offset, out.ctypes.data + offset)
    se._rt.lib.df_free(state)
    assert xcorr_lag(out, x48) == libdf.DELAY
    err = {d: np.sum((out[d : d + len(x48)] - x48) ** 2) for d in (libdf.DELAY - 1, libdf.DELAY, libdf.DELAY + 1)}
    assert err[libdf.DELAY] < 0.2 * min(err[libdf.DELAY - 1], err[libdf.DELAY + 1])


# ---------------------------------------------------------------- CMGAN generator


# Derived by hand from the authors' code (src/models/generator.py, conformer.py of
# ruizhecao96/CMGAN; TSCNet(num_channel=64, num_features=201)): the names and shapes of
# their checkpoint's state_dict.
def _dense_keys(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    keys = []
    for i in range(1, 5):
        keys += [
            (f"{prefix}.conv{i}.weight", (64, 64 * i, 2, 3)),
            (f"{prefix}.conv{i}.bias", (64,)),
            (f"{prefix}.norm{i}.weight", (64,)),
            (f"{prefix}.norm{i}.bias", (64,)),
            (f"{prefix}.prelu{i}.weight", (64,)),
        ]
    return keys


def _feedforward_keys(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    """Scale(0.5, PreNorm(dim, FeedForward(dim, mult=4)))."""
    return [
        (f"{prefix}.fn.fn.net.0.weight", (256, 64)),
        (f"{prefix}.fn.fn.net.0.bias", (256,)),
        (f"{prefix}.fn.fn.net.3.weight", (64, 256)),
        (f"{prefix}.fn.fn.net.3.bias", (64,)),
        (f"{prefix}.fn.norm.weight", (64,)),
        (f"{prefix}.fn.norm.bias", (64,)),
    ]


def _conformer_keys(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    """ConformerBlock(dim=64, dim_head=16, heads=4, conv_kernel_size=31)."""
    return [
        *_feedforward_keys(f"{prefix}.ff1"),
        (f"{prefix}.attn.fn.to_q.weight", (64, 64)),
        (f"{prefix}.attn.fn.to_kv.weight", (128, 64)),
        (f"{prefix}.attn.fn.to_out.weight", (64, 64)),
        (f"{prefix}.attn.fn.to_out.bias", (64,)),
        (f"{prefix}.attn.fn.rel_pos_emb.weight", (1025, 16)),
        (f"{prefix}.attn.norm.weight", (64,)),
        (f"{prefix}.attn.norm.bias", (64,)),
        (f"{prefix}.conv.net.0.weight", (64,)),
        (f"{prefix}.conv.net.0.bias", (64,)),
        (f"{prefix}.conv.net.2.weight", (256, 64, 1)),
        (f"{prefix}.conv.net.2.bias", (256,)),
        (f"{prefix}.conv.net.4.conv.weight", (128, 1, 31)),
        (f"{prefix}.conv.net.4.conv.bias", (128,)),
        (f"{prefix}.conv.net.5.weight", (128,)),
        (f"{prefix}.conv.net.5.bias", (128,)),
        (f"{prefix}.conv.net.5.running_mean", (128,)),
        (f"{prefix}.conv.net.5.running_var", (128,)),
        (f"{prefix}.conv.net.5.num_batches_tracked", ()),
        (f"{prefix}.conv.net.7.weight", (64, 128, 1)),
        (f"{prefix}.conv.net.7.bias", (64,)),
        *_feedforward_keys(f"{prefix}.ff2"),
        (f"{prefix}.post_norm.weight", (64,)),
        (f"{prefix}.post_norm.bias", (64,)),
    ]


AUTHORS_CMGAN_KEYS: list[tuple[str, tuple[int, ...]]] = [
    ("dense_encoder.conv_1.0.weight", (64, 3, 1, 1)),
    ("dense_encoder.conv_1.0.bias", (64,)),
    ("dense_encoder.conv_1.1.weight", (64,)),
    ("dense_encoder.conv_1.1.bias", (64,)),
    ("dense_encoder.conv_1.2.weight", (64,)),
    *_dense_keys("dense_encoder.dilated_dense"),
    ("dense_encoder.conv_2.0.weight", (64, 64, 1, 3)),
    ("dense_encoder.conv_2.0.bias", (64,)),
    ("dense_encoder.conv_2.1.weight", (64,)),
    ("dense_encoder.conv_2.1.bias", (64,)),
    ("dense_encoder.conv_2.2.weight", (64,)),
    *[k for i in range(1, 5) for stage in ("time", "freq") for k in _conformer_keys(f"TSCB_{i}.{stage}_conformer")],
    *_dense_keys("mask_decoder.dense_block"),
    ("mask_decoder.sub_pixel.conv.weight", (128, 64, 1, 3)),
    ("mask_decoder.sub_pixel.conv.bias", (128,)),
    ("mask_decoder.conv_1.weight", (1, 64, 1, 2)),
    ("mask_decoder.conv_1.bias", (1,)),
    ("mask_decoder.norm.weight", (1,)),
    ("mask_decoder.norm.bias", (1,)),
    ("mask_decoder.prelu.weight", (1,)),
    ("mask_decoder.final_conv.weight", (1, 1, 1, 1)),
    ("mask_decoder.final_conv.bias", (1,)),
    ("mask_decoder.prelu_out.weight", (201,)),
    *_dense_keys("complex_decoder.dense_block"),
    ("complex_decoder.sub_pixel.conv.weight", (128, 64, 1, 3)),
    ("complex_decoder.sub_pixel.conv.bias", (128,)),
    ("complex_decoder.prelu.weight", (64,)),
    ("complex_decoder.norm.weight", (64,)),
    ("complex_decoder.norm.bias", (64,)),
    ("complex_decoder.conv.weight", (2, 64, 1, 2)),
    ("complex_decoder.conv.bias", (2,)),
]


@pytest.fixture(scope="module")
def cmgan_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the right layout with random weights (the real one is not shipped)."""
    from trnet.enhance.cmgan import CMGANGenerator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cmgan") / "ckpt"
    torch.save(CMGANGenerator().state_dict(), path)
    return path


def test_cmgan_state_dict_matches_the_authors_checkpoint_layout() -> None:
    from trnet.enhance.cmgan import CMGANGenerator

    ours = {k: tuple(v.shape) for k, v in CMGANGenerator().state_dict().items()}
    assert ours == dict(AUTHORS_CMGAN_KEYS)
    assert len(AUTHORS_CMGAN_KEYS) == len(ours) == 359
    n_params = sum(p.numel() for p in CMGANGenerator().parameters())
    assert n_params == 1_834_833  # the paper's "1.83 M"


def test_cmgan_checkpoint_round_trip(cmgan_checkpoint: Path, tmp_path: Path) -> None:
    saved = torch.load(cmgan_checkpoint, weights_only=True)
    se = enhance.load("cmgan", checkpoint=cmgan_checkpoint)
    loaded = se.net.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    ddp = tmp_path / "ddp_ckpt"  # as saved from a DistributedDataParallel wrapper
    torch.save({f"module.{k}": v for k, v in saved.items()}, ddp)
    from_ddp = enhance.load("cmgan", checkpoint=ddp)
    assert all(torch.equal(from_ddp.net.state_dict()[k], saved[k]) for k in saved)
    assert from_ddp.version != se.version  # other checkpoint bytes, other version
    saved["mask_decoder.prelu_out.weight"] = torch.zeros(200)
    torch.save(saved, tmp_path / "bad")
    with pytest.raises(UserError, match="prelu_out"):  # another model's weights: one line, not a traceback
        enhance.load("cmgan", checkpoint=tmp_path / "bad")


def test_cmgan_without_checkpoint_says_where_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from trnet.enhance.cmgan import CHECKPOINT_ENV

    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="best_ckpt/ckpt"):
        enhance.load("cmgan")
    assert "cmgan" not in enhance.available()


def test_cmgan_random_weights_keep_length_and_zero_tail(cmgan_checkpoint: Path) -> None:
    se = enhance.load("cmgan", checkpoint=cmgan_checkpoint)
    wave = torch.randn(2, 950) * 0.1
    out = se.enhance(wave, torch.tensor([950, 377]))
    assert out.shape == wave.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out[1, 377:] == 0).all() and out[1, :377].abs().max() > 0
    assert (se.enhance(torch.zeros(1, 500)) == 0).all()


def test_cmgan_pipeline_is_transparent_and_aligned_with_a_pass_through_generator(
    cmgan_checkpoint: Path, speech: np.ndarray
) -> None:
    """Mask = 1 and complex residual = 0 make the generator an identity on the compressed
    spectrum: then normalisation, STFT, compression and their inverses must give x back."""
    se = enhance.load("cmgan", checkpoint=cmgan_checkpoint)
    with torch.no_grad():
        se.net.mask_decoder.final_conv.weight.zero_()
        se.net.mask_decoder.final_conv.bias.fill_(1.0)
        se.net.complex_decoder.conv.weight.zero_()
        se.net.complex_decoder.conv.bias.zero_()
    x = speech[8_000:9_123]
    out = se.enhance(torch.from_numpy(x)[None])[0].numpy()
    assert np.abs(out - x).max() < 1e-4 * np.abs(x).max() + 1e-6
    assert xcorr_lag(out, x) == 0


# ---------------------------------------------------------------- command line


def test_cli_lists_backends_and_enhances_files(
    tmp_path: Path, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from trnet.cli import main

    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # main() rewrites it
    assert main(["enhance", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "identity   available" in listing and "cmgan" in listing
    sf.write(tmp_path / "a.wav", speech, 16_000, subtype="FLOAT")
    sf.write(tmp_path / "b.flac", speech[:8_000], 16_000)
    args = [
        "enhance",
        str(tmp_path / "a.wav"),
        str(tmp_path / "b.flac"),
        "--se",
        "identity",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    out, sr = sf.read(tmp_path / "out" / "a.wav", dtype="float32")
    assert sr == 16_000 and len(out) == len(speech) and np.abs(out - speech).max() < 1e-4
    assert len(sf.read(tmp_path / "out" / "b.wav")[0]) == 8_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav"]
    assert (
        main(["enhance", str(tmp_path / "a.wav"), "--se", "spectral", "--opt", "nope=1", "--out", str(tmp_path)]) == 2
    )
