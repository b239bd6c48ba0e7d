"""The one-file ONNX pipeline (`trnet export --format onnx --pipeline`, trnet.pipeline): each
piece against what `trnet predict` runs (soxr, fbank, dfn3, Silero through trnet.vad, the
windows), the whole graph against `trnet predict` on the example clips, and
examples/onnx_predict.py in a process where torch and trnet cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

import trnet
from tests.test_predict import make_run, speech_like
from trnet import vad
from trnet.features import fbank
from trnet.pipeline.dsp import Resampler
from trnet.pipeline.graph import LMFB, Chunks, Core

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_predict.py"


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_resampler_is_soxr_hq_both_ways() -> None:
    up, down = Resampler(True), Resampler(False)
    for n in (1, 400, 5_000, 33_333):
        x = noise(n, n)
        y = soxr.resample(x, 16_000, 48_000, quality="HQ")
        assert np.abs(up(torch.from_numpy(x)).numpy() - y).max() < 1e-6
        z = soxr.resample(y, 48_000, 16_000, quality="HQ")
        assert np.abs(down(torch.from_numpy(y)).numpy() - z).max() < 1e-6


def test_lmfb_is_trnet_fbank() -> None:
    lmfb = LMFB()
    for n in (400, 559, 560, 20_000):
        x = torch.from_numpy(noise(n, n))
        want = fbank(x[None])[0][0]
        got = lmfb(x)
        assert got.shape == want.shape and float((got - want).abs().max()) < 2e-3


def test_dfn3_utterance_is_the_dfn3_back_end() -> None:
    from trnet import enhance
    from trnet.pipeline.dfn3 import DFN3Utterance

    wave = speech_like(1.3, seed=1) + noise(20_800, 1)
    want = enhance.load("dfn3", threads=1).enhance(torch.from_numpy(wave)[None])[0].numpy()
    with torch.no_grad():
        got = DFN3Utterance()(torch.from_numpy(wave)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_silero_port_is_trnet_vad() -> None:
    from trnet.pipeline.silero import Silero

    silero, chunks = Silero(), Chunks()
    for wave in (speech_like(2.2, seed=3), noise(300), np.concatenate([speech_like(1.0), noise(9_000)])):
        with torch.no_grad():
            got = silero(chunks(torch.from_numpy(wave)[None])).numpy()
        want = vad.chunk_probabilities(np.pad(wave, (0, max(0, 400 - len(wave)))))
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_the_graph_has_the_windows_of_trnet_predict(tmp_path: Path) -> None:
    with trnet.load(make_run(tmp_path, system="baseline-c")) as predictor:  # reads X only: no DFN3
        core = Core(predictor.model)
        for n in (300, 400, 80_000, 80_001, 120_000, 121_000, 200_000):
            wave = torch.from_numpy(noise(n, n))[None]
            chunk_probs = torch.rand(-(-max(n, 400) // vad.CHUNK))
            with torch.no_grad():
                probs, _, speech = core(wave, chunk_probs)
            spans = predictor.spans(max(n, 400))
            assert probs.shape[0] == len(spans), n
            want = [vad.speech_fraction(chunk_probs.numpy(), a, b) for a, b in spans]
            assert np.allclose(speech.numpy(), want, atol=1e-6)
            p = predictor.predict(wave[0].numpy(), 16_000)
            windows = p.windows or [p]
            got = np.array([[w.probabilities[k] for k in predictor.labels] for w in windows])
            assert np.abs(probs.numpy() - got).max() < 1e-3, n


def fake_pipeline(path: Path) -> None:
    """An ONNX file with the pipeline's interface and metadata (made by onnx's helpers, in
    this process), so that the example's no-torch run is a fast test."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["waveform"], ["m"], keepdims=1),  # [1, 1]
        helper.make_node("Abs", ["m"], ["m_abs"]),
        helper.make_node("Reshape", ["m_abs", "shape1"], ["a"]),  # [1]
        helper.make_node("Concat", ["a", "a", "one", "a"], ["row"], axis=0),
        helper.make_node("Unsqueeze", ["row", "zero"], ["probabilities"]),
        helper.make_node("Identity", ["one"], ["c"]),
        helper.make_node("Identity", ["one"], ["speech"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "N"])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("speech", TensorProto.FLOAT, [1]),
        ],
        initializer=[
            helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("shape1", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    from trnet.pipeline.graph import metadata

    for k, v in metadata(["angry", "happy", "neutral", "sad"]).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)


def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with stub packages `torch` and `trnet` whose import fails."""
    stubs = tmp_path / "stubs"
    for name in ("torch", "trnet"):
        (stubs / name).mkdir(parents=True, exist_ok=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} must not be needed here')\n")
    return {**os.environ, "PYTHONPATH": str(stubs), "OMP_NUM_THREADS": "1"}


def run_example(model: Path, audio: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), str(model), str(audio)], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_example_runs_without_torch_or_trnet(tmp_path: Path) -> None:
    import soundfile as sf

    env = no_torch_env(tmp_path)
    for name in ("torch", "trnet"):  # the stubs bite
        done = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "must not be needed" in done.stderr
    fake_pipeline(tmp_path / "fake.onnx")
    sf.write(tmp_path / "clip.wav", speech_like(1.0, 22_050, seed=4), 22_050)  # resampled by the example
    done = run_example(tmp_path / "fake.onnx", tmp_path / "clip.wav", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'clip.wav'}: neutral ")  # the fake's largest is the third
    assert len(EXAMPLE.read_text().splitlines()) <= 40


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from trnet.cli import main

    out = tmp_path_factory.mktemp("pipeline") / "trnet.onnx"
    assert main(["export", "--format", "onnx", "--pipeline", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_the_exported_bundle_agrees_with_trnet_predict_on_the_examples(exported: Path) -> None:
    import onnxruntime as ort

    from trnet.audio import load_audio
    from trnet.pipeline.export import describe

    meta = describe(exported)
    assert meta["trnet.labels"] == ["angry", "happy", "neutral", "sad"]
    assert meta["trnet.windows"]["window_samples"] == 80_000 and "rule" in meta["trnet.speech"]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    clips = sorted((ROOT / "examples").glob("*.flac"))
    long = np.concatenate([load_audio(c) for c in clips])  # 21 s: 7 windows
    with trnet.load() as predictor:
        for wave in [load_audio(c) for c in clips] + [long]:
            p = predictor.predict(wave, 16_000)
            windows = p.windows or [p]
            want = np.array([[w.probabilities[k] for k in predictor.labels] for w in windows])
            got, c, speech = session.run(["probabilities", "c", "speech"], {"waveform": wave[None]})
            assert got.shape == want.shape and np.abs(got - want).max() <= 1e-3
            # c: NaN in the graph where the system has none (Baseline-e), None in trnet predict
            want_c = np.array([np.nan if w.c is None else w.c for w in windows])
            assert np.array_equal(np.isnan(c), np.isnan(want_c))
            assert np.nan_to_num(np.abs(c - want_c)).max() <= 1e-3
            assert np.abs(speech - np.array([w.speech for w in windows])).max() <= 1e-6


@pytest.mark.slow
def test_the_example_on_the_exported_bundle_without_torch(exported: Path, tmp_path: Path) -> None:
    clip = ROOT / "examples" / "espeak-pl-fast-high.flac"
    done = run_example(exported, clip, no_torch_env(tmp_path))
    assert done.returncode == 0, done.stderr
    pins = json.loads((ROOT / "examples" / "pins.json").read_text())["clips"][clip.name]
    assert done.stdout.split()[1] == pins["label"]
    probs = dict(zip(done.stdout.split()[2::2], map(float, done.stdout.split()[3::2]), strict=False))
    assert max(abs(probs[k] - v) for k, v in pins["probabilities"].items()) <= 1e-3


def test_pipeline_export_is_onnx_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trnet.cli import main

    out = tmp_path / "x.pt"
    assert main(["export", "--format", "torchscript", "--pipeline", "--out", str(out)]) == 2
    assert "--format onnx" in capsys.readouterr().err and not out.exists()
