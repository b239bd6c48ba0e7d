"""Building the bundled model (`trnet bundle`, trnet.bundle): combined corpora, the split with
no test speaker, several training noises, leave-one-corpus-out evaluation on every utterance
of the other corpus, the bundle and its manifest, the card, reruns that recompute nothing,
and a kill -9 in the middle. On a tiny generated two-corpus world (tests/bundle_fixtures.py),
identity SE, width 2, 1 epoch."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.bundle_fixtures import RECIPE, make_world
from trnet import configs, runs
from trnet.batches import condition_set
from trnet.bundle import card, plan, publish, results
from trnet.bundle.recipe import BundleRecipeError, load_bundle_recipe
from trnet.corpora import CorpusError
from trnet.corpora.combined import combine, part_of, parts
from trnet.pretrained import NO_C, Bundle, c_note, read_manifest
from trnet.protocol.folds import Holdout, split
from trnet.protocol.holdout import corpus_holdout
from trnet.runs import RunError
from trnet.store import ConditionStore
from trnet.training.trainer import train

ROW = {"path": "x.wav", "label": "sad", "gender": "F", "duration": 1.0}


def test_combine_prefixes_ids_speakers_and_sessions() -> None:
    a = [{**ROW, "id": "u1", "speaker": "03", "session": "1"}]
    b = [{**ROW, "id": "u1", "speaker": "03", "session": "03"}]  # the same ids in another corpus
    rows = combine({"emodb": a, "nemo": b})
    assert [(r["id"], r["speaker"], r["session"]) for r in rows] == [
        ("emodb-u1", "emodb-03", "emodb-1"),
        ("nemo-u1", "nemo-03", "nemo-03"),
    ]
    assert part_of("nemo-IC0") == "nemo" and list(parts(rows)) == ["emodb", "nemo"]
    with pytest.raises(CorpusError, match="twice"):
        combine({"emodb": a + a})
    with pytest.raises(CorpusError, match="lower-case"):
        combine({"Emo-DB": a})
    with pytest.raises(CorpusError, match="no corpus prefix"):
        part_of("03")


def test_holdout_one_validation_speaker_per_corpus_and_no_test_rows(tmp_path: Path) -> None:
    recipe = load_bundle_recipe(make_world(tmp_path))
    from trnet import corpora

    rows = combine({n: corpora.load(s.kind, s.root, "utterances", **s.options).rows for n, s in recipe.corpora.items()})
    holdout = corpus_holdout(rows)
    # aa: sessions pair (a F, b M): fold 0 tests a, validates b; bb (nEMO layout, F before M):
    # XA0 tested, ZC0 (the next female) validates
    assert holdout.val_speakers == ("aa-b", "bb-ZC0")
    assert set(holdout.train_speakers) == {"aa-a", "aa-c", "aa-d", "bb-XA0", "bb-YB0"}
    s = split(rows, holdout)
    assert len(s.test) == 0 and len(s.train) + len(s.val) == len(rows)
    assert s.speakers() == {
        "test_speaker": None,
        "val_speakers": ["aa-b", "bb-ZC0"],
        "train_speakers": list(holdout.train_speakers),
    }
    with pytest.raises(ValueError, match="not in the corpus"):
        split(rows, Holdout("holdout", ("aa-zz",), holdout.train_speakers))


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    path = make_world(tmp_path)
    for old, new, message in (
        ('loco_train_noise = ["hum"]', 'loco_train_noise = ["hum", "hiss"]', "never heard"),
        ('system = "trnet-std-snr"', 'system = "baseline-c"', "clean speech only"),
        ("width = 2", "width = 0", "width"),
        ("seed = 1", "seeds = 1", "unknown key"),
        ('"bb->aa" = 99.0', '"bb->cc" = 99.0', "two corpora of this recipe"),
        ('"bb->aa" = 99.0', '"bb aa" = 99.0', "TRAIN -> TEST"),
        ('"aa -> bb" = 1.0', '"aa -> bb" = 0', "a UAR in %"),
    ):
        path.write_text(RECIPE.replace(old, new))
        with pytest.raises(BundleRecipeError, match=message):
            load_bundle_recipe(path)
    one = RECIPE.split("[loco_targets]")[0] + "[corpora.aa]" + RECIPE.split("[corpora.aa]")[1]
    one = one.split("[corpora.bb]")[0] + "[noise.hum]" + one.split("[noise.hum]")[1]
    path.write_text(one)
    assert load_bundle_recipe(path).loco == []  # a single corpus: nothing to hold out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny recipe built once by `trnet bundle` (no measurement); (recipe, its output)."""
    root = tmp_path_factory.mktemp("bundle")
    recipe = make_world(root)
    cmd = [sys.executable, "-m", "trnet.cli", "bundle", str(recipe), "--workers", "1", "--threads", "1", "--no-measure"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stores = subprocess.run([*cmd, "--stores-only"], capture_output=True, text=True, timeout=600, env=env)
    assert stores.returncode == 0, stores.stderr[-3000:]  # the stores first, nothing trained ...
    assert (root / "work" / "stores" / "final" / "summary.json").is_file() and not (root / "work" / "runs").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)  # ... then the rest
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stores" in done.stdout
    return recipe, done.stdout


@pytest.mark.slow
def test_bundle_end_to_end(built: tuple[Path, str]) -> None:
    recipe_path, out = built
    recipe = load_bundle_recipe(recipe_path)
    work = recipe.work
    for n in range(1, 9):
        assert f"== {n}/8 " in out
    # the shipped model: both corpora, both noises, the holdout split recorded in config.json
    final = plan.run_spec(recipe, plan.groups(recipe)[0], recipe.system, "cpu").dir
    config = runs.read_config(final)
    assert config["fold"] == "holdout" and config["test_speaker"] is None
    assert config["val_speakers"] == ["aa-b", "bb-ZC0"] and config["train_noise"] == ["hum", "hiss"]
    assert config["train_conditions"] == ["clean", "hum@20", "hum@0", "hiss@20", "hiss@0"]
    # the LOCO runs never heard the test noise, and were tested on every utterance of the other corpus
    loco = list(csv.DictReader((work / "results" / "loco.csv").open()))
    assert {(r["train"], r["test"], r["system"]) for r in loco} == {
        ("aa", "bb", "trnet-std-snr"),
        ("aa", "bb", "baseline-e"),
        ("bb", "aa", "trnet-std-snr"),
        ("bb", "aa", "baseline-e"),
    }
    assert {r["noise"] for r in loco} == {"clean", "hiss"} and {r["snr"] for r in loco} == {"", "20", "0", "-5"}
    assert {int(r["n"]) for r in loco if r["test"] == "bb"} == {24} and {
        int(r["n"]) for r in loco if r["test"] == "aa"
    } == {32}
    for group in plan.groups(recipe)[1:]:
        assert runs.read_config(plan.run_spec(recipe, group, recipe.system, "cpu").dir)["train_noise"] == ["hum"]
    # the bundle: verified, with its provenance
    bundle = Bundle(work / "bundle" / recipe.name, read_manifest(work / "bundle" / recipe.name)).verify()
    m = bundle.manifest
    assert m["placeholder"] and m["system"] == "trnet-std-snr" and m["width"] == 2
    assert [d["name"] for d in m["training_data"]] == ["aa", "bb"] and m["training_data"][1][
        "validation_speaker"
    ] == "bb-ZC0"
    assert [n["name"] for n in m["noise"]] == ["hum", "hiss"] and m["recipe"]["table"]["name"] == recipe.name
    assert "/" not in runs.read_config(bundle.path)["store"].split(" ")[0].removeprefix("stores/")
    # installing: a copy that verifies; a placeholder never goes into the package's own data
    installed = publish.install(bundle.path, into=work / "installed")
    assert Bundle(installed, read_manifest(installed)).verify().name == recipe.name
    with pytest.raises(BundleRecipeError, match="placeholder"):
        publish.install(bundle.path)
    # the card fragment names both directions and the targets
    fragment = (work / "card" / "results.md").read_text()
    assert fragment.startswith(card.BEGIN) and "| aa → bb | baseline-e |" in fragment and "**Targets**" in fragment
    assert "target ≥ 1.0: **met**" in fragment and "target ≥ 99.0: **NOT met**" in fragment
    assert "**trnet-std-snr − baseline-e** (points, paired by seed" in fragment
    assert "WAR disagrees with UAR" in fragment or "WAR and UAR agree in sign" in fragment
    assert "| silence | white noise | hiss alone |" in fragment and "trained towards clip(SNR / 25 dB" in fragment
    # two LOCO seeds: a 95 % interval over seeds, the paired difference, and c without speech
    summary = json.loads((work / "results" / "summary.json").read_text())
    mine = [r for r in summary["loco"] if r["system"] == "trnet-std-snr"]
    assert all(r["seeds"] == [1, 2] and len(r["noisy_uar_0_20"]["ci"]) == 2 for r in mine)
    assert all(set(r["nonspeech"]) == {"silence", "white", "noise"} for r in mine)
    assert all(r["nonspeech"] is None for r in summary["loco"] if r["system"] == "baseline-e")
    assert [d["seeds"] for d in summary["loco_differences"]] == [[1, 2], [1, 2]]
    assert m["metrics"]["c_training"] == "snr" and "silence" in c_note(bundle.path)
    assert "PLACEHOLDER" in fragment and (work / "bundle.log").read_text().count("== 3/8 train") >= 2


@pytest.mark.slow
def test_rerun_recomputes_nothing_and_changed_settings_are_refused(built: tuple[Path, str]) -> None:
    recipe_path, _ = built
    recipe = load_bundle_recipe(recipe_path)
    final = plan.run_spec(recipe, plan.groups(recipe)[0], recipe.system, "cpu")
    before = (final.dir / runs.DONE).stat().st_mtime_ns
    done = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "bundle", str(recipe_path), "--workers", "1", "--no-measure"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained before" in done.stdout and "evaluated before" in done.stdout
    assert " trained " not in done.stdout.replace("trained before", "")
    assert (final.dir / runs.DONE).stat().st_mtime_ns == before
    with pytest.raises(RunError, match="train_noise"):
        train(replace(final, train_noise=("hum",)), quiet=True)


def test_condition_set_with_several_training_noises(built: tuple[Path, str]) -> None:
    recipe = load_bundle_recipe(built[0])
    store = ConditionStore(plan.store_path(recipe, plan.FINAL))
    assert condition_set(store, "noisy", ("hum", "hiss")) == [
        "clean",
        ("hum", 20),
        ("hum", 0),
        ("hiss", 20),
        ("hiss", 0),
    ]
    assert condition_set(store, "noisy", "hiss") == ["clean", ("hiss", 20), ("hiss", 0)]
    with pytest.raises(ValueError, match="not in the store"):
        condition_set(store, "noisy", ("hum", "music"))


def test_card_insert_replaces_only_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "card.md"
    doc.write_text(f"# Card\nintro\n{card.BEGIN}\nTODO\n{card.END}\noutro\n")
    card.insert(doc, f"{card.BEGIN}\n| numbers |\n{card.END}\n")
    assert doc.read_text() == f"# Card\nintro\n{card.BEGIN}\n| numbers |\n{card.END}\noutro\n"
    doc.write_text("# no markers\n")
    with pytest.raises(BundleRecipeError, match="no section"):
        card.insert(doc, "x")


@pytest.mark.slow
def test_kill_9_mid_training_then_rerun_finishes(tmp_path: Path) -> None:
    recipe = make_world(tmp_path, RECIPE.replace("epochs = 1", "epochs = 6").replace("patience = 1", "patience = 6"))
    cmd = [sys.executable, "-m", "trnet.cli", "bundle", str(recipe), "--workers", "1", "--threads", "1", "--no-measure"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = tmp_path / "work" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.stat().st_size > 60 for p in logs.rglob(runs.LOG)):
        time.sleep(0.05)  # until some run has finished an epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle = tmp_path / "work" / "bundle" / "tiny-bundle"
    Bundle(bundle, read_manifest(bundle)).verify()
    for log in logs.rglob(runs.LOG):
        epochs = [int(float(r["epoch"])) for r in runs.read_log(log.parent)]
        assert epochs == list(range(1, len(epochs) + 1))  # resumed, never an epoch twice


def test_min_updates_raises_the_epochs_of_a_small_corpus() -> None:
    """EmoDB alone (~300 training utterances) would make 152 updates in 4 epochs of batch 8; with
    min_updates = 1000 it trains 27 epochs, while nEMO's 2,900 utterances keep the 4 epochs."""
    from types import SimpleNamespace

    recipe = SimpleNamespace(epochs=4, batch_size=8, min_updates=1000)
    assert plan.run_epochs(recipe, 2900) == 4 and plan.run_epochs(recipe, 305) == 27
    assert plan.run_epochs(SimpleNamespace(epochs=4, batch_size=8, min_updates=0), 305) == 4


@pytest.mark.parametrize(
    "line, message",
    [('lr_schedule = "step"', "lr_schedule"), ("bucket = 1", "bucket"), ("min_updates = -3", "min_updates")],
)
def test_training_keys_of_a_bundle_recipe_are_checked(tmp_path: Path, line: str, message: str) -> None:
    path = make_world(tmp_path)
    path.write_text(RECIPE.replace("width = 2", f"width = 2\n{line}"))
    with pytest.raises(BundleRecipeError, match=message):
        load_bundle_recipe(path)


def test_the_shipped_recipe_names_no_system_but_the_selection_files_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """recipes/pretrained.toml builds what validation selected (an alias of the selection file),
    with the training recipe the studies use and three seeds per held-out direction."""
    path = Path(__file__).resolve().parents[1] / "recipes" / "pretrained.toml"
    alias = tomllib.loads(path.read_text())["system"]
    assert alias not in configs.names()
    if alias not in configs.aliases():
        with pytest.raises(BundleRecipeError, match="--alias NAME"):
            load_bundle_recipe(path)
        monkeypatch.setattr(configs, "aliases", lambda: {alias: "trnet-std-snr"})
    recipe = load_bundle_recipe(path)
    assert recipe.system == configs.aliases()[alias] and recipe.loco_seeds == (1, 2, 3)
    assert recipe.table["epochs"] == 8 and recipe.levers["ema_decay"] == 0.998  # recipes/training-recipe.toml
    assert recipe.loco_targets == {("emodb", "nemo"): 47.0, ("nemo", "emodb"): 63.0}


def test_a_recipe_whose_system_is_the_baseline_trains_it_once_per_group(tmp_path: Path) -> None:
    """Validation may choose Baseline-e itself: each held-out direction then trains it once, and
    there is no system - baseline difference to report."""
    path = make_world(tmp_path)
    path.write_text(RECIPE.replace('system = "trnet-std-snr"', 'system = "baseline-e"'))
    recipe = load_bundle_recipe(path)
    assert all(g.systems == ("baseline-e",) for g in plan.groups(recipe))
    assert results.loco_differences([], "baseline-e", "baseline-e") == []
    summary = {"system": "baseline-e", "baseline": "baseline-e", "loco_differences": []}
    assert card.differences(summary)[0].startswith("The shipped system is baseline-e itself")
    row = {"conditions": [{"mean_c": {"mean": None}}]}
    assert card.c_table({**summary, "test_noise": "demand", "loco": [row], "c_training": None}, [None]) == [
        f"**c:** {NO_C}."
    ]
    assert card.c_table({**summary, "test_noise": "demand", "loco": [row]}, [None]) == []  # older summaries: silent


@pytest.mark.slow
def test_a_baseline_bundle_builds_ships_and_predicts_without_c(tmp_path: Path) -> None:
    """Validation may recommend Baseline-e (recipes/pretrained.toml names the alias): the whole
    bundle builds for a system without c, its card says there is no difference to report, and
    `trnet predict` prints c as n/a and null, and both say in the same words that there is no c."""
    path = make_world(tmp_path)
    path.write_text(RECIPE.replace('system = "trnet-std-snr"', 'system = "baseline-e"'))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "trnet.cli", "bundle", str(path), "--workers", "1", "--threads", "1", "--no-measure"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    recipe = load_bundle_recipe(path)
    fragment = (recipe.work / "card" / "results.md").read_text()
    assert "The shipped system is baseline-e itself" in fragment and "| silence |" not in fragment
    assert f"**c:** {NO_C}." in fragment  # the card and `trnet predict` in the same words
    summary = json.loads((recipe.work / "results" / "summary.json").read_text())
    assert {r["system"] for r in summary["loco"]} == {"baseline-e"} and summary["loco_differences"] == []
    bundle = recipe.work / "bundle" / recipe.name
    assert c_note(bundle) == f"{NO_C}."
    clip = tmp_path / "aa" / sorted(p.name for p in (tmp_path / "aa").glob("*.wav"))[0]
    out = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "predict", str(clip), "--model", str(bundle), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["system"] == "baseline-e" and doc["c_note"] == f"{NO_C}." and doc["results"][0]["c"] is None
