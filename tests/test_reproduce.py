"""`trnet reproduce`: a recipe runs end to end into tidy results, reruns recompute nothing,
and command-line subsets select exactly the asked runs. Tiny on purpose: a generated
folder corpus of tones, identity SE, 2 systems, 1 epoch, width 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from trnet.audio import save_audio
from trnet.cli import main
from trnet.enhance import Spec
from trnet.experiments.recipe import RecipeError, load_recipe, recipe_from_dict

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LABELS = ("angry", "happy", "neutral", "sad")
SNRS = (20, 0)

RECIPE = """
name = "tiny"
work = "work"
se = "identity"
train_noise = "hum"
seed = [1]
folds = [0]
systems = ["baseline-c", "trnet"]
epochs = 1
width = 2
snrs = [20, 0]

[corpus]
kind = "folder"
root = "corpus"

[noise.hum]
kind = "noise"
root = "noise/hum"

[noise.hiss]
kind = "noise"
root = "noise/hiss"
"""


def make_tree(root: Path) -> Path:
    """A 4-speaker, 2-session folder corpus (2 utterances per class and speaker; the class sets
    the pitch) and two noise folders of 4 sources each; returns the recipe path."""
    rng = np.random.default_rng(0)
    lines = ["file,label,speaker,session,gender"]
    for s, (speaker, gender) in enumerate((("a", "F"), ("b", "M"), ("c", "F"), ("d", "M"))):
        for k, label in enumerate(LABELS):
            for j in range(2):
                t = np.arange(int(rng.integers(12_000, 20_000))) / 16_000
                wave = 0.2 * np.sin(2 * np.pi * (120 + 60 * k + 5 * s) * t) * np.hanning(len(t))
                save_audio(root / "corpus" / f"{speaker}_{label}_{j}.wav", wave.astype(np.float32))
                lines.append(f"{speaker}_{label}_{j}.wav,{label},{speaker},{s // 2 + 1},{gender}")
    (root / "corpus" / "labels.csv").write_text("\n".join(lines) + "\n")
    for j in range(4):
        t = np.arange(32_000) / 16_000
        save_audio(
            root / "noise" / "hum" / f"h{j}.wav", (0.1 * np.sin(2 * np.pi * (50 + 10 * j) * t)).astype(np.float32)
        )
        save_audio(root / "noise" / "hiss" / f"s{j}.wav", (0.05 * rng.standard_normal(32_000)).astype(np.float32))
    recipe = root / "tiny.toml"
    recipe.write_text(RECIPE)
    return recipe


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, str]:
    """The recipe, run once; (recipe path, its output)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("reproduce")
    recipe = make_tree(root)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["reproduce", str(recipe), "--workers", "1", "--device", "cpu", "--threads", "1"]) == 0
    return recipe, buf.getvalue()


def test_results_are_complete_and_tidy(grid) -> None:
    recipe, output = grid
    results = recipe.parent / "work" / "results"
    rows = read_csv(results / "results.csv")
    assert list(rows[0]) == [
        "system",
        "fold",
        "seed",
        "test_speaker",
        "noise",
        "snr",
        "uar",
        "war",
        "mean_c",
        "c_std",
        "n",
    ]
    keys = [(r["system"], r["fold"], r["seed"], r["noise"], r["snr"]) for r in rows]
    expected = [(s, "0", "1", n, str(snr)) for s in ("baseline-c", "trnet") for n in ("hiss", "hum") for snr in SNRS]
    expected += [(s, "0", "1", "clean", "") for s in ("baseline-c", "trnet")]
    assert sorted(keys) == sorted(expected)  # one row per (system, fold, seed, noise, snr), no duplicates
    for r in rows:
        assert r["test_speaker"] == "a" and r["n"] == "8"  # fold 0 tests the first session's F speaker
        assert 0 <= float(r["uar"]) <= 1 and 0 <= float(r["war"]) <= 1
        assert (r["mean_c"] == "") == (r["c_std"] == "") == (r["system"] == "baseline-c")  # c: TRNet family only
    as_json = json.loads((results / "results.json").read_text())
    assert len(as_json) == len(rows)
    assert {(r["system"], r["noise"], r["snr"]) for r in as_json if r["noise"] == "clean"} == {
        ("baseline-c", "clean", None),
        ("trnet", "clean", None),
    }

    meta = json.loads((results / "meta.json").read_text())
    assert meta["se"] == "identity" and meta["se_options"] == {} and meta["train_noise"] == "hum" and meta["width"] == 2
    assert [(r["system"], r["fold"], r["seed"]) for r in meta["runs"]] == [("baseline-c", 0, 1), ("trnet", 0, 1)]
    runs = read_csv(results / "runs.csv")  # one row per run; rho of c vs SNR for the TRNet family
    assert [r["system"] for r in runs] == ["baseline-c", "trnet"]
    assert list(runs[0])[-3:] == ["rho", "rho_hiss", "rho_hum"]
    assert runs[0]["rho"] == "" and (runs[1]["rho"] == "" or -1 <= float(runs[1]["rho"]) <= 1)
    with np.load(results / "predictions" / "trnet" / "fold0-seed1.npz") as z:
        assert len(z["y_true"]) == 8 and len(z["ids"]) == 8
        for cond in ("clean", "hum@20", "hum@0", "hiss@20", "hiss@0"):
            assert z[f"pred__{cond}"].shape == z[f"c__{cond}"].shape == z[f"oracle__{cond}"].shape == (8,)
            assert 0 <= z[f"oracle__{cond}"].min() <= z[f"oracle__{cond}"].max() <= 1
        # h for Figure 3: clean and the training noise at 20/10/0 dB (those in the store)
        assert sorted(k for k in z.files if k.startswith("h__")) == ["h__clean", "h__hum@0", "h__hum@20"]
        assert z["h__clean"].shape == (8, 16)  # 8 x width
    assert (results / "report.md").is_file() and (results / "fig3_tsne.png").is_file()
    progress = [line for line in output.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and all("val UAR" in line and "test UAR" in line for line in progress)


def test_rerun_recomputes_nothing(grid, monkeypatch) -> None:
    import contextlib
    import io

    import trnet.experiments.evalcache
    import trnet.store.builder
    import trnet.training.trainer

    recipe, _ = grid
    work = recipe.parent / "work"
    files = sorted(p for p in (work / "runs").rglob("*") if p.is_file()) + sorted((work / "manifests").glob("*.csv"))
    before = {p: p.stat().st_mtime_ns for p in files}

    def forbidden(*args, **kwargs):
        raise AssertionError("a rerun must not recompute this")

    monkeypatch.setattr(trnet.training.trainer, "train_batches", forbidden)
    monkeypatch.setattr(trnet.experiments.evalcache, "predict_condition", forbidden)
    monkeypatch.setattr(trnet.store.builder, "process_chunk", forbidden)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["reproduce", str(recipe), "--workers", "1", "--device", "cpu", "--no-report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == before
    progress = [line for line in buf.getvalue().splitlines() if line.startswith("[")]
    assert len(progress) == 2 and all("trained before, evaluated before" in line for line in progress)


def test_subset_flags(grid) -> None:
    import contextlib
    import io

    recipe, _ = grid
    results = recipe.parent / "work" / "results"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["reproduce", str(recipe), "--systems", "trnet", "--no-report"]) == 0
    rows = read_csv(results / "results.csv")
    assert {r["system"] for r in rows} == {"trnet"} and len(rows) == 5
    assert not (results / "predictions" / "baseline-c" / "fold0-seed1.npz").exists()  # not part of this grid

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            main(["reproduce", str(recipe), "--systems", "baseline-c", "--folds", "1", "--no-report", "--threads", "1"])
            == 0
        )
    rows = read_csv(results / "results.csv")
    assert {(r["system"], r["fold"], r["test_speaker"]) for r in rows} == {("baseline-c", "1", "b")}
    assert "[1/1] baseline-c     fold  1" in buf.getvalue()
    assert main(["reproduce", str(recipe), "--folds", "7"]) == 2  # out of range: an error, not a crash


@pytest.mark.slow
def test_parallel_jobs_give_the_sequential_results(grid, tmp_path) -> None:
    """--jobs trains (fold, seed) groups in parallel processes; every run is seeded by
    itself, so the weights, and with them the results, equal the sequential ones."""
    import contextlib
    import io
    import shutil

    recipe, _ = grid
    results, logs = {}, {}
    for jobs, flags in (("1", ("--batch-runs", "2")), ("2", ("--batch-runs", "2")), ("2-alone", ())):
        root = tmp_path / f"jobs{jobs}"
        shutil.copytree(recipe.parent, root, ignore=shutil.ignore_patterns("work"))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert (
                main(
                    [
                        "reproduce",
                        str(root / "tiny.toml"),
                        "--folds",
                        "0,1",
                        "--jobs",
                        jobs[0],
                        "--workers",
                        "1",
                        "--threads",
                        "1",
                        "--no-report",
                        *flags,
                    ]
                )
                == 0
            )
        results[jobs] = sorted(read_csv(root / "work" / "results" / "results.csv"), key=str)
        logs[jobs] = buf.getvalue()
    assert "stacks of runs in 2 parallel processes" in logs["2"]  # runs of a system stacked
    assert "2 (fold, seed) groups in 2 parallel processes" in logs["2-alone"]  # the CPU's default
    # ... whose processes also evaluate their runs: nothing was evaluated before, and every run says so
    assert "evaluated before" not in logs["2-alone"] and logs["2-alone"].count(", evaluated ") == 2 * 2
    assert {r["fold"] for r in results["2"]} == {"0", "1"} and len(results["2"]) == 20
    assert results["1"] == results["2"]  # the stacks follow from the recipe, not from --jobs
    assert {r["fold"] for r in results["2-alone"]} == {"0", "1"} and len(results["2-alone"]) == 20


MINIMAL_RECIPE = {
    "name": "x",
    "work": "w",
    "train_noise": "n",
    "corpus": {"kind": "emodb", "root": "../data/emodb"},
    "noise": {"n": {"kind": "esc50", "root": "/abs/esc50"}},
}


def test_recipe_validation(tmp_path) -> None:
    base = dict(MINIMAL_RECIPE)
    r = recipe_from_dict(base, base=tmp_path, origin="test")
    assert r.corpus.root == (tmp_path.parent / "data" / "emodb").resolve()  # `../shared` style roots
    assert r.noise["n"].root == Path("/abs/esc50") and r.work == tmp_path / "w"
    assert r.systems[0] == "baseline-c" and len(r.systems) == 7 and r.folds is None and r.seeds == (1,)
    bad = [
        ({"epoch": 3}, "unknown key"),
        ({"train_noise": "musan"}, "train_noise"),
        ({"corpus": {"kind": "esc50", "root": "."}}, "kind"),
        ({"corpus": {"kind": "emodb", "root": ".", "subsets": ["x"]}}, "unknown option"),
        ({"systems": ["trnet", "nope"]}, "systems"),
        ({"seed": "one"}, "seed"),
    ]
    for change, message in bad:
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({**base, **change}, base=tmp_path, origin="test")


def test_command_line_subsets_override_the_recipe(tmp_path) -> None:
    """--folds/--seeds/--systems/--epochs replace the recipe's values, and bad values are recipe
    errors (one line, exit 2), never a crash."""
    from trnet.experiments.recipe import with_overrides

    r = recipe_from_dict({**MINIMAL_RECIPE, "seed": [1, 2, 3]}, base=tmp_path, origin="test")
    o = with_overrides(r, folds="0,2", seeds="2,1", systems="trnet,baseline-e", epochs=3)
    assert o.folds == (0, 2) and o.seeds == (2, 1) and o.epochs == 3
    assert o.systems == ("baseline-e", "trnet")  # the registry's order
    for flags, message in [
        ({"seeds": "1,1"}, "once"),
        ({"seeds": "x"}, "integers"),
        ({"seeds": "all"}, "integers"),
        ({"folds": "-1"}, "negative"),
        ({"epochs": 0}, "epochs"),
        ({"systems": "nope"}, "unknown"),
    ]:
        with pytest.raises(RecipeError, match=message):
            with_overrides(r, **flags)


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in RECIPES.glob("*.toml") if p.stem not in ("pretrained", "training-recipe"))
)
def test_every_shipped_study_recipe_parses(name: str) -> None:
    """Every study recipe in recipes/ loads (training_recipe included), with its declared analysis."""
    r = load_recipe(RECIPES / f"{name}.toml")
    assert r.systems and r.seeds and r.train_noise in r.noise
    if name.startswith("nemo-study-2"):  # the second edition trains on the pilot's chosen recipe
        assert r.epochs == 8 and r.levers["ema_warmup"] and r.levers["crop_s"] == 3.0


@pytest.mark.parametrize("name", ["iemocap", "emodb"])
def test_shipped_recipes_parse(name: str) -> None:
    r = load_recipe(RECIPES / f"{name}.toml")
    assert r.se == Spec("dfn3") and len(r.systems) == 7 and r.train_noise == "esc50"
    assert r.corpus.kind == name and len(r.noise) == 2
    if name == "emodb":  # its roots are the shared data, relative to the recipe file
        assert r.corpus.root == (RECIPES.parent.parent / "shared" / "data" / "emodb").resolve()
        assert r.noise["demand"].kind == "noise" and r.noise["demand"].root.name == "demand-vbd"
    else:
        assert r.folds is None and r.seeds == (1, 2, 3) and r.epochs == 80 and r.width == 32


def test_one_run_per_work_directory(grid) -> None:
    """A second run on the same work directory is refused while the first holds the lock."""
    import fcntl

    recipe, _ = grid
    with open(recipe.parent / "work" / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["reproduce", str(recipe), "--no-report"]) == 2


def test_train_only_then_evaluate_equals_one_uninterrupted_run(tmp_path, monkeypatch) -> None:
    """--train-only trains every run (done.json), evaluates nothing and writes no results; the
    same command without it then evaluates them, ending with the results of one plain run."""
    import contextlib
    import io

    import trnet.experiments.evalcache

    args = ["--workers", "1", "--device", "cpu", "--threads", "1", "--no-report"]
    plain, staged = make_tree(tmp_path / "plain"), make_tree(tmp_path / "staged")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["reproduce", str(plain), *args]) == 0

    def forbidden(*a, **k):
        raise AssertionError("--train-only must not evaluate")

    with monkeypatch.context() as m:
        m.setattr(trnet.experiments.evalcache, "predict_condition", forbidden)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["reproduce", str(staged), *args, "--train-only"]) == 0
    work = staged.parent / "work"
    done = sorted(p.parent.parts[-2:] for p in (work / "runs").rglob("done.json"))
    assert done == [("baseline-c", "fold0-seed1"), ("trnet", "fold0-seed1")]
    assert not list((work / "runs").rglob("eval")) and not (work / "results").exists()
    assert "nothing was evaluated" in buf.getvalue() and "without --train-only" in buf.getvalue()
    assert "test UAR" not in buf.getvalue()

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["reproduce", str(staged), *args]) == 0
    progress = [line for line in buf.getvalue().splitlines() if line.startswith("[")]
    assert len(progress) == 2 and all("trained before, evaluated " in line for line in progress)
    assert "evaluated before" not in buf.getvalue()
    mine, reference = (read_csv(r.parent / "work" / "results" / "results.csv") for r in (staged, plain))
    assert len(mine) == 10 and mine == reference
