"""The 2026-12 hostile-input audit, continued (docs/design.md §9): the cases whose fix is correct
handling rather than a refusal (a FIFO among predict's inputs, a full disk, a damaged cache or
bundle, export into a folder), one row each, over the real command line where one exists. The
refused cases are the table in tests/test_hostile_audit.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.bundle_fixtures import random_bundle
from tests.test_faults import ENV, conditions_args, one_line_error, run_main
from tests.test_hostile import Snapshot
from tests.test_hostile_audit import STUDY, corpus, edit_json, one_noise_recording, runs_csv, wav  # noqa: F401
from trnet.enhance import Spec
from trnet.store import BuildSpec, ConditionStore, build

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """$TRNET_MODELS holding one random-weights bundle, the default (identity SE)."""
    folder = tmp_path / "models"
    random_bundle(folder)
    monkeypatch.setenv("TRNET_MODELS", str(folder))
    return folder


# --------------------------------------------------------------------------- A3, D16, D19: export


def test_export_replaces_its_own_output_and_a_file_only_with_force(models, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    for _ in range(2):  # the second replaces trnet's own export without --force
        code, _, err = run_main(capsys, "export", "--format", "onnx", "--out", out)
        assert code == 0, err
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"not a model of trnet's")
    assert "--force" in one_line_error(*run_main(capsys, "export", "--format", "onnx", "--out", mine)[::2])
    assert mine.read_bytes() == b"not a model of trnet's"
    code, _, err = run_main(capsys, "export", "--format", "torchscript", "--out", mine, "--force")
    assert code == 0 and mine.read_bytes() != b"not a model of trnet's", err


def test_export_into_a_folder_names_the_file_after_the_model(models, tmp_path, capsys):
    code, out, err = run_main(capsys, "export", "--format", "onnx", "--out", f"{tmp_path / 'newdir'}/")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "newdir").iterdir()] == ["test-model.onnx"], out


def test_the_export_check_covers_c(models, tmp_path, capsys, monkeypatch):
    """An export whose c drifts from PyTorch's is refused, even with exact logits."""
    import trnet.export as export

    true_run = export.run_onnx
    monkeypatch.setattr(export, "run_onnx", lambda *a: (true_run(*a)[0], true_run(*a)[1] + 1e-3))
    line = one_line_error(*run_main(capsys, "export", "--format", "onnx", "--out", tmp_path / "m.onnx")[::2])
    assert "delta c" in line and not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*.tmp")), line
    nan = float("nan")
    assert export.c_delta(torch.tensor([nan, 0.5]), torch.tensor([nan, 0.5])) == 0.0  # no c: NaN on both sides
    assert export.c_delta(torch.tensor([0.5]), torch.tensor([nan])) == float("inf")


# --------------------------------------------------------------------------- C9: a full disk


def full_disk(monkeypatch) -> None:
    """Every file trnet writes through Path.write_bytes (exports, WAVs) meets a full disk."""

    def no_space(self, data):
        with open(self, "wb") as f:  # a little lands, as on a real disk, then the error
            f.write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", no_space)


@pytest.mark.parametrize("command", ["export onnx", "export torchscript", "enhance"])
def test_a_full_disk_is_one_line_and_leaves_no_temp_file(command, models, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    source = wav(tmp_path)
    full_disk(monkeypatch)
    if command == "enhance":
        args = ["enhance", "--se", "spectral", "--out", out, source]
    else:
        args = ["export", "--format", command.split()[1], "--out", out / "m.bin"]
    code, _, err = run_main(capsys, *args)
    if command == "enhance":  # its first line names the back-end's version, as always
        err = "\n".join(err.splitlines()[1:])
    line = one_line_error(code, err)
    assert "No space left" in line and str(out) in line, line
    assert not list(out.iterdir()), list(out.iterdir())


def test_a_full_tmpfs_is_one_line_for_torchscript_export(models, tmp_path):
    """The real thing where a mount namespace can be made: a 64 KiB tmpfs (the 600 KB export
    used to abort in the C++ writer with a stack dump and leave its temp file)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            break
    else:
        pytest.skip("needs a mount namespace (unshare) for a small tmpfs")
    cmd = f"{sys.executable} -m trnet.cli export --format torchscript --out '{mnt}/m.pt'"
    shell = f"mount -t tmpfs -o size=64k tmpfs '{mnt}' && {cmd}; code=$?; ls -A '{mnt}' >&2; exit $code"
    env = {**ENV, "TRNET_MODELS": str(models)}
    proc = subprocess.run([*prefix, "sh", "-c", shell], env=env, capture_output=True, text=True, timeout=300)
    if "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    line = one_line_error(proc.returncode, proc.stderr)  # `ls -A` printed nothing: no temp file left
    assert "No space left" in line, line


# --------------------------------------------------------------------------- C7, C8: predict's inputs


def test_a_fifo_among_the_inputs_does_not_hang_predict(models, tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    good = wav(tmp_path, "good.wav")
    proc = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "predict", str(tmp_path / "pipe.wav"), str(good), "--csv"],
        env={**ENV, "TRNET_MODELS": str(models)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "pipe.wav" in proc.stderr and "FIFO" in proc.stderr, proc.stderr
    assert str(good) in proc.stdout


def test_a_header_claiming_1_hz_is_skipped_before_it_is_upsampled(models, tmp_path, capsys):
    path = tmp_path / "one_hz.wav"
    sf.write(path, np.zeros(20_000, np.float32), 1)  # 20,000 s once read at 16 kHz
    code, _, err = run_main(capsys, "predict", path, wav(tmp_path))
    assert code == 1 and "one_hz.wav" in err and "check its header" in err and "Traceback" not in err, err
    from trnet.audio import AudioError
    from trnet.predict import load

    predictor = load()
    with pytest.raises(AudioError, match="sample_rate"):
        predictor.predict(np.zeros(16_000, np.float32), True)  # a bool is not a sample rate
    with pytest.raises(AudioError, match="check its header"):
        predictor.predict(np.zeros(16_000, np.float32), 1)


# --------------------------------------------------------------------------- C10: a failed build


def test_a_corrected_conditions_rerun_after_a_failed_build(corpus, tmp_path, capsys):  # noqa: F811
    args = one_noise_recording({"corpus": corpus}, tmp_path)
    assert "noise" in one_line_error(*run_main(capsys, *args)[::2])
    code, _, err = run_main(capsys, *conditions_args(*corpus, tmp_path / "out" / "store"))
    assert code == 0, err


# --------------------------------------------------------------------------- C13: damaged caches


@pytest.fixture
def store_and_run(corpus, tmp_path) -> tuple[ConditionStore, Path]:  # noqa: F811
    spec = BuildSpec(corpus=corpus[0], noise={"esc50": corpus[1]}, se=Spec("identity"), seed=1, snrs=(10,))
    store = ConditionStore(build(spec, tmp_path / "store", quiet=True))
    run = random_bundle(tmp_path / "runs", name="run")
    (run / "manifest.json").unlink()
    return store, run


@pytest.mark.parametrize("damage", ["eval json not JSON", "eval json a list", "eval npz truncated"])
def test_a_damaged_evaluation_cache_is_computed_again(damage, store_and_run, capsys):
    from trnet.experiments.evalcache import evaluate_run

    store, run = store_and_run
    first = evaluate_run(run, store, 0, "trnet-std-snr", "esc50", "cpu")
    (json_path,) = (run / "eval").glob("*.json")
    if damage == "eval npz truncated":
        with open(first.predictions, "r+b") as f:
            f.truncate(100)
    else:
        json_path.write_text("{" if "not JSON" in damage else "[]")
    capsys.readouterr()
    again = evaluate_run(run, store, 0, "trnet-std-snr", "esc50", "cpu")
    assert not again.cached and again.conditions == first.conditions
    assert "damaged cached result" in capsys.readouterr().err
    assert evaluate_run(run, store, 0, "trnet-std-snr", "esc50", "cpu").cached  # and whole again


def test_a_damaged_transfer_cache_is_computed_again(store_and_run, capsys):
    from trnet.bundle.transfer import evaluate_transfer

    store, run = store_and_run
    first = evaluate_transfer(run, store)
    (json_path,) = (run / "transfer").glob("*.json")
    json_path.write_text('"half')
    capsys.readouterr()
    again = evaluate_transfer(run, store)
    assert not again["cached"] and again["conditions"] == first["conditions"]
    assert "damaged cached result" in capsys.readouterr().err


# --------------------------------------------------------------------------- C13, C14: bundles


def test_one_damaged_bundle_beside_a_good_default(models, tmp_path, capsys):
    broken = random_bundle(models, name="broken")
    (broken / "manifest.json").write_text("{not json")
    other = random_bundle(models, name="other")
    edit_json(other / "manifest.json", lambda m: {**m, "default": False, "files": {"best.safetensors": "x"}})
    snap = Snapshot(models)
    code, out, err = run_main(capsys, "models")
    assert code == 0 and out.count("DAMAGED") == 2 and "test-model  (the default" in out, out + err
    code, out, err = run_main(capsys, "models", "--json")
    assert code == 0 and {m["name"]: m["verified"][:7] for m in json.loads(out)["models"]} == {
        "test-model": "ok",
        "broken": "DAMAGED",
        "other": "DAMAGED",
    }
    code, out, err = run_main(capsys, "predict", wav(tmp_path))
    assert code == 0 and "test-model" in err, err
    assert "broken" in one_line_error(*run_main(capsys, "predict", wav(tmp_path), "--model", "broken")[::2])
    assert not snap.changed()


def test_a_metric_that_is_not_a_number_does_not_stop_predict(models, tmp_path, capsys):
    loco = {"train": "aa", "test": "bb", "system": "trnet-std-snr", "rho": {"mean": "high"}}
    edit_json(models / "test-model" / "manifest.json", lambda m: {**m, "metrics": {"leave_one_corpus_out": [loco]}})
    code, _, err = run_main(capsys, "predict", wav(tmp_path))
    assert code == 0 and "Traceback" not in err, err


# --------------------------------------------------------------------------- A1, B5: sources and corpora


def test_a_source_folder_named_with_an_equals_sign_is_a_path(tmp_path, capsys):
    runs_csv(tmp_path, STUDY, "a=b/runs.csv")
    code, out, err = run_main(capsys, "select", tmp_path / "a=b", "--alias", "best")
    assert code == 0 and json.loads(out)["best"]["studies"][0]["tag"] is None, err


def test_prepare_synthetic_regenerates_its_own_folder_and_keeps_the_users_files(tmp_path, capsys):
    root = tmp_path / "syn"
    opts = ["--opt", "n_speakers=2", "--opt", "utts_per_class=1", "--opt", "duration=0.5,0.6"]
    assert run_main(capsys, "prepare", "synthetic", "--root", root, "--out", tmp_path / "m", *opts)[0] == 0
    (root / "speech" / "my_take.wav").write_bytes(b"mine")
    code, _, err = run_main(
        capsys, "prepare", "synthetic", "--root", root, "--out", tmp_path / "m", *opts, "--opt", "seed=3"
    )
    assert code == 0, err
    assert (root / "speech" / "my_take.wav").read_bytes() == b"mine"
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 3
