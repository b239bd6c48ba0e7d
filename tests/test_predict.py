"""`trnet predict` and `trnet.load(...).predict(...)`: inference on user audio, any format."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import trnet
from trnet.cli import main
from trnet.corpora import LABELS
from trnet.features import fbank
from trnet.models import SERSystem, load_config, load_training_config
from trnet.predict.predictor import Predictor
from trnet.runs import save_weights, write_config, write_finished

WIDTH = 4  # tiny models: inference plumbing does not depend on width
pytestmark = pytest.mark.usefixtures("one_thread")


def scramble(model: SERSystem, seed: int = 0) -> SERSystem:
    """Random weights everywhere and BatchNorm statistics of real LMFB, so that no part of the
    graph is an identity (the SNR-aware FC and the FiLM bridge start constant / identity) and
    the outputs vary with the input instead of saturating."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.add_(1.0)
                m.momentum = 1.0  # running statistics := those of the calibration batch
        waves = torch.from_numpy(np.stack([speech_like(2.0, seed=seed + k) for k in range(4)]))
        x, frames = fbank(
            waves + 0.05 * torch.randn(waves.shape, generator=g), torch.tensor([32_000, 24_000, 16_000, 8_000])
        )
        xe, _ = fbank(waves)
        model.train()(x, xe, frames)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
        if model.snr is not None:  # c = 0.5 + w . (d - 1): inside (0, 1), moving with d
            model.snr.fc.bias.copy_(0.5 - model.snr.fc.weight.sum())
        last = model.classifier if isinstance(model.classifier, torch.nn.Linear) else model.classifier[-1]
        last.weight.mul_(0.2)  # logits of a few units: probabilities that vary with the input
    return model.eval()


def make_run(
    root: Path, system: str = "trnet", width: int = WIDTH, se: str = "identity", seed: int = 0, **overrides
) -> Path:
    """A finished run directory in the trainer's format (config.json, best.safetensors, done.json),
    random weights."""
    cfg = replace(load_config(system), width=width, **overrides)
    model = scramble(SERSystem(cfg), seed)
    out = root / system / f"fold0-seed{seed}"
    save_weights(out / "best.safetensors", model, {"epoch": "1"})
    config = {
        "system": asdict(cfg),
        "training": asdict(load_training_config(system)),
        "fold": 0,
        "seed": seed,
        "labels": list(LABELS),
        "train_noise": "esc50",
        "train_conditions": ["clean", "esc50@20", "esc50@15", "esc50@10", "esc50@5", "esc50@0"],
        "store": str(root / "store"),
        "store_hash": "0" * 64,
        "se": se,
        "se_options": {},
        "test_speaker": "03",
        "val_speaker": "08",
        "train_speakers": ["09", "10", "11", "12", "13", "14", "15", "16"],
    }
    write_config(out, config)
    write_finished(out, {"epoch": 1, "val_uar": 0.25, "val_ce": 1.4, "epochs_run": 1})
    return out


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def speech_like(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    """Speech that a speech detector takes for speech: the example clips' synthetic voices
    (espeak-ng, ours), looped from a seed-dependent offset, with a little noise, peak ~0.5."""
    from trnet.audio import load_audio, resample

    rng = np.random.default_rng(seed)
    clips = [p for p in sorted(EXAMPLES.glob("espeak-*.flac")) if "noise" not in p.name]
    voices = np.concatenate([load_audio(p) for p in clips])
    n = int(round(seconds * sr))
    start = int(rng.integers(len(voices)))
    wave = np.resize(np.roll(voices, -start), int(np.ceil(seconds * 16_000)) + 1).astype(np.float64)
    wave = resample(wave.astype(np.float32), 16_000, sr)[:n].astype(np.float64)
    wave = np.pad(wave, (0, max(0, n - len(wave)))) + 0.01 * rng.standard_normal(n)
    return (0.5 * wave / max(np.abs(wave).max(), 1e-9)).astype(np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def model(run_dir):
    with trnet.load(run_dir) as m:
        yield m


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """wav + flac at 8 / 22.05 / 44.1 kHz, mono and stereo, ogg and mp3, in nested folders,
    plus a non-audio file that the directory scan must leave out."""
    root = tmp_path_factory.mktemp("audio")
    (root / "sub").mkdir()
    s8 = speech_like(1.5, 8_000, seed=1)
    sf.write(root / "a_8k_stereo.wav", (np.stack([s8, 0.5 * s8], 1) * 32767).astype(np.int16), 8_000)
    sf.write(root / "sub" / "b_22k.flac", speech_like(2.0, 22_050, seed=2), 22_050, subtype="PCM_16")
    s44 = speech_like(1.0, 44_100, seed=3)
    sf.write(root / "sub" / "c_44k_stereo.wav", np.stack([s44, -0.2 * s44], 1), 44_100, subtype="FLOAT")
    sf.write(root / "sub" / "d_48k.ogg", speech_like(1.0, 48_000, seed=4), 48_000, format="OGG", subtype="VORBIS")
    sf.write(root / "sub" / "e_24k.mp3", speech_like(1.0, 24_000, seed=5), 24_000, format="MP3")
    (root / "notes.txt").write_text("not audio")
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_directory_of_mixed_formats_and_rates_gives_one_row_per_file(run_dir, audio_dir, capsys):
    code, out, err = run_cli(capsys, audio_dir, "--model", run_dir)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["file", "window", "(s)"]
    rows = lines[1:]
    names = ["a_8k_stereo.wav", "b_22k.flac", "c_44k_stereo.wav", "d_48k.ogg", "e_24k.mp3"]
    assert sorted(Path(r.split()[0]).name for r in rows) == names
    for row in rows:
        fields = row.split()
        assert fields[2] in LABELS
        probs = [float(v) for v in fields[3:7]]
        assert abs(sum(probs) - 1) < 2e-3
        assert 0 <= float(fields[7]) <= 1  # c of the TRNet system
    assert "notes.txt" not in out + err


def test_corrupt_file_is_reported_and_the_rest_predicted(run_dir, audio_dir, tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    good = audio_dir / "sub" / "b_22k.flac"
    code, out, err = run_cli(capsys, bad, good, tmp_path / "missing.wav", "--model", run_dir, "--json")
    assert code == 1
    assert "broken.wav" in err and "missing.wav" in err
    doc = json.loads(out)
    assert [Path(r["file"]).name for r in doc["results"]] == ["b_22k.flac"]
    assert len(doc["errors"]) == 2


def test_a_bug_while_predicting_a_file_is_skipped_but_raised_under_debug(run_dir, audio_dir, capsys, monkeypatch):
    """A RuntimeError inside the model is one "skipped:" line in a batch, and its traceback under
    --debug (before or after the command), which is where a bug shows itself."""

    def broken(self, path, timings=None):
        raise RuntimeError("shape mismatch inside the model")

    monkeypatch.setattr(Predictor, "predict_file", broken)
    good = audio_dir / "sub" / "b_22k.flac"
    code, _, err = run_cli(capsys, good, "--model", run_dir)
    assert code == 1 and "skipped:" in err and "RuntimeError: shape mismatch" in err
    for args in (["--debug", "predict", good, "--model", run_dir], ["predict", good, "--model", run_dir, "--debug"]):
        with pytest.raises(RuntimeError, match="shape mismatch"):
            main([str(a) for a in args])


def test_usage_errors_exit_2(run_dir, audio_dir, tmp_path, capsys):
    assert run_cli(capsys, audio_dir, "--model", tmp_path / "nothing-here")[0] == 2
    assert run_cli(capsys, audio_dir, "--model", run_dir, "--hop", "0")[0] == 2
    assert run_cli(capsys, audio_dir, "--model", run_dir, "--se", "no-such-se")[0] == 2
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, audio_dir, "--model", run_dir, "--json", "--csv")
    assert e.value.code == 2


def test_long_file_gives_windows_and_weighted_aggregate(run_dir, tmp_path, capsys):
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(12.0, 16_000, seed=4), 16_000)
    code, out, err = run_cli(capsys, path, "--model", run_dir, "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    windows, total = rows[:-1], rows[-1]
    assert [(float(r["start"]), float(r["end"])) for r in windows] == [(0, 5), (2.5, 7.5), (5, 10), (7.5, 12)]
    assert total["window"] == "all" and total["reliable"] == "true" and float(total["end"]) == 12.0
    weights = np.array([5, 5, 5, 4.5]) / 19.5
    for k in LABELS:
        mean = weights @ np.array([float(r[f"p_{k}"]) for r in windows])
        assert float(total[f"p_{k}"]) == pytest.approx(mean, abs=1e-5)
    c = weights @ np.array([float(r["c"]) for r in windows])
    assert float(total["c"]) == pytest.approx(c, abs=1e-3)


def test_predict_numpy_array_at_44k(model):
    wave = speech_like(3.0, 44_100, seed=5)
    p = model.predict(wave, 44_100)
    assert p.label in LABELS and p.label == max(p.probabilities, key=p.probabilities.get)
    assert sum(p.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert p.reliable and p.warnings == [] and p.windows == [] and 0 <= p.c <= 1
    assert p.duration == pytest.approx(3.0, abs=1e-3)
    # the same audio as int16 PCM, channels-first stereo torch tensor, or resampled by the
    # caller gives the same prediction
    pcm = torch.from_numpy((np.stack([wave, wave]) * 32767).astype(np.int16))
    for other in (model.predict(pcm, 44_100), model.predict(wave[::441].repeat(160), 16_000)):
        assert other.label in (*LABELS, "no speech")  # the second is a 100 Hz staircase: not speech
    assert model.predict(pcm, 44_100).probabilities == pytest.approx(p.probabilities, abs=1e-3)


@pytest.mark.parametrize(
    "wave, why",
    [
        (speech_like(0.3, seed=6), "too short"),
        (speech_like(0.01, seed=6), "too short"),  # under one 25 ms frame: padded
        (np.zeros(16_000, np.float32), "silent"),
        (np.full(32_000, 3e-5, np.float32), "silent"),
    ],
)
def test_short_and_silent_inputs_are_flagged_unreliable(model, wave, why):
    p = model.predict(wave, 16_000)
    assert not p.reliable and any(why in w for w in p.warnings)
    assert np.isfinite(list(p.probabilities.values())).all() and np.isfinite(p.c)
    assert p.label in (*LABELS, "no speech") if why == "too short" else p.label == "no speech"


def test_silent_window_of_long_input_is_left_out(model):
    wave = speech_like(12.5, seed=7)
    wave[-80_000:] = 0  # the last window, 7.5-12.5 s
    p = model.predict(wave, 16_000)
    assert (
        p.reliable
        and len(p.windows) == 4
        and p.warnings == ["window 7.5-12.5 s is digitally silent: left out of the result"]
    )
    assert p.probabilities["angry"] == pytest.approx(
        np.mean([w.probabilities["angry"] for w in p.windows[:3]]), abs=1e-6
    )


def test_bad_waveforms_raise_audio_error(model):
    from trnet.audio import AudioError

    for bad in (np.zeros(0, np.float32), np.full(800, np.nan, np.float32), np.zeros((2, 2, 100)), np.array(["a"])):
        with pytest.raises(AudioError):
            model.predict(bad, 16_000)
    with pytest.raises(AudioError):
        model.predict(np.zeros(800, np.float32), 0)


def test_other_se_warns_and_default_follows_the_run(run_dir, audio_dir, capsys):
    with pytest.warns(UserWarning, match="trained on features enhanced by 'identity', not 'spectral'"):
        with trnet.load(run_dir, se="spectral") as m:
            assert m.se_name == "spectral"
    code, out, err = run_cli(capsys, audio_dir / "sub", "--model", run_dir, "--se", "spectral")
    assert code == 0 and "warning: model was trained on features enhanced by 'identity'" in err


def test_systems_without_c_say_na(tmp_path, audio_dir, capsys):
    run = make_run(tmp_path, "baseline-e", se="spectral")
    code, out, err = run_cli(capsys, audio_dir / "a_8k_stereo.wav", "--model", run)
    assert code == 0 and out.splitlines()[1].split()[7] == "n/a"
    code, out, err = run_cli(capsys, audio_dir / "a_8k_stereo.wav", "--model", run / "best.safetensors", "--json")
    assert code == 0 and json.loads(out)["results"][0]["c"] is None


def test_glob_and_file_list_without_duplicates(run_dir, audio_dir, capsys):
    code, out, err = run_cli(
        capsys, f"{audio_dir}/**/*.flac", audio_dir / "sub" / "b_22k.flac", "--model", run_dir, "--json"
    )
    assert code == 0 and len(json.loads(out)["results"]) == 1
    code, out, err = run_cli(capsys, f"{audio_dir}/*.mp3", "--model", run_dir)
    assert code == 1 and "no audio files" in err


def test_import_trnet_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys, trnet; assert callable(trnet.load); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
