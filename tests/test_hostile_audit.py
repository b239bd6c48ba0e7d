"""The 2026-12 hostile-input audit (docs/design.md §9): every case a hostile user found that lost
data, gave a silently wrong result, or ended in a traceback or a hang, as a row of a table over
the real command line. Each refused row asserts the user-error contract (exit 2, exactly one
line on stderr, no traceback), a word the line must hold, and that nothing under the test's
folder changed (`Snapshot`) but what the command may write. The cases that are handled (not
refused) are in tests/test_hostile_handled.py.

Fixtures are small on purpose: a random-weights bundle (`random_bundle`) stands in for a
trained model, a fabricated results directory (`fabricate`) for a study, so that no row trains."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf

from tests.bundle_fixtures import RECIPE, make_world, random_bundle
from tests.test_faults import conditions_args
from tests.test_hostile import Snapshot, refused, tiny_recipe
from tests.test_predict import speech_like
from tests.test_report import fabricate
from tests.test_store import make_corpus
from trnet.corpora import read_manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """Utterance and noise manifests: 4 speakers in 2 sessions, 10 noise recordings."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=4, per_speaker=2)


def bundle(t: Path, name: str = "test-model") -> Path:
    """A random-weights bundle (identity SE) under t/models: a model that loads in a second."""
    return random_bundle(t / "models", name=name)


def plain_run(t: Path) -> Path:
    """A bundle without its manifest: a finished run directory."""
    run = bundle(t)
    (run / "manifest.json").unlink()
    return run


def wav(t: Path, name: str = "a.wav") -> Path:
    sf.write(t / name, speech_like(1.0), 16_000)
    return t / name


def edit_json(path: Path, change: Callable[[object], object]) -> Path:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return path


# --------------------------------------------------------------------------- makers


def users_corpus(t: Path) -> Path:
    """A real corpus of the user's: speech, noise and labels.csv, and no synthetic.json."""
    root = t / "mine"
    for rel in ("speech/F01_angry_00.wav", "speech/take1.wav", "noise/rain/rain_00.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, speech_like(0.5), 16_000)
    (root / "labels.csv").write_text("file,label,speaker,session,gender\nspeech/take1.wav,angry,x,1,F\n")
    return root


def users_file(t: Path) -> Path:
    (t / "notes.txt").write_text("the user's own notes\n")
    return t / "notes.txt"


def bundle_recipe(t: Path, name: str) -> Path:
    (t / "world").mkdir()
    return make_world(t / "world", RECIPE.replace('name = "tiny-bundle"', f"name = {json.dumps(name)}"))


def runs_csv(t: Path, rows: list[tuple], name: str = "runs.csv") -> Path:
    """A runs.csv as `trnet reproduce` writes it: (system, fold, seed, test_speaker, val_uar) rows."""
    lines = ["system,fold,seed,test_speaker,val_uar"] + [",".join(map(str, r)) for r in rows]
    (t / name).parent.mkdir(parents=True, exist_ok=True)
    (t / name).write_text("\n".join(lines) + "\n")
    return t / name


STUDY = [("trnet", 0, 1, "s0", 0.5), ("trnet-std", 0, 1, "s0", 0.52), ("trnet", 1, 1, "s1", 0.5)]
STUDY += [("trnet-std", 1, 1, "s1", 0.53)]


def select(t: Path, *sources: str, alias: str = "best") -> list:
    return ["select", *sources, "--alias", alias, "--out", t / "out" / "selection.json"]


def results(t: Path, name: str = "results") -> Path:
    """A fabricated results directory: one system, one fold, one seed."""
    root = t / name
    root.mkdir()
    return fabricate(root, systems=("trnet",), folds=(0,), seeds=(1,))


def report(t: Path, *extra: str, res: Path | None = None) -> list:
    return ["report", res or results(t), "--out", t / "out", *extra]


def one_noise_recording(c: dict, t: Path) -> list:
    rows = read_manifest(c["corpus"][1])
    write_manifest(t / "one.csv", [r for r in rows if r["source"] == rows[0]["source"]], "noise")
    return conditions_args(c["corpus"][0], t / "one.csv", t / "out" / "store")


def spectral_recipe(t: Path, options: str = "", engine: str = "") -> list:
    path = tiny_recipe(t, f"se_options = {{ {options} }}" if options else "")
    text = path.read_text().replace('se = "identity"', 'se = "spectral"')
    path.write_text(text + (f"\n[engine]\n{engine}\n" if engine else ""))
    return ["reproduce", path]


def wide_recipe(t: Path) -> Path:
    path = tiny_recipe(t)
    path.write_text(path.read_text().replace("width = 4", "width = 100000"))
    return path


def enhance(t: Path, se: str, *opts: str) -> list:
    return ["enhance", "--se", se, *[a for o in opts for a in ("--opt", o)], "--out", t / "out", wav(t)]


# --------------------------------------------------------------------------- the table

# case -> (command maker, a word of its one line); a maker takes (fixtures, tmp) and may write
# its inputs under tmp; the command may write under tmp/out only, and must not there either.
CASES: dict[str, tuple[Callable[[dict, Path], list], str]] = {
    # A: would lose or damage data
    "A1 prepare synthetic into a user's corpus": (
        lambda c, t: ["prepare", "synthetic", "--root", users_corpus(t), "--out", t / "out"],
        "synthetic.json",
    ),
    "A2 bundle name __init__.py": (lambda c, t: ["bundle", bundle_recipe(t, "__init__.py")], "name"),
    "A2 bundle name _private": (lambda c, t: ["bundle", bundle_recipe(t, "_private")], "name"),
    "A2 bundle name model.py": (lambda c, t: ["bundle", bundle_recipe(t, "model.py")], ".py"),
    "A3 export over a file that is not an export": (
        lambda c, t: ["export", "--model", bundle(t), "--format", "onnx", "--out", users_file(t)],
        "--force",
    ),
    # B: silently wrong
    "B4 enhance spectral --opt smoothing=nan": (lambda c, t: enhance(t, "spectral", "smoothing=nan"), "smoothing"),
    "B4 enhance dfn3 --opt atten_lim_db=nan": (lambda c, t: enhance(t, "dfn3", "atten_lim_db=nan"), "atten_lim_db"),
    "B4 conditions --opt atten_lim_db=nan": (
        lambda c, t: [*conditions_args(*c["corpus"], t / "out" / "s", se="dfn3"), "--opt", "atten_lim_db=nan"],
        "atten_lim_db",
    ),
    "B4 predict --opt atten_lim_db=nan": (
        lambda c, t: ["predict", wav(t), "--model", bundle(t), "--se", "dfn3", "--opt", "atten_lim_db=nan"],
        "atten_lim_db",
    ),
    "B5 select: a second source repeats a cell": (
        lambda c, t: select(t, str(runs_csv(t, STUDY)), str(runs_csv(t, STUDY[1:2], "again.csv"))),
        "twice",
    ),
    "B5 select: a duplicate row": (lambda c, t: select(t, str(runs_csv(t, [*STUDY, STUDY[0]]))), "twice"),
    "B5 select: val_uar nan": (
        lambda c, t: select(t, str(runs_csv(t, [*STUDY[:3], ("trnet-std", 1, 1, "s1", "nan")]))),
        "val_uar",
    ),
    "B5 select: val_uar 7.5": (
        lambda c, t: select(t, str(runs_csv(t, [*STUDY[:3], ("trnet-std", 1, 1, "s1", 7.5)]))),
        "val_uar",
    ),
    "B6 report --also x=A --also x=B": (
        lambda c, t: report(t, "--also", f"x={results(t, 'a')}", "--also", f"x={results(t, 'b')}"),
        "twice",
    ),
    "B6 report --more A A (the same runs twice)": (
        lambda c, t: report(t, "--more", str(results(t, "a")), "--more", str(t / "a")),
        "a run counts once",
    ),
    "B6 report --more without --out": (
        lambda c, t: ["report", results(t, "a"), "--more", results(t, "b")],
        "give --out",
    ),
    # C: hangs and tracebacks
    "C8 predict --hop 0.000001": (lambda c, t: ["predict", wav(t), "--model", bundle(t), "--hop", "0.000001"], "hop"),
    "C10 conditions: 1 noise recording, 2 sessions": (one_noise_recording, "noise"),
    "C11 recipe window_s = nan": (lambda c, t: spectral_recipe(t, "window_s = nan"), "window_s"),
    "C11 recipe window_s = 1e9": (lambda c, t: spectral_recipe(t, "window_s = 1e9"), "window_s"),
    "C11 recipe [engine] num_cpus = nan": (
        lambda c, t: spectral_recipe(t, engine='kind = "ray"\nnum_cpus = nan'),
        "num_cpus",
    ),
    "C12 reproduce --threads -1": (lambda c, t: ["reproduce", tiny_recipe(t), "--threads", "-1"], "--threads"),
    "C12 bundle --threads -1": (lambda c, t: ["bundle", bundle_recipe(t, "ok"), "--threads", "-1"], "--threads"),
    "C13 bundle manifest: files are strings": (
        lambda c, t: [
            "predict",
            wav(t),
            "--model",
            edit_json(bundle(t) / "manifest.json", lambda m: {**m, "files": ["best.safetensors"]}).parent,
        ],
        "files",
    ),
    "C13 run: done.json is a list": (
        lambda c, t: ["predict", wav(t), "--model", edit_json(plain_run(t) / "done.json", lambda d: [d]).parent],
        "done.json",
    ),
    "C13 run: se_options is a list": (
        lambda c, t: [
            "predict",
            wav(t),
            "--model",
            edit_json(plain_run(t) / "config.json", lambda d: {**d, "se_options": ["x"]}).parent,
        ],
        "se_options",
    ),
    "C13 report: results.json is not JSON": (
        lambda c, t: report(t, res=(lambda r: ((r / "results.json").write_text("{oops"), r)[1])(results(t))),
        "results.json",
    ),
    "C13 report: meta.json is not JSON": (
        lambda c, t: report(t, res=(lambda r: ((r / "meta.json").write_text("[1,"), r)[1])(results(t))),
        "meta.json",
    ),
    "C13 report: rows without keys": (
        lambda c, t: report(
            t, res=(lambda r: (edit_json(r / "results.json", lambda rows: [{}, *rows]), r)[1])(results(t))
        ),
        "row 1",
    ),
    "C13 report: a row given twice": (
        lambda c, t: report(
            t, res=(lambda r: (edit_json(r / "results.json", lambda rows: [*rows, rows[0]]), r)[1])(results(t))
        ),
        "repeats",
    ),
    "C13 report: a truncated predictions npz": (lambda c, t: report(t, res=truncated_npz(t)), "fold0-seed1.npz"),
    "C13 select: a source that is not JSON": (
        lambda c, t: select(t, str((t / "s.json", (t / "s.json").write_text("{"))[0])),
        "s.json",
    ),
    "C13 select: a source that is a JSON list": (
        lambda c, t: select(t, str((t / "s.json", (t / "s.json").write_text("[]"))[0])),
        "s.json",
    ),
    "C13 select: a fold that is not an integer": (
        lambda c, t: select(t, str(runs_csv(t, [*STUDY, ("trnet", "x", 1, "s2", 0.5)]))),
        "fold",
    ),
    "C13 select: a val_uar that is not a number": (
        lambda c, t: select(t, str(runs_csv(t, [*STUDY[:3], ("trnet-std", 1, 1, "s1", "high")]))),
        "val_uar",
    ),
    "C13 select: --out without aliases": (
        lambda c, t: [
            "select",
            str(runs_csv(t, STUDY)),
            "--alias",
            "best",
            "--out",
            (t / "sel.json", (t / "sel.json").write_text('{"format": 1}'))[0],
        ],
        "aliases",
    ),
    # D: what users see
    "D15 --model a misspelled bundle name": (
        lambda c, t: ["predict", wav(t), "--model", (bundle(t), "test-modle")[1]],
        "test-model",
    ),
    "D16 a tag with |": (lambda c, t: report(t, "--also", f"a|b={results(t, 'a')}"), "tag"),
    "D16 a tag with a newline": (lambda c, t: report(t, "--also", f"a\nb={results(t, 'a')}"), "tag"),
    "D16 select --alias ''": (lambda c, t: select(t, str(runs_csv(t, STUDY)), alias=""), "--alias"),
    "D17 spectral window_s=-1.5": (lambda c, t: enhance(t, "spectral", "window_s=-1.5"), "window_s"),
    "D17 spectral smoothing=7": (lambda c, t: enhance(t, "spectral", "smoothing=7"), "smoothing"),
    "D17 num_gpus on the local engine": (lambda c, t: spectral_recipe(t, engine="num_gpus = 1"), "Ray"),
    "D18 a reordered label list": (
        lambda c, t: [
            "predict",
            wav(t),
            "--model",
            edit_json(bundle(t) / "manifest.json", lambda m: {**m, "labels": m["labels"][::-1]}).parent,
        ],
        "labels",
    ),
    # found beside the audit: a width that asks for a terabyte
    "train --width 100000": (lambda c, t: ["complexity", "--width", "100000"], "width"),
    "recipe width = 100000": (lambda c, t: ["reproduce", wide_recipe(t)], "width"),
}

NEEDS_CORPUS = {"B4 conditions --opt atten_lim_db=nan", "C10 conditions: 1 noise recording, 2 sessions"}


def truncated_npz(t: Path) -> Path:
    res = results(t)
    npz = res / "predictions" / "trnet" / "fold0-seed1.npz"
    with open(npz, "r+b") as f:
        f.truncate(npz.stat().st_size // 2)
    return res


@pytest.mark.parametrize("case", list(CASES))
def test_the_audit_cases_are_refused_in_one_line(case, request, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRNET_MODELS", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    fixtures = {"corpus": request.getfixturevalue("corpus")} if case in NEEDS_CORPUS else {}
    if "dfn3" in case:
        from trnet import enhance as se

        if se.unavailable_reason("dfn3"):
            pytest.skip(f"dfn3 cannot run here: {se.unavailable_reason('dfn3')}")
    make, word = CASES[case]
    args = make(fixtures, tmp_path)
    watch = (tmp_path, *[p.parent for p in fixtures.get("corpus", ())])
    line = refused(capsys, args, watch=watch, allowed=(tmp_path / "out",))
    assert word in line, line
    out = tmp_path / "out"  # the store's lock file may stay (an empty file that is the lock)
    if "truncated predictions" in case:
        return  # the report's figures before that run's are its own output, in its own folder
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"], case


def test_a_bundle_cannot_be_installed_over_a_package_file(tmp_path):
    """Install's own check, below the recipe's: a bundle whose manifest names __init__.py."""
    from trnet.bundle.publish import install
    from trnet.pretrained import BundleError

    good = random_bundle(tmp_path / "b", name="x")
    edit_json(good / "manifest.json", lambda m: {**m, "name": "__init__.py"})
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("# the package\n")
    snap = Snapshot(package)
    with pytest.raises(BundleError, match="__init__.py"):
        install(good, into=package)
    assert not snap.changed()
    os.remove(package / "__init__.py")
    (package / "x").write_text("a file, not a bundle")
    edit_json(good / "manifest.json", lambda m: {**m, "name": "x"})
    with pytest.raises(Exception, match="not a bundle"):
        install(good, into=package)
    assert (package / "x").read_text() == "a file, not a bundle"


def test_nan_and_inf_are_refused_for_every_numeric_option():
    """The one validator (trnet.options.Number) over every option that declares a number."""
    import dataclasses

    from trnet.corpora import LOADERS
    from trnet.enhance import BACKENDS, _backend_class
    from trnet.options import OptionError, check

    checked = 0
    types = [LOADERS[k].Options for k in LOADERS]
    for name in BACKENDS:
        try:
            types.append(_backend_class(name).Options)
        except ImportError:
            continue
    for options_type in types:
        for f in dataclasses.fields(options_type):
            hint = str(f.type)
            if ("float" in hint or "int" in hint) and "list" not in hint:
                for bad in (float("nan"), float("inf"), -float("inf")):
                    with pytest.raises(OptionError, match=f.name):
                        check(options_type, {f.name: bad}, "test")
                    checked += 1
    assert checked >= 30, checked


def test_a_system_config_refuses_nan_weights():
    from dataclasses import replace

    from trnet.models import load_config

    for key in ("alpha", "beta"):
        with pytest.raises(ValueError, match="alpha and beta"):
            replace(load_config("trnet"), **{key: float("nan")})
