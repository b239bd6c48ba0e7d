"""The model bundled with the package (`trnet.pretrained`): found without --model, checked
against its SHA-256 on every load, listed by `trnet models`, exported, and pinned on the
example clips. Until the released model is committed, a random-weights bundle in a temp
folder ($TRNET_MODELS) stands in; the tests on the package's own bundle run once it is there."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trnet
from tests.bundle_fixtures import random_bundle
from trnet import pretrained
from trnet.cli import main
from trnet.pretrained import ENV, MANIFEST, BundleError, bundles

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHIPPED = bundles(pretrained.PACKAGE_DIR)  # the package's own bundles (none until the real model lands)
NO_SHIPPED = "no bundled model in src/trnet/pretrained yet (the released model lands with `trnet bundle --install`)"


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of bundles as $TRNET_MODELS, holding one random-weights bundle."""
    folder = tmp_path / "models"
    random_bundle(folder)
    monkeypatch.setenv(ENV, str(folder))
    return folder


def load_pin_module():
    spec = importlib.util.spec_from_file_location("pin", EXAMPLES / "pin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_loads_and_its_sha_matches_the_manifest(models_dir: Path) -> None:
    bundle = pretrained.default()
    assert bundle.name == "test-model" and bundle.labels == ["angry", "happy", "neutral", "sad"]
    assert pretrained.resolve(None) == bundle.path
    assert pretrained.resolve("test-model") == bundle.path  # a bundle's name works as --model too
    with trnet.load() as predictor:
        assert predictor.path == bundle.path and predictor.system == "trnet-std-snr"


@pytest.mark.parametrize("damage", ["flip", "missing", "manifest"])
def test_a_damaged_bundle_is_one_line_and_exit_2(
    models_dir: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    folder = models_dir / "test-model"
    if damage == "flip":
        data = bytearray((folder / "best.safetensors").read_bytes())
        data[-1] ^= 1
        (folder / "best.safetensors").write_bytes(bytes(data))
    elif damage == "missing":
        (folder / "config.json").unlink()
    else:
        (folder / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError):
        pretrained.resolve(None)
    assert main(["predict", str(EXAMPLES / "espeak-de-slow-low.flac")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reinstall trnet" in err[0], err


def test_predict_without_a_bundle_says_how_to_pass_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "empty"))
    assert main(["predict", str(EXAMPLES / "espeak-de-slow-low.flac")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no bundled model" in err[0] and "--model" in err[0]


def test_predict_without_model_from_outside_the_checkout(models_dir: Path, tmp_path: Path) -> None:
    """A user's shell: another folder, no ../shared beside it, only the installed command."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    env = {**os.environ, ENV: str(models_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "predict", str(EXAMPLES / "espeak-pl-slow-low.flac"), "--json"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["model"].startswith("test-model (bundled with trnet") and len(doc["results"]) == 1
    # what c is worth, from the manifest, in the model card's words (pretrained.c_words)
    assert doc["c_note"].startswith("c is eq. (1)'s weight on the unenhanced input, not a calibrated noise meter")
    assert "has no target of its own" in doc["c_note"]
    assert "aa->bb: rho 0.42, mean c on silence 0.67, noise 0.31" in doc["c_note"]
    assert "Spearman" not in done.stderr  # not on a first run's screen: nothing a newcomer can act on


def test_trnet_models_lists_name_classes_data_licence(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    random_bundle(models_dir, name="other", placeholder=False)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for text in (
        "other",
        "test-model",
        "angry, happy, neutral, sad",
        "Corpus A (Tonal, MIT (generated))",
        "weights: test only; code: MIT",
        "PLACEHOLDER",
        "(ok)",
    ):
        assert text in out, text
    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"]] == ["other", "test-model"]  # both default: by name
    assert all(m["verified"] == "ok" for m in doc["models"])


def test_trnet_models_with_none_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    assert main(["models"]) == 0
    assert "no bundled model" in capsys.readouterr().err


def test_export_works_on_the_bundle(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    assert main(["export", "--format", "torchscript", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    # writing into the bundle's folder is refused: it would change what its manifest vouches for
    assert main(["export", "--format", "torchscript", "--out", str(models_dir / "test-model" / MANIFEST)]) == 2


def test_pins_round_trip(models_dir: Path, tmp_path: Path) -> None:
    """The pin script's output is what the pins test compares against: regenerate, compare."""
    pin = load_pin_module()
    first = pin.predict_clips()
    assert first["model"] == "test-model" and set(first["clips"]) == {p.name for p in pin.clips()}
    assert len(first["clips"]) >= 4
    check_pins(first, pin.predict_clips())


def check_pins(pins: dict, now: dict, tol: float = 1e-4) -> None:
    assert now["weights_sha256"] == pins["weights_sha256"], "the bundled model changed: python examples/pin.py"
    assert set(now["clips"]) == set(pins["clips"])
    for name, want in pins["clips"].items():
        got = now["clips"][name]
        assert got["label"] == want["label"], name
        for k, v in want["probabilities"].items():
            assert got["probabilities"][k] == pytest.approx(v, abs=tol), (name, k)
        if want["c"] is not None:
            assert got["c"] == pytest.approx(want["c"], abs=tol), name


@pytest.mark.skipif(not SHIPPED, reason=NO_SHIPPED)
def test_the_package_bundle_matches_its_manifest_and_fits_in_15_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    for bundle in SHIPPED:
        bundle.verify()
        m = bundle.manifest
        assert m["files"]["best.safetensors"]["bytes"] <= 15_000_000
        assert not m.get("placeholder"), "a placeholder bundle must not ship in the package"
        assert m["training_data"] and m["licence"]["weights"] and m["licence"]["code"] == "MIT"


@pytest.mark.skipif(not SHIPPED, reason=NO_SHIPPED)
def test_the_example_clips_match_their_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    pin = load_pin_module()
    assert pin.PINS.is_file(), "no examples/pins.json: run python examples/pin.py"
    check_pins(json.loads(pin.PINS.read_text()), pin.predict_clips())


@pytest.mark.skipif(not SHIPPED, reason=NO_SHIPPED)
def test_predict_examples_with_the_package_bundle(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    done = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "predict", str(EXAMPLES), "--csv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    files = [line for line in done.stdout.splitlines()[1:] if line.split(",")[1] == "all"]
    assert len(files) == len(list(EXAMPLES.glob("*.flac")))


def test_trnet_models_and_the_sha_check_load_no_torch() -> None:
    """Listing the bundles and checking their SHA-256 is file work: a first `trnet models` must
    not pay torch's import (seconds on a loaded machine)."""
    code = (
        "import sys, contextlib, io\n"
        "from trnet import pretrained\n"
        "from trnet.cli import main\n"
        "pretrained.resolve(None)\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['models']) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
