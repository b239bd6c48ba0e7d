"""`trnet export`: ONNX / TorchScript inference graphs that match PyTorch (max |delta logits|
<= 1e-4) for any batch size and length, random and real LMFB inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_predict import make_run, speech_like
from trnet.cli import main
from trnet.enhance import load as load_se
from trnet.export import TOLERANCE, InferenceGraph, example_inputs, run_onnx
from trnet.features import fbank
from trnet.runs import load_run

pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]

SYSTEMS = ("trnet", "baseline-e", "baseline-ne")


def real_features() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """LMFB of speech-like audio in noise and its spectral-SE enhancement, in batches of
    several lengths (one utterance under a single frame's worth of stride, one of 5 s)."""
    se = load_se("spectral")
    batches = []
    for seconds in ((0.03, 1.3), (5.0,), (2.0, 0.7, 3.1)):
        n = [int(s * 16_000) for s in seconds]
        wave = torch.zeros(len(n), max(n))
        for b, (k, s) in enumerate(zip(n, seconds, strict=False)):
            clean = torch.from_numpy(speech_like(s, seed=b))
            wave[b, :k] = clean + 0.1 * torch.randn(k, generator=torch.Generator().manual_seed(b))
        lengths = torch.tensor(n)
        x, frames = fbank(wave, lengths)
        xe, _ = fbank(se.enhance(wave, lengths), lengths)
        batches.append((x, xe, frames))
    return batches


def random_features() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [example_inputs(batch=b, t=t, seed=t) for b, t in ((1, 1), (1, 17), (4, 498), (2, 1000))]


@pytest.fixture(scope="module")
def inputs() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return random_features() + real_features()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_export_matches_pytorch(system, fmt, inputs, tmp_path, capsys):
    run = make_run(tmp_path, system)
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--model", str(run), "--format", fmt, "--out", str(out)]) == 0
    assert "max |delta logits|" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    model, config = load_run(run)
    graph = InferenceGraph(model).eval()
    if fmt == "torchscript":
        extra = {"trnet.json": ""}
        scripted = torch.jit.load(str(out), _extra_files=extra)
        assert json.loads(json.loads(extra["trnet.json"])["trnet.labels"]) == config["labels"]
    for x, xe, frames in inputs:
        with torch.inference_mode():
            want_logits, want_c = graph(x, xe, frames)
            got_logits, got_c = run_onnx(out, x, xe, frames) if fmt == "onnx" else scripted(x, xe, frames)
        assert got_logits.shape == want_logits.shape == (len(frames), 4)
        assert (got_logits - want_logits).abs().max() <= TOLERANCE
        if system == "trnet":
            assert (got_c - want_c).abs().max() <= 1e-5
        else:
            assert torch.isnan(got_c).all() and got_c.shape == (len(frames),)


def test_onnx_signature_and_metadata_are_the_same_for_every_system(tmp_path):
    import onnx

    for system in ("baseline-e", "baseline-c"):  # each ignores one of the two inputs
        out = tmp_path / f"{system}.onnx"
        assert main(["export", "--model", str(make_run(tmp_path, system)), "--format", "onnx", "--out", str(out)]) == 0
        proto = onnx.load(str(out))
        assert [i.name for i in proto.graph.input] == ["x", "xe", "frames"]
        assert [o.name for o in proto.graph.output] == ["logits", "c"]
        meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
        assert meta["trnet.system"]["name"] == system and meta["trnet.se"] == {"se": "identity", "se_options": {}}
        x, xe, frames = example_inputs(batch=2, t=50)
        logits, _ = run_onnx(out, x, xe, frames)
        model, _ = load_run(make_run(tmp_path, system))
        assert np.allclose(logits, model(x, xe, frames).logits.detach(), atol=TOLERANCE)


def test_bad_model_or_format_is_a_usage_error(tmp_path, capsys):
    assert (
        main(["export", "--model", str(tmp_path / "none"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    )
    assert main(["export", "--model", str(make_run(tmp_path)), "--format", "tflite", "--out", str(tmp_path / "m")]) == 2
    assert "expected one of onnx, torchscript" in capsys.readouterr().err
    assert not Path(tmp_path / "m.onnx").exists()
