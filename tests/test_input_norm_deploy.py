"""A model trained with input_norm = "utterance" (docs/design.md §7; the norm is part of the
model, SERSystem.embed) deploys like any other: the run and its bundle load with the norm,
`trnet predict` applies it, and the one-file ONNX pipeline (`trnet export --pipeline`) computes
the probabilities of `trnet predict` within the tolerance of the shipped pipeline's check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import trnet
from tests.bundle_fixtures import random_bundle
from tests.test_predict import speech_like
from tests.test_store import make_corpus
from trnet.enhance import Spec
from trnet.models import SERSystem
from trnet.store import BuildSpec, build
from trnet.training.trainer import spec_from_names, train

pytestmark = pytest.mark.usefixtures("one_thread")
TOLERANCE = 1e-3  # max |delta probability|, as tests/test_pipeline.py's check of the shipped pipeline
WAVES = (speech_like(1.3, seed=1), speech_like(12.0, seed=2))  # one window, and several


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of Baseline-n (noisy LMFB in: the pipeline needs no DFN3) trained 2 epochs at width
    4 with the utterance norm on a tiny synthetic store."""
    root = tmp_path_factory.mktemp("norm")
    corpus, noise = make_corpus(root, n_speakers=4, per_speaker=8)
    store = build(BuildSpec(corpus, {"esc50": noise}, Spec("identity"), seed=1, snrs=(10, 0)), root / "s", quiet=True)
    spec = spec_from_names(
        "baseline-n",
        0,
        1,
        store,
        root / "runs",
        system_overrides={"width": 4, "input_norm": "utterance"},
        training_overrides={"epochs": 2, "batch_size": 8, "patience": 100},
    )
    return train(spec, quiet=True)


def windows(predictor, wave: np.ndarray) -> np.ndarray:
    p = predictor.predict(wave, 16_000)
    return np.array([[w.probabilities[k] for k in predictor.labels] for w in p.windows or [p]])


def onnx_probabilities(path: Path, wave: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"waveform": wave[None]})[0]


def test_the_onnx_pipeline_of_a_run_trained_with_the_norm_agrees_with_the_predictor(trained, tmp_path) -> None:
    from trnet.export import run_metadata
    from trnet.pipeline.export import export_pipeline
    from trnet.pipeline.graph import Core
    from trnet.runs import load_run

    model, config = load_run(trained)
    assert model.cfg.input_norm == "utterance" and config["system"]["input_norm"] == "utterance"
    out = tmp_path / "norm.onnx"
    export_pipeline(model, config, out, run_metadata(config))  # checks the file against PyTorch too
    plain = SERSystem(replace(model.cfg, input_norm="none"))
    plain.load_state_dict(model.state_dict())
    with trnet.load(trained) as predictor:
        for wave in WAVES:
            want, got = windows(predictor, wave), onnx_probabilities(out, wave)
            delta = np.abs(got - want).max()
            assert got.shape == want.shape and delta <= TOLERANCE
            with torch.no_grad():  # the norm is in the graph: the same weights without it differ more
                unnormed = Core(plain.eval())(torch.from_numpy(wave)[None])[0].numpy()
            assert np.abs(unnormed - want).max() > max(TOLERANCE, 100 * delta)


def test_a_bundle_with_the_norm_installs_loads_predicts_and_exports(tmp_path, capsys) -> None:
    """`trnet bundle --install` (publish.install), `trnet.load()`, `trnet predict` and
    `trnet export --format onnx --pipeline` on a bundle whose model has the utterance norm."""
    from trnet.audio import save_audio
    from trnet.bundle.publish import install
    from trnet.cli import main

    bundle = random_bundle(tmp_path / "b", system="baseline-n", width=4, se="dfn3", input_norm="utterance")
    installed = install(bundle, into=tmp_path / "installed")
    clip = tmp_path / "clip.wav"
    save_audio(clip, WAVES[1])
    with trnet.load(installed) as predictor:
        assert predictor.model.cfg.input_norm == "utterance"
        want = windows(predictor, WAVES[1])
    capsys.readouterr()
    assert main(["predict", str(clip), "--model", str(installed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    got = np.array([[w["probabilities"][k] for k in predictor.labels] for w in report["results"][0]["windows"]])
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-6
    out = tmp_path / "bundle.onnx"
    assert main(["export", "--model", str(installed), "--format", "onnx", "--pipeline", "--out", str(out)]) == 0
    got = onnx_probabilities(out, WAVES[1])
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE


def test_the_pipeline_of_the_shipped_system_with_the_norm_agrees_with_trnet_predict(tmp_path) -> None:
    """The shipped system (TRNet-std-SNR: DFN3 in the graph, the norm after the SNR-aware
    module) with the utterance norm, random weights: `trnet export --pipeline` vs the predictor."""
    from tests.test_predict import make_run
    from trnet.cli import main

    run = make_run(tmp_path, system="trnet-std-snr", width=4, se="dfn3", input_norm="utterance")
    out = tmp_path / "shipped.onnx"
    assert main(["export", "--model", str(run), "--format", "onnx", "--pipeline", "--out", str(out)]) == 0
    with trnet.load(run) as predictor:
        assert predictor.model.cfg.input_norm == "utterance"
        want = windows(predictor, WAVES[1])
    got = onnx_probabilities(out, WAVES[1])
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE
