"""Typed plug-in options (trnet.options): one declaration per SE back-end and corpus loader, one
spelling (`KEY=VALUE` on the command line, the same keys in a recipe), one kind of message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trnet import corpora, enhance
from trnet.cli import main
from trnet.corpora import CorpusError
from trnet.experiments.recipe import RecipeError, recipe_from_dict
from trnet.options import OptionError, parse_items


def test_key_value_items_become_a_typed_table() -> None:
    assert parse_items(["atten_lim_db=20", "post-filter-beta=0.02", "prefetch=false", "checkpoint=a/b.ckpt"]) == {
        "atten_lim_db": 20,
        "post_filter_beta": 0.02,
        "prefetch": False,
        "checkpoint": "a/b.ckpt",
    }
    with pytest.raises(OptionError, match="expected KEY=VALUE"):
        parse_items(["atten_lim_db"])


def test_se_options_are_checked_against_the_back_end_declaration() -> None:
    assert enhance.spec(None).name == enhance.DEFAULT  # the default is stated once
    assert enhance.spec("spectral", {"gain_floor_db": -20}).options == {"gain_floor_db": -20}  # as given: keys stores
    with pytest.raises(OptionError, match="SE back-end 'spectral': unknown option.*gain_floor_db=-12.0"):
        enhance.spec("spectral", {"gain_floor": -20})
    with pytest.raises(OptionError, match="gain_floor_db = 'loud': expected a number"):
        enhance.spec("spectral", {"gain_floor_db": "loud"})
    with pytest.raises(OptionError, match="SE back-end 'identity': unknown option"):
        enhance.load("identity", strength=1)
    assert "gain_floor_db=-12.0" in enhance.describe_options("spectral")


def test_corpus_options_are_checked_against_the_loader_declaration() -> None:
    opts = corpora.check_options("musan", {"subsets": "free-sound, sound-bible"}, "[noise.musan]")
    assert opts.subsets == ["free-sound", "sound-bible"]  # the command line's comma list and a recipe's list
    assert corpora.check_options("synthetic", {"duration": [1, 2]}, "x").duration == [1.0, 2.0]
    with pytest.raises(CorpusError, match=r"\[corpus\] \(kind 'emodb'\): unknown option\(s\) subsets; it takes no"):
        corpora.check_options("emodb", {"subsets": ["a"]}, "[corpus]")
    with pytest.raises(CorpusError, match="seed = 'x': expected an integer"):
        corpora.check_options("synthetic", {"seed": "x"}, "[corpus]")


def test_one_spelling_on_the_command_line_and_in_recipes(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "c.csv"
    manifest.write_text("id,path,label,speaker,session,gender,duration\n")
    assert (
        main(
            [
                "conditions",
                "--corpus",
                str(manifest),
                "--se",
                "spectral",
                "--opt",
                "gain=1",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    assert "SE back-end 'spectral': unknown option(s) gain" in capsys.readouterr().err
    assert (
        main(["prepare", "synthetic", "--root", str(tmp_path / "syn"), "--out", str(tmp_path), "--opt", "speakers=4"])
        == 2
    )
    assert "unknown option(s) speakers" in capsys.readouterr().err
    base = {"name": "x", "work": "w", "train_noise": "n", "noise": {"n": {"kind": "esc50", "root": "n"}}}
    with pytest.raises(RecipeError, match="unknown option.*speakers"):
        recipe_from_dict({**base, "corpus": {"kind": "synthetic", "root": "s", "speakers": 4}}, tmp_path, "t")
    recipe = recipe_from_dict({**base, "corpus": {"kind": "folder", "root": "f", "csv": "l.csv"}}, tmp_path, "t")
    assert recipe.corpus.options["csv"] == tmp_path / "l.csv"  # path options resolve against the recipe


def test_one_parser_reads_the_corpus_tables_of_both_recipes(tmp_path: Path) -> None:
    """`trnet reproduce`'s [corpus]/[noise.*] and `trnet bundle`'s [corpora.*]/[noise.*] tables
    go through corpora.read_source: the same checks and messages; provenance only where asked."""
    from trnet.bundle.recipe import BundleRecipeError, from_table

    table = {"kind": "folder", "root": "f", "csv": "l.csv", "title": "T"}
    src = corpora.read_source(table, "[corpora.x]", "utterances", tmp_path, provenance=True)
    assert src.root == (tmp_path / "f").resolve() and src.options == {"csv": tmp_path / "l.csv"}
    assert src.provenance == {"title": "T"}
    with pytest.raises(CorpusError, match=r"\[corpus\] \(kind 'folder'\): unknown option\(s\) title"):
        corpora.read_source(table, "[corpus]", "utterances", tmp_path)
    base = {"name": "x", "work": "w", "train_noise": "n", "corpus": {"kind": "emodb", "root": "e"}}
    bundle = {"name": "x", "work": "w", "system": "trnet", "train_noise": "n", "corpora": {"e": base["corpus"]}}
    for bad, message in (
        ({"kind": "esc50"}, r"\[noise\.n\]: expected a table with `kind` and `root`"),
        ({"kind": "emodb", "root": "n"}, r"\[noise\.n\] kind 'emodb': expected one of esc50, "),
    ):
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({**base, "noise": {"n": bad}}, tmp_path, "t")
        with pytest.raises(BundleRecipeError, match=message):
            from_table({**bundle, "noise": {"n": bad}}, tmp_path, "t")


@pytest.mark.parametrize("change", [{"epochs": 0}, {"batch_size": True}, {"lr_schedule": "step"}, {"bucket": 1}])
def test_the_training_keys_of_both_recipes_are_checked_by_training_config(tmp_path: Path, change: dict) -> None:
    """A recipe's epochs, batch_size, patience, lr_schedule and bucket are refused by
    TrainingConfig itself, with its message, in `trnet reproduce`'s recipes and `trnet bundle`'s."""
    from dataclasses import replace

    from trnet.bundle.recipe import BundleRecipeError, from_table
    from trnet.models import PAPER_TRAINING

    with pytest.raises(ValueError) as owner:
        replace(PAPER_TRAINING, **change)
    expected = re.escape(str(owner.value))
    noise = {"n": {"kind": "esc50", "root": "n"}}
    corpus = {"kind": "emodb", "root": "e"}
    with pytest.raises(RecipeError, match=expected):
        recipe_from_dict(
            {"name": "x", "work": "w", "train_noise": "n", "corpus": corpus, "noise": noise, **change}, tmp_path, "t"
        )
    bundle = {"name": "x", "work": "w", "system": "trnet", "train_noise": "n", "corpora": {"e": corpus}, "noise": noise}
    with pytest.raises(BundleRecipeError, match=expected):
        from_table({**bundle, **change}, tmp_path, "t")
