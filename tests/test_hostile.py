"""Hostile input: names that try to leave their directory, unfinished or corrupt inputs used as
if fine, user mistakes that ended in a traceback, and what users see (docs/design.md §9).
Every case runs the real command line (in process, or in a subprocess where a
signal, a full disk or a C library's stderr is involved); nothing is mocked.

Each refused case asserts the user-error contract (exit 2, exactly one line on stderr, no
traceback) and that nothing outside the target changed: `Snapshot` records every file under
the test's folder (and a victim folder beside it) before, and compares after."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.test_faults import (
    ENV,
    TRNET,
    conditions_args,
    copy_run,
    folder_corpus,
    one_line_error,
    run_main,
    train_args,
)
from tests.test_predict import speech_like
from tests.test_store import make_corpus
from trnet.corpora import read_manifest, write_manifest
from trnet.enhance import Spec
from trnet.runs import read_log, save_training_state, write_log
from trnet.store import BuildSpec, ConditionStore, build
from trnet.utils import sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- helpers


class Snapshot:
    """Every file (and link) under some folders, with its content digest: `changed()` lists what
    was added, removed or modified since, except under the folders the command may write."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots
        self.before = self._take()

    def _take(self) -> dict[str, str]:
        out = {}
        for root in self.roots:
            for p in [root, *root.rglob("*")] if root.exists() else []:
                key = str(p)
                out[key] = (
                    "link:" + os.readlink(p)
                    if p.is_symlink()
                    else "dir"
                    if p.is_dir()
                    else sha256_file(p)
                    if p.is_file()
                    else "special"
                )  # a FIFO: never opened
        return out

    def changed(self, allowed: tuple[Path, ...] = ()) -> list[str]:
        after = self._take()
        keys = set(after) | set(self.before)
        diff = sorted(k for k in keys if after.get(k) != self.before.get(k))
        return [k for k in diff if not any(Path(k) == a or Path(k).is_relative_to(a) for a in allowed)]


def refused(capsys, args: list, watch: tuple[Path, ...], allowed: tuple[Path, ...] = ()) -> str:
    """Run the command: exit 2 with one line, and no file under `watch` changed (but `allowed`)."""
    snap = Snapshot(*watch)
    code, _, err = run_main(capsys, *args)
    line = one_line_error(code, err)
    assert not snap.changed(allowed), snap.changed(allowed)
    return line


def victim(tmp: Path) -> Path:
    """A user's folder beside the target, with a file that must survive everything."""
    folder = tmp / "victim"
    folder.mkdir(exist_ok=True)
    (folder / "assignment.csv").write_text("the user's own file\n")
    return folder


TINY = """name = "tiny"
work = "work"
se = "identity"
train_noise = "{noise}"
epochs = {epochs}
width = 4
snrs = {snrs}
{extra}
[corpus]
kind = "folder"
root = "{corpus}"
[noise."{noise}"]
kind = "noise"
root = "noise"
"""


def tiny_recipe(
    tmp: Path, extra: str = "", noise: str = "hiss", corpus: str = "corpus", snrs: str = "[10, 0]", epochs: str = "1"
) -> Path:
    """A recipe over a 4-speaker folder corpus and a noise folder (made here)."""
    if not (tmp / "corpus").exists():
        folder_corpus({}, tmp)
        (tmp / "noise").mkdir()
        sf.write(tmp / "noise" / "n.wav", 0.1 * np.random.default_rng(0).standard_normal(16_000), 16_000)
    (tmp / "r.toml").write_text(TINY.format(extra=extra, noise=noise, corpus=corpus, snrs=snrs, epochs=epochs))
    return tmp / "r.toml"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=4, per_speaker=4)


@pytest.fixture(scope="module")
def store(corpus, tmp_path_factory) -> Path:
    spec = BuildSpec(corpus=corpus[0], noise={"esc50": corpus[1]}, se=Spec("identity"), seed=1, snrs=(10, 0))
    return build(spec, tmp_path_factory.mktemp("store") / "store", quiet=True)


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert run_main_plain(train_args(store, runs)) == 0
    return runs / "baseline-n" / "fold0-seed1"


def run_main_plain(args: list) -> int:
    from trnet.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def ctx(corpus, store, finished) -> dict:
    return {"corpus": corpus, "store": store, "run": finished}


def copy_store(c: dict, tmp: Path) -> Path:
    shutil.copytree(c["store"], tmp / "store")
    return tmp / "store"


def unfinished_run(c: dict, tmp: Path) -> Path:
    """A run whose training was stopped after epoch 1: config, log, last.safetensors, no done.json."""
    from trnet.models import SERSystem
    from trnet.runs import load_run

    run = copy_run(c["run"], tmp / "runs" / "baseline-n" / "fold0-seed1")
    model, _ = load_run(run)
    save_training_state(run / "last.safetensors", model, torch.optim.Adam(SERSystem(model.cfg).parameters()), 1)
    (run / "done.json").unlink()
    return run


# --------------------------------------------------------------------------- 1-3: names and paths


def hostile_noise(name: str):
    def make(c: dict, tmp: Path) -> list:
        victim(tmp)
        args = conditions_args(c["corpus"][0], c["corpus"][1], tmp / "out" / "store")
        return [*args[:3], "--noise", f"{name}={c['corpus'][1]}", *args[5:]]

    return make


def hostile_ids(c: dict, tmp: Path) -> list:
    victim(tmp)
    rows = read_manifest(c["corpus"][0])
    rows[0]["id"] = "../../../../victim/evil"  # STORE/audio/clean/<id>.wav: four levels up is tmp/
    write_manifest(tmp / "evil.csv", rows, "utterances")
    return [*conditions_args(tmp / "evil.csv", c["corpus"][1], tmp / "out" / "store"), "--keep-audio"]


def hostile_system(c: dict, tmp: Path) -> list:
    (tmp / "cfg").mkdir()
    (tmp / "cfg" / "...toml").write_text((Path(__file__).parents[1] / "src/trnet/configs/baseline-n.toml").read_text())
    return [
        "train",
        "--config",
        tmp / "cfg" / "...toml",
        "--fold",
        "0",
        "--store",
        c["store"],
        "--out",
        tmp / "out" / "runs",
        "--epochs",
        "1",
        "--width",
        "4",
        "--quiet",
    ]


PATH_CASES: dict[str, Callable[[dict, Path], list]] = {
    "--noise ../../victim": hostile_noise("../../victim"),
    "--noise ..": hostile_noise(".."),
    "--noise .hidden": hostile_noise(".hidden"),
    "--noise a/b": hostile_noise("a/b"),
    "--noise with a newline": hostile_noise("a\nb"),
    "--noise named like a store folder": hostile_noise("chunks"),
    "manifest id ../ under --keep-audio": hostile_ids,
    "system name '..' (config ...toml)": hostile_system,
    "prepare --name ../x": lambda c, t: [
        "prepare",
        "folder",
        "--root",
        folder_corpus(c, t),
        "--out",
        t / "out",
        "--name",
        "../victim/x",
    ],
    'recipe [noise."../x"]': lambda c, t: ["reproduce", tiny_recipe(t, noise="../victim")],
}


@pytest.mark.parametrize("case", list(PATH_CASES))
def test_names_that_become_paths_are_refused_where_they_enter(case, ctx, tmp_path, capsys):
    args = PATH_CASES[case](ctx, tmp_path)
    refused(capsys, args, watch=(tmp_path,), allowed=(tmp_path / "out",))
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*")), case


def test_keep_audio_writes_inside_the_store_and_rebuild_removes_it(ctx, tmp_path, capsys):
    """The checked paths still do their job: --keep-audio writes audio/<condition>/<id>.wav,
    --rebuild removes those files and nothing of the user's."""
    root = tmp_path / "store"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, *conditions_args(*ctx["corpus"], root), "--keep-audio")
    assert code == 0, err
    ids = [r["id"] for r in read_manifest(ctx["corpus"][0])]
    assert sorted(p.stem for p in (root / "audio" / "clean").iterdir()) == sorted(ids)
    assert (root / "audio" / "esc50@0").is_dir()
    code, _, err = run_main(capsys, *conditions_args(*ctx["corpus"], root, seed=2), "--rebuild")
    assert code == 0, err
    assert not (root / "audio").exists() and (root / "notes.txt").read_text() == "mine"


def test_enhance_never_writes_over_its_input(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    sf.write(d / "talk.wav", speech_like(1.0), 16_000)
    (d / "sub").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(d / "talk.wav", tmp_path / "elsewhere" / "talk.wav")
    for out, inputs in (
        (d, [d / "talk.wav"]),
        (d / "sub" / "..", [d / "talk.wav"]),
        (tmp_path / "elsewhere", [tmp_path / "elsewhere" / "talk.wav"]),
    ):
        line = refused(capsys, ["enhance", "--se", "spectral", "--out", out, *inputs], watch=(tmp_path,))
        assert "overwrite the input" in line, line
    code, _, err = run_main(capsys, "enhance", "--se", "spectral", "--out", tmp_path / "new", d / "talk.wav")
    assert code == 0, err


def test_rebuild_deletes_nothing_outside_the_store(ctx, tmp_path, capsys):
    """A key.json whose noise name leads outside, an utterance id with ../ in utterances.csv, and
    a link planted in a store folder: --rebuild removes the store's own files only."""
    folder = victim(tmp_path)
    (folder / "x.wav").write_text("mine")
    root = tmp_path / "out" / "store"
    shutil.copytree(ctx["store"], root)
    key = json.loads((root / "key.json").read_text())
    (root / "key.json").write_text(json.dumps({**key, "noise": {"../../victim": key["noise"]["esc50"]}}))
    line = refused(
        capsys, [*conditions_args(*ctx["corpus"], root), "--rebuild"], watch=(folder,), allowed=(tmp_path / "out",)
    )
    assert "key.json" in line, line

    shutil.rmtree(root)
    shutil.copytree(ctx["store"], root)
    rows = read_manifest(root / "utterances.csv")
    rows[0]["id"] = "../../../../victim/x"  # STORE/audio/<condition>/<id>.wav
    write_manifest(root / "utterances.csv", rows, "utterances")
    (root / "clean" / "xs.f16").unlink()
    os.symlink(folder / "assignment.csv", root / "clean" / "xs.f16")
    line = refused(
        capsys, [*conditions_args(*ctx["corpus"], root), "--rebuild"], watch=(folder,), allowed=(tmp_path / "out",)
    )
    assert "outside" in line, line


# --------------------------------------------------------------------------- 4: corrupt stores


def garbage_in_store(c: dict, tmp: Path) -> Path:
    root = copy_store(c, tmp)
    data = np.memmap(root / "clean" / "xs.f16", dtype="float16", mode="r+")
    data[: len(data) // 3] = np.random.default_rng(0).uniform(-5, 5, len(data) // 3)  # finite garbage
    data.flush()
    return root


def truncated_store(c: dict, tmp: Path) -> Path:
    root = copy_store(c, tmp)
    with open(root / "esc50" / "0" / "xe.f16", "r+b") as f:
        f.truncate(12345)
    return root


def pickled_frames(c: dict, tmp: Path) -> Path:
    root = copy_store(c, tmp)
    np.save(root / "frames.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    return root


def damaged_frames(c: dict, tmp: Path) -> Path:
    root = copy_store(c, tmp)
    frames = np.load(root / "frames.npy")
    frames[3] += 1
    np.save(root / "frames.npy", frames)
    return root


STORE_CASES = {  # damage -> a word the one line must hold (the file it names)
    "finite garbage in clean/xs.f16": (garbage_in_store, "clean/xs.f16"),
    "truncated esc50/0/xe.f16": (truncated_store, "esc50/0/xe.f16"),
    "frames.npy holds a pickled object array": (pickled_frames, "frames.npy"),
    "frames.npy disagrees with the chunk markers": (damaged_frames, "frames.npy"),
}


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_a_damaged_store_is_refused_naming_the_file(case, ctx, tmp_path, capsys):
    make, name = STORE_CASES[case]
    root = make(ctx, tmp_path)
    line = refused(capsys, train_args(root, tmp_path / "runs"), watch=(root,), allowed=(tmp_path / "runs",))
    assert name in line, line
    assert not list(tmp_path.rglob("done.json")) and not list(tmp_path.rglob("config.json"))


def test_a_store_without_checksums_is_upgraded_once_not_rebuilt(ctx, tmp_path, capsys):
    """A store built before checksums (markers without them) still trains: its checksums are
    recorded once from its arrays, and its arrays and key are untouched."""
    root = copy_store(ctx, tmp_path)
    for marker in (root / "chunks").glob("*.json"):
        m = json.loads(marker.read_text())
        del m["checksums"]
        marker.write_text(json.dumps(m))
    arrays = {p: sha256_file(p) for p in root.rglob("*.f16")}
    key = (root / "key.json").read_text()
    code, _, err = run_main(capsys, *train_args(root, tmp_path / "runs"))
    assert code == 0, err
    assert all("checksums" in json.loads(m.read_text()) for m in (root / "chunks").glob("*.json"))
    assert arrays == {p: sha256_file(p) for p in root.rglob("*.f16")} and key == (root / "key.json").read_text()
    garbage = np.memmap(root / "clean" / "xs.f16", dtype="float16", mode="r+")
    garbage[:100] = 3.0
    garbage.flush()
    assert "clean/xs.f16" in one_line_error(*run_main(capsys, *train_args(root, tmp_path / "runs2"))[::2])


def test_a_verified_store_is_not_read_again_but_a_later_change_is_caught(ctx, tmp_path, capsys):
    root = copy_store(ctx, tmp_path)
    code, _, err = run_main(capsys, *train_args(root, tmp_path / "runs"))
    assert code == 0, err
    stamp = json.loads((root / "verified.json").read_text())
    assert "clean/xs.f16" in stamp["arrays"] and stamp["key"] == json.loads((root / "key.json").read_text())["hash"]
    path = root / "clean" / "xs.f16"
    before = path.stat()
    with open(path, "r+b") as f:  # the same size, and the old modification time put back
        f.seek(ROW, 0)
        f.write(np.random.default_rng(1).bytes(4096))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    line = one_line_error(*run_main(capsys, *train_args(root, tmp_path / "runs2"))[::2])
    assert "clean/xs.f16" in line and "utterances 0-7" in line, line


ROW = 500 * 80 * 2  # bytes of one utterance's features in a store array


# --------------------------------------------------------------------------- 5: unfinished runs


def test_predict_and_export_refuse_an_unfinished_run_unless_asked(ctx, tmp_path, capsys):
    run = unfinished_run(ctx, tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, speech_like(1.0), 16_000)
    for args in (
        ["predict", wav, "--model", run],
        ["export", "--model", run, "--format", "torchscript", "--out", tmp_path / "m.pt"],
    ):
        line = refused(capsys, args, watch=(tmp_path,))
        assert "done.json" in line and "--allow-unfinished" in line, line
        code, out, err = run_main(capsys, *args, "--allow-unfinished")
        assert code == 0, err
        assert "last.safetensors" in err and "epoch 1" in err, err
    assert (tmp_path / "m.pt").is_file()


# --------------------------------------------------------------------------- 6: duplicates


DUPLICATES = {
    "--folds 0,0": lambda t: ["reproduce", tiny_recipe(t), "--folds", "0,0"],
    "--seeds 1,1": lambda t: ["reproduce", tiny_recipe(t), "--seeds", "1,1"],
    "--systems trnet,trnet": lambda t: ["reproduce", tiny_recipe(t), "--systems", "trnet,trnet"],
    "recipe snrs = [10, 10]": lambda t: ["reproduce", tiny_recipe(t, snrs="[10, 10]")],
    "recipe seed = [1, 1]": lambda t: ["reproduce", tiny_recipe(t, "seed = [1, 1]")],
    "recipe folds = [0, 0]": lambda t: ["reproduce", tiny_recipe(t, "folds = [0, 0]")],
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicates_are_refused(case, tmp_path, capsys):
    args = DUPLICATES[case](tmp_path)
    line = refused(capsys, args, watch=(tmp_path,))
    assert "once" in line, line


def test_a_noise_name_given_twice_is_refused(ctx, tmp_path, capsys):
    other = tmp_path / "other.csv"
    shutil.copy(ctx["corpus"][1], other)
    args = conditions_args(*ctx["corpus"], tmp_path / "s")
    args[5:5] = ["--noise", f"esc50={other}"]
    line = refused(capsys, args, watch=(tmp_path,))
    assert "twice" in line, line


# --------------------------------------------------------------------------- 7: one odd file in a batch


def test_a_loud_file_is_skipped_on_its_own_and_the_batch_goes_on(ctx, tmp_path, capsys):
    files = [tmp_path / f"{k}.wav" for k in ("a", "b_loud", "c")]
    sf.write(files[0], speech_like(1.0, seed=1), 16_000)
    sf.write(files[1], speech_like(1.0, seed=2) * 1e18, 16_000, subtype="FLOAT")
    sf.write(files[2], speech_like(1.0, seed=3), 16_000)
    code, out, err = run_main(capsys, "predict", *files, "--model", ctx["run"], "--csv")
    assert code == 1, err
    assert "damaged" not in err and "weights" not in err and "Traceback" not in err, err
    assert [line for line in err.splitlines() if "b_loud" in line and "skipped" in line and "amplitude" in line]
    rows = [r for r in out.splitlines()[1:] if r.split(",")[1] == "all"]
    assert [r.split(",")[0] for r in rows] == [str(files[0]), str(files[2])]


def test_a_file_declared_below_4_khz_is_unreliable(ctx, tmp_path, capsys):
    path = tmp_path / "one_hz.wav"
    sf.write(path, speech_like(0.001, seed=1)[:8], 1)  # 8 frames "at 1 Hz": 8 s once resampled
    code, out, err = run_main(capsys, "predict", path, "--model", ctx["run"], "--json")
    assert code == 0, err
    result = json.loads(out)["results"][0]
    assert result["reliable"] is False and any("1 Hz" in w for w in result["warnings"]), result


# --------------------------------------------------------------------------- mistakes: one line, exit 2


def system_toml(tmp: Path, training: str) -> Path:
    base = (Path(__file__).parents[1] / "src/trnet/configs/baseline-n.toml").read_text()
    (tmp / "mine.toml").write_text(base + "\n[training]\n" + training + "\n")
    return tmp / "mine.toml"


def config_args(c: dict, tmp: Path, training: str) -> list:
    return [
        "train",
        "--config",
        system_toml(tmp, training),
        "--fold",
        "0",
        "--store",
        c["store"],
        "--out",
        tmp / "runs",
        "--epochs",
        "1",
        "--width",
        "4",
        "--quiet",
    ]


def garbage_checkpoint(tmp: Path) -> Path:
    (tmp / "ckpt").write_bytes(os.urandom(4096))
    return tmp / "ckpt"


def pickled_checkpoint(tmp: Path) -> Path:
    import pickle

    (tmp / "ckpt").write_bytes(pickle.dumps({"generator": os.getcwd}))
    return tmp / "ckpt"


def wav(tmp: Path) -> Path:
    sf.write(tmp / "a.wav", speech_like(1.0), 16_000)
    return tmp / "a.wav"


def labels_with(tmp: Path, path: str) -> Path:
    """A folder corpus whose labels.csv names `path` (a device or a FIFO) in its second row."""
    root = folder_corpus({}, tmp)
    lines = (root / "labels.csv").read_text().splitlines()
    lines.insert(2, f"{path},angry,spx,1,F")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def fifo_labels(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.wav")
    return labels_with(tmp, str(tmp / "pipe.wav"))


MISTAKES: dict[str, tuple[Callable[[dict, Path], list], str]] = {  # case -> (command, a word of its line)
    "[training] lr = nan": (lambda c, t: config_args(c, t, "lr = nan"), "lr"),
    "[training] lr = -0.1": (lambda c, t: config_args(c, t, "lr = -0.1"), "lr"),
    "[training] patience = 0": (lambda c, t: config_args(c, t, "patience = 0"), "patience"),
    "[training] epochs = true": (lambda c, t: config_args(c, t, "epochs = true"), "epochs"),
    "prepare folder --opt labels=...,bored": (
        lambda c, t: [
            "prepare",
            "folder",
            "--root",
            folder_corpus(c, t),
            "--opt",
            "labels=angry,happy,neutral,bored",
            "--out",
            t / "m",
        ],
        "bored",
    ),
    "train --device gpu": (lambda c, t: [*train_args(c["store"], t / "runs"), "--device", "gpu"], "--device"),
    "predict --device gpu": (lambda c, t: ["predict", wav(t), "--model", c["run"], "--device", "gpu"], "--device"),
    "enhance with a garbage CMGAN checkpoint": (
        lambda c, t: [
            "enhance",
            "--se",
            "cmgan",
            "--opt",
            f"checkpoint={garbage_checkpoint(t)}",
            "--out",
            t / "o",
            wav(t),
        ],
        "checkpoint",
    ),
    "enhance with a pickled CMGAN checkpoint": (
        lambda c, t: [
            "enhance",
            "--se",
            "cmgan",
            "--opt",
            f"checkpoint={pickled_checkpoint(t)}",
            "--out",
            t / "o",
            wav(t),
        ],
        "checkpoint",
    ),
    "conditions with a pickled CMGAN checkpoint": (
        lambda c, t: [
            *conditions_args(*c["corpus"], t / "s", se="cmgan"),
            "--opt",
            f"checkpoint={pickled_checkpoint(t)}",
        ],
        "checkpoint",
    ),
    "--snrs 1000": (
        lambda c, t: [*conditions_args(*c["corpus"], t / "s")[:-6], "--snrs", "1000", "--out", t / "s"],
        "1000",
    ),
    "--snrs -21": (
        lambda c, t: [*conditions_args(*c["corpus"], t / "s")[:-6], "--snrs", "-21", "--out", t / "s"],
        "-21",
    ),
    "recipe snrs = [1000]": (lambda c, t: ["reproduce", tiny_recipe(t, snrs="[1000]")], "1000"),
    "conditions --seed -1": (lambda c, t: conditions_args(*c["corpus"], t / "s", seed=-1), "seed"),
    "train --seed -1": (lambda c, t: [*train_args(c["store"], t / "runs"), "--seed", "-1"], "seed"),
    "reproduce --seeds -1": (lambda c, t: ["reproduce", tiny_recipe(t), "--seeds", "-1"], "seeds"),
    "recipe seed = -1": (lambda c, t: ["reproduce", tiny_recipe(t, "seed = -1")], "seed"),
    "an utterance manifest as --noise": (
        lambda c, t: conditions_args(c["corpus"][0], c["corpus"][0], t / "s"),
        "noise",
    ),
    "predict --window inf": (lambda c, t: ["predict", wav(t), "--model", c["run"], "--window", "inf"], "window"),
    "predict --window nan": (lambda c, t: ["predict", wav(t), "--model", c["run"], "--window", "nan"], "window"),
    "predict --hop inf": (lambda c, t: ["predict", wav(t), "--model", c["run"], "--hop", "inf"], "hop"),
    'recipe se_options = "fast"': (lambda c, t: ["reproduce", tiny_recipe(t, 'se_options = "fast"')], "se_options"),
    "recipe notes = 5": (lambda c, t: ["reproduce", tiny_recipe(t, "notes = 5")], "notes"),
    "recipe epochs = true": (lambda c, t: ["reproduce", tiny_recipe(t, epochs="true")], "epochs"),
    'recipe systems = "trnet"': (lambda c, t: ["reproduce", tiny_recipe(t, 'systems = "trnet"')], "list of"),
    "/dev/zero in labels.csv": (
        lambda c, t: ["prepare", "folder", "--root", labels_with(t, "/dev/zero"), "--out", t / "m"],
        "character device",
    ),
    "a FIFO in labels.csv": (lambda c, t: ["prepare", "folder", "--root", fifo_labels(t), "--out", t / "m"], "FIFO"),
    "a row of labels.csv twice": (
        lambda c, t: ["prepare", "folder", "--root", labels_with(t, "a1.wav"), "--out", t / "m"],
        "first at line 3",
    ),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_mistakes_are_one_line_and_write_nothing(case, ctx, tmp_path, capsys):
    make, word = MISTAKES[case]
    args = make(ctx, tmp_path)
    line = refused(capsys, args, watch=(tmp_path, ctx["store"], ctx["run"]))
    assert word in line, line
    assert "b'" not in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable CUDA device")
@pytest.mark.parametrize("command", ["train", "predict"])
def test_device_cuda_without_cuda_is_one_line(command, ctx, tmp_path, capsys):
    args = (
        [*train_args(ctx["store"], tmp_path / "runs"), "--device", "cuda"]
        if command == "train"
        else ["predict", wav(tmp_path), "--model", ctx["run"], "--device", "cuda"]
    )
    line = refused(capsys, args, watch=(tmp_path, ctx["store"], ctx["run"]))
    assert "--device cuda" in line, line


def test_a_corrected_setting_trains_after_a_refused_one(ctx, tmp_path, capsys):
    """lr = nan used to leave a config.json that blocked the corrected rerun."""
    one_line_error(*run_main(capsys, *config_args(ctx, tmp_path, "lr = nan"))[::2])
    code, _, err = run_main(capsys, *config_args(ctx, tmp_path, "lr = 0.001"))
    assert code == 0, err


def test_negative_snrs_stay_valid(ctx, tmp_path, capsys):
    code, _, err = run_main(
        capsys, *conditions_args(*ctx["corpus"], tmp_path / "s")[:-6], "--snrs", "0,-5", "--out", tmp_path / "s"
    )
    assert code == 0, err
    assert ConditionStore(tmp_path / "s").snrs == (0, -5)


def test_a_full_disk_at_checkpoint_write_is_one_line(ctx, tmp_path):
    if (
        not shutil.which("unshare")
        or subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode
    ):
        pytest.skip("needs unprivileged user + mount namespaces (unshare) for a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    args = " ".join(f"'{a}'" for a in train_args(ctx["store"], mnt / "runs"))
    shell = f"mount -t tmpfs -o size=96k tmpfs '{mnt}' && exec {sys.executable} -m trnet.cli {args}"
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = one_line_error(proc.returncode, proc.stderr)
    assert "No space left" in line and "safetensors" in line, line


# --------------------------------------------------------------------------- what users see


def test_junk_mp3_is_one_clean_line(ctx, tmp_path, capfd):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"ID3" + np.random.default_rng(0).bytes(5000))
    code = run_main_plain(["predict", junk, "--model", ctx["run"]])
    out, err = capfd.readouterr()
    assert code == 1
    noise = [
        line for line in err.splitlines() if "junk.mp3" not in line and not line.startswith("trnet predict: model")
    ]
    assert not noise, err  # nothing from mpg123
    assert "b'" not in err and "possibly a pipe" not in err, err


def test_silent_windows_are_marked_in_every_format(ctx, tmp_path, capsys):
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([speech_like(5.0), np.zeros(16_000 * 10, np.float32), speech_like(5.0)]), 16_000)
    outputs = {}
    for fmt in ("table", "csv", "json"):
        code, out, err = run_main(capsys, "predict", path, "--model", ctx["run"], *([f"--{fmt}"] * (fmt != "table")))
        assert code == 0, err
        outputs[fmt] = out
    silent = json.loads(outputs["json"])["results"][0]["windows"]  # 5 s windows every 2.5 s; 5-15 s is zeros
    assert [w["silent"] for w in silent] == [False, False, True, True, True, False, False], silent
    table = [line for line in outputs["table"].splitlines()[1:] if line.rstrip().endswith("digitally silent")]
    rows = [r for r in csv.DictReader(io.StringIO(outputs["csv"])) if r["window"] != "all"]
    assert len(table) == 3 and [r["warnings"] == "digitally silent" for r in rows] == [w["silent"] for w in silent]


def test_log_csv_epochs_stay_integers_after_a_resume(tmp_path):
    write_log(tmp_path, [{"epoch": 1, "loss": 1.0}])
    rows = read_log(tmp_path)  # a resume reads the log back (floats) and appends
    write_log(tmp_path, [*rows, {"epoch": 2, "loss": 0.5}])
    assert [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()] == ["epoch", "1", "2"]


@pytest.mark.slow
def test_log_csv_epochs_after_a_killed_and_resumed_training(ctx, tmp_path):
    cmd = [*TRNET, *train_args(ctx["store"], tmp_path, "--epochs", "3")]
    out = tmp_path / "baseline-n" / "fold0-seed1"
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "last.safetensors").exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    if (out / "done.json").exists():
        pytest.skip("training finished before it could be killed")
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()] == ["epoch", "1", "2", "3"]


@pytest.mark.slow
def test_sigterm_during_export_leaves_no_temp_file(ctx, tmp_path):
    out = tmp_path / "export" / "m.onnx"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [*TRNET, "export", "--model", str(ctx["run"]), "--format", "onnx", "--out", str(out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not list(out.parent.glob(".*.tmp")):
            assert proc.poll() is None, f"export ended before it could be stopped: {proc.stderr.read()}"
            assert time.time() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert code == 143, (code, proc.stderr.read())
    assert not list(out.parent.iterdir()), list(out.parent.iterdir())


@pytest.mark.parametrize("command", ["reproduce", "demo"])
def test_a_failed_run_leaves_no_lock_behind(command, tmp_path, capsys):
    if command == "reproduce":
        args = ["reproduce", tiny_recipe(tmp_path, corpus="no-such-corpus")]
        work = tmp_path / "work"
    else:
        args = ["demo", "--emodb", tmp_path / "no-such-emodb", "--se", "identity", "--quick", "--out", tmp_path / "d"]
        work = tmp_path / "d"
    one_line_error(*run_main(capsys, *args)[::2])
    assert not (work / ".lock").exists() and not work.exists(), list(work.rglob("*")) if work.exists() else None


def test_a_c_that_barely_moves_is_called_flat_not_monotone():
    """The report's c table (the demo's too): 0.365 -> 0.361 is "flat", not "monotone: yes"."""
    from trnet.report.results import Results
    from trnet.report.selection import FLAT_SPREAD, c_table, trend

    def rows(system: str, cs: list[float]) -> list[dict]:
        conds = [("clean", None), ("synth", 20), ("synth", 10), ("synth", 0)]
        return [
            {
                "system": system,
                "fold": 0,
                "seed": 1,
                "noise": n,
                "snr": snr,
                "uar": 0.5,
                "war": 0.5,
                "mean_c": c,
                "c_std": 0.1,
                "n": 10,
            }
            for (n, snr), c in zip(conds, cs, strict=False)
        ]

    res = Results(
        rows("trnet", [0.365, 0.364, 0.362, 0.361]) + rows("trnet-std", [0.9, 0.7, 0.5, 0.3]), {"noise": {"synth": {}}}
    )
    table = {line.split("|")[1].strip(): line for line in c_table(res).splitlines()[2:]}
    assert "| flat |" in table["TRNet"] and "| yes |" in table["TRNet-std"], table
    assert FLAT_SPREAD > 0.004 and trend([0.3, 0.6, 0.2]) == "no"
