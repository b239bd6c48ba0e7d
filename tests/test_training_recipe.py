"""One training-recipe file for both kinds of recipe (`training_recipe = "PATH"`,
trnet.training.recipe, docs/design.md §7): its keys act exactly as if written inline in a study
recipe or a bundle recipe, each key has one owner, and `trnet bundle` trains every run with the
levers and input_norm, in a runs folder whose name says so (and is unchanged without them)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.bundle_fixtures import RECIPE as BUNDLE
from tests.bundle_fixtures import make_world
from trnet.bundle import plan
from trnet.bundle.recipe import BundleRecipeError, load_bundle_recipe
from trnet.experiments import grid
from trnet.experiments.recipe import RecipeError, load_recipe

STUDY = """
name = "x"
work = "w"
train_noise = "n"
{extra}
[corpus]
kind = "emodb"
root = "../data/emodb"

[noise.n]
kind = "esc50"
root = "/abs/esc50"
"""
# what the pilot's file may hold: training keys at the top, levers and input_norm in [training]
TOP = 'epochs = 12\nbatch_size = 16\nlr_schedule = "cosine"\nbucket = true\n'
LEVERS = '[training]\nweight_decay = 0.05\nlabel_smoothing = 0.1\ninput_norm = "utterance"\n'
FILE = f"# chosen by the training pilot\n{TOP}{LEVERS}"
STORE = SimpleNamespace(key={"hash": "0123456789" * 6 + "abcd"})  # what a runs tag reads of a store


def study(folder: Path, name: str, extra: str, tail: str = "") -> Path:
    path = folder / name
    path.write_text(STUDY.format(extra=extra) + tail)
    return path


def test_a_study_recipe_with_the_file_equals_the_inline_recipe(tmp_path: Path) -> None:
    (tmp_path / "training-recipe.toml").write_text(FILE)
    inline = load_recipe(study(tmp_path, "inline.toml", TOP, "\n" + LEVERS))
    included = load_recipe(study(tmp_path, "include.toml", 'training_recipe = "training-recipe.toml"'))
    assert included.levers == {"weight_decay": 0.05, "label_smoothing": 0.1} and included.input_norm == "utterance"
    assert (included.epochs, included.batch_size, included.lr_schedule, included.bucket) == (12, 16, "cosine", True)
    assert replace(included, origin=inline.origin) == inline  # the table too: the file's keys inline
    tag = grid.runs_dir(included, 1, STORE).name
    assert tag == grid.runs_dir(inline, 1, STORE).name and tag.endswith("-wd0.05-ls0.1-norm-utterance-n-0123456789")


def bundle_recipes(folder: Path, file: str = FILE, inline_extra: str = "") -> tuple[Path, Path]:
    """(inline, include) bundle recipes over one tiny world; the include names `file`."""
    path = make_world(folder)
    body = BUNDLE.replace("epochs = 1\nbatch_size = 8\n", "")
    inline = folder / "inline.toml"
    inline.write_text(TOP + body + "\n" + LEVERS + inline_extra)
    (folder / "training-recipe.toml").write_text(file)
    path.write_text('training_recipe = "training-recipe.toml"\n' + body)
    return inline, path


def test_a_bundle_recipe_with_the_file_equals_the_inline_recipe(tmp_path: Path) -> None:
    inline_path, include_path = bundle_recipes(tmp_path)
    inline, included = load_bundle_recipe(inline_path), load_bundle_recipe(include_path)
    assert included.levers == {"weight_decay": 0.05, "label_smoothing": 0.1} and included.input_norm == "utterance"
    assert replace(included, origin=inline.origin, sha256=inline.sha256) == inline
    assert "training_recipe" not in included.table and included.table["training"]["input_norm"] == "utterance"
    for group in plan.groups(inline):  # the shipped model and every leave-one-corpus-out run
        tag = plan.runs_root(included, group, STORE).name
        assert tag == plan.runs_root(inline, group, STORE).name
        assert "-e12-b16-p1-cosine-bucket-wd0.05-ls0.1-norm-utterance-" in tag


def test_a_bundle_runs_tag_is_unchanged_without_levers(tmp_path: Path) -> None:
    recipe = load_bundle_recipe(make_world(tmp_path))
    assert recipe.levers == {} and recipe.input_norm == "none"
    final, loco = plan.groups(recipe)[0], plan.groups(recipe)[1]
    assert plan.runs_root(recipe, final, STORE).name == "resnet-w2-e1-b8-p1-hum+hiss-0123456789"
    assert plan.runs_root(recipe, loco, STORE).name == "resnet-w2-e1-b8-p1-hum-0123456789"


@pytest.mark.parametrize(
    "file, recipe_line, message",
    [
        ("epochs = 3\n", "epochs = 3", r"epochs is set both in .*include\.toml and in .*training-recipe\.toml"),
        (
            "[training]\nweight_decay = 0.1\n",
            "[training]\nweight_decay = 0.1",
            r"\[training\] weight_decay is set both",
        ),
        ("min_updates = 100\n", "", r"unknown key\(s\) \['min_updates'\]"),  # a bundle key, not the file's
        ("name = 'x'\n", "", r"unknown key\(s\) \['name'\]"),
        ("[training]\nemma = 0.9\n", "", r"\[training\]: unknown key\(s\) \['emma'\]"),
        ("[training]\nweight_decay = nan\n", "", "weight_decay"),
        ("[training]\ninput_norm = 'speaker'\n", "", "input_norm 'speaker'"),
        ("training = 3\n", "", r"\[training\]: expected a table"),
        ("epochs = [\n", "", "not valid TOML"),
        (None, "", "cannot read"),
    ],
)
def test_the_file_is_refused_in_one_line_naming_the_key(
    tmp_path: Path, file: str | None, recipe_line: str, message: str
) -> None:
    """Each refusal reaches both readers, in their own error class (one line, exit 2)."""
    if file is not None:
        (tmp_path / "training-recipe.toml").write_text(file)
    top, table = (recipe_line, "") if not recipe_line.startswith("[") else ("", "\n" + recipe_line + "\n")
    include = study(tmp_path, "include.toml", f'training_recipe = "training-recipe.toml"\n{top}', table)
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(include)
    assert "\n" not in str(err.value)
    world = tmp_path / "world"
    world.mkdir()
    path = make_world(world)
    if file is not None:
        (world / "training-recipe.toml").write_text(file)
    body = BUNDLE.replace("epochs = 1\n", f"epochs = 1\n{top}\n" if top != "epochs = 3" else "epochs = 3\n")
    path.write_text('training_recipe = "training-recipe.toml"\n' + body + table)
    bundle_message = message.replace("include", "tiny-bundle")
    with pytest.raises(BundleRecipeError, match=bundle_message):
        load_bundle_recipe(path)


@pytest.mark.parametrize("value", ["", 3, ["a.toml"]])
def test_the_training_recipe_key_must_be_a_path(tmp_path: Path, value) -> None:
    with pytest.raises(RecipeError, match="training_recipe: expected the path"):
        load_recipe(study(tmp_path, "r.toml", f"training_recipe = {json.dumps(value)}"))


@pytest.fixture(scope="module")
def lever_run(tmp_path_factory):
    """The shipped-model run of a bundle recipe with levers, over a built (tiny) final store."""
    from tests.test_store import make_corpus
    from trnet.corpora.combined import combine
    from trnet.corpora.manifest import read_manifest, write_manifest
    from trnet.enhance import Spec
    from trnet.store import BuildSpec, build

    root = tmp_path_factory.mktemp("levers")
    inline_path, _ = bundle_recipes(root)
    recipe = replace(load_bundle_recipe(inline_path), epochs=1, train_noise=("hum",), work=root / "work")
    corpus, noise = make_corpus(root / "data", n_speakers=4, per_speaker=4)
    write_manifest(corpus, combine({"aa": read_manifest(corpus)}), "utterances")  # the bundle's combined form
    spec = BuildSpec(corpus=corpus, noise={"hum": noise}, se=Spec("identity"), seed=1, snrs=(20, 0))
    build(spec, plan.store_path(recipe, plan.FINAL), quiet=True)
    return plan.run_spec(recipe, plan.groups(recipe)[0], recipe.baseline, "cpu")  # no teacher: quick


def test_every_bundle_run_carries_the_levers_and_input_norm(lever_run) -> None:
    assert lever_run.system.input_norm == "utterance" and lever_run.system.width == 2
    training = lever_run.training
    assert (training.weight_decay, training.label_smoothing, training.lr_schedule) == (0.05, 0.1, "cosine")
    assert "-wd0.05-ls0.1-norm-utterance-" in str(lever_run.dir)


@pytest.mark.slow
def test_a_changed_lever_is_refused_when_a_bundle_run_resumes(lever_run) -> None:
    """In the same runs folder (a changed lever in the recipe changes the folder's name), the
    run's config.json refuses it."""
    from trnet.runs import RunError
    from trnet.training.trainer import train

    out = train(lever_run, quiet=True)
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["weight_decay"] == 0.05 and config["system"]["input_norm"] == "utterance"
    with pytest.raises(RunError, match="weight_decay"):
        train(replace(lever_run, training=replace(lever_run.training, weight_decay=0.1)), quiet=True)
    with pytest.raises(RunError, match="input_norm"):
        train(replace(lever_run, system=replace(lever_run.system, input_norm="none")), quiet=True)


def test_the_committed_training_recipe_is_the_pilots_chosen_setting(tmp_path: Path) -> None:
    """recipes/training-recipe.toml carries the pilot's `ema-light` (bench/training_pilot.py:
    its BASE with the setting's keys over it), so a study that names it trains as the pilot did."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("training_pilot", root / "bench" / "training_pilot.py")
    pilot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pilot)
    declared = {**pilot.BASE, **pilot.SETTINGS["ema-light"]}
    (tmp_path / "training-recipe.toml").write_bytes((root / "recipes" / "training-recipe.toml").read_bytes())
    recipe = load_recipe(study(tmp_path, "study.toml", 'training_recipe = "training-recipe.toml"'))
    top = {k: getattr(recipe, k) for k in ("epochs", "batch_size", "patience", "lr_schedule", "bucket")}
    assert {**top, **recipe.levers} == declared and recipe.input_norm == "none"
