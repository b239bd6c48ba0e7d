"""The SE setting as one value (`trnet.enhance.Spec`): one file shape (`"se"` and `"se_options"`
keys) written everywhere and read back, older shapes still read, and recipes checked against
the back-end's options without building the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bundle_fixtures import RECIPE as BUNDLE_RECIPE
from trnet import pretrained
from trnet.bundle.recipe import BundleRecipeError, load_bundle_recipe
from trnet.cli import main
from trnet.enhance import Spec
from trnet.enhance.spectral import Spectral
from trnet.experiments.grid import check_se
from trnet.experiments.recipe import RecipeError, recipe_from_dict
from trnet.report.markdown import _setup, _stand_ins
from trnet.report.results import load_results

BASE = {"name": "x", "work": "w", "train_noise": "n", "noise": {"n": {"kind": "esc50", "root": "n"}}}
BASE["corpus"] = {"kind": "folder", "root": "f"}


@pytest.mark.parametrize("spec", [Spec("identity"), Spec("dfn3", {"atten_lim_db": 20.0, "runtime": "torch"})])
def test_fields_round_trip(spec: Spec) -> None:
    fields = spec.to_fields()
    assert list(fields) == ["se", "se_options"] and fields["se"] == spec.name
    assert json.loads(json.dumps(fields)) == fields  # what a JSON file holds
    assert Spec.from_fields(fields) == spec and Spec.from_fields(fields).to_fields() == fields
    fields["se_options"]["atten_lim_db"] = 3.0  # a copy: the spec is not changed through its fields
    assert spec.options.get("atten_lim_db") != 3.0


def test_older_shapes_and_missing_settings_are_read() -> None:
    nested = {"se": {"name": "dfn3", "options": {"atten_lim_db": 20}, "version": "v"}}  # results' meta.json before
    assert Spec.from_fields(nested) == Spec("dfn3", {"atten_lim_db": 20})
    assert Spec.from_fields({"se": "spectral"}) == Spec("spectral")  # no se_options: none
    assert Spec.from_fields({"se": "spectral", "se_options": None}) == Spec("spectral")
    assert Spec.from_fields({}) is None and Spec.from_fields({"se": None}) is None
    for bad in ({"se": 3}, {"se": "dfn3", "se_options": ["x"]}):
        with pytest.raises(ValueError, match="SE setting"):
            Spec.from_fields(bad)


def test_the_package_bundle_names_its_se_in_the_one_shape() -> None:
    """The shipped bundle's manifest.json and config.json (written before Spec) read as the same
    setting, and `trnet models` lists it."""
    shipped = pretrained.bundles(pretrained.PACKAGE_DIR)
    if not shipped:
        pytest.skip("no bundle shipped with the package")
    folder = shipped[0].path
    manifest = pretrained.read_manifest(folder)
    config = json.loads((folder / "config.json").read_text())
    assert Spec.from_fields(manifest) == Spec.from_fields(config) == Spec("dfn3")


def _never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, **options):
        raise AssertionError("the back-end was built to check a setting")

    monkeypatch.setattr(Spectral, "__init__", refuse)


def test_a_recipe_with_a_bad_se_option_is_refused_in_one_line_without_building(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _never_built(monkeypatch)
    with pytest.raises(RecipeError, match=r"SE back-end 'spectral': unknown option\(s\) bogus") as err:
        recipe_from_dict({**BASE, "se": "spectral", "se_options": {"bogus": 1}}, tmp_path, "t")
    assert "\n" not in str(err.value)
    with pytest.raises(RecipeError, match="unknown SE back-end 'nope'"):
        recipe_from_dict({**BASE, "se": "nope"}, tmp_path, "t")
    recipe = recipe_from_dict({**BASE, "se": "spectral", "se_options": {"gain_floor_db": -20}}, tmp_path, "t")
    assert recipe.se == Spec("spectral", {"gain_floor_db": -20})
    check_se(recipe)  # availability, still without building it
    check_se(recipe_from_dict({**BASE, "se": "spectral"}, tmp_path, "t"))


def test_a_bundle_recipe_with_a_bad_se_option_is_refused_without_building(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _never_built(monkeypatch)
    path = tmp_path / "bundle.toml"
    path.write_text(BUNDLE_RECIPE.replace('se = "identity"', 'se = "spectral"\nse_options = { bogus = 1 }'))
    with pytest.raises(BundleRecipeError, match=r"SE back-end 'spectral': unknown option\(s\) bogus"):
        load_bundle_recipe(path)
    path.write_text(BUNDLE_RECIPE.replace('se = "identity"', 'se = "spectral"\nse_options = { gain_floor_db = -20 }'))
    assert load_bundle_recipe(path).se == Spec("spectral", {"gain_floor_db": -20})


def test_reproduce_refuses_a_bad_se_option_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _never_built(monkeypatch)
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "x"\nwork = "w"\ntrain_noise = "n"\nse = "spectral"\n[se_options]\nbogus = 1\n'
        '[corpus]\nkind = "folder"\nroot = "f"\n[noise.n]\nkind = "noise"\nroot = "n"\n'
    )
    assert main(["reproduce", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown option(s) bogus" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()  # refused before any work


def _results(root: Path, se: dict) -> Path:
    root.mkdir()
    row = {"system": "trnet", "fold": 0, "seed": 1, "test_speaker": "s0", "noise": "clean", "snr": None}
    (root / "results.json").write_text(json.dumps([{**row, "uar": 0.5, "war": 0.5, "mean_c": 0.5, "n": 4}]))
    meta = {"recipe": {"name": "r", "origin": "t"}, "commit": "c", "created": "now", **se, "train_noise": "n"}
    (root / "meta.json").write_text(json.dumps({**meta, "corpus": {"kind": "emodb"}, "runs": []}))
    return root


def test_results_of_either_shape_give_the_same_report_lines(tmp_path: Path) -> None:
    """Results written before the SE setting had one shape (`"se": {"name", "options", "version"}`)
    report exactly as the ones written now (`"se"`, `"se_options"`, `"se_version"`)."""
    old = load_results(_results(tmp_path / "old", {"se": {"name": "dfn3", "options": {}, "version": "v1"}}))
    new = load_results(_results(tmp_path / "new", {"se": "dfn3", "se_options": {}, "se_version": "v1"}))
    assert (old.se_name, old.se_version) == (new.se_name, new.se_version) == ("dfn3", "v1")
    assert _setup(old) == _setup(new) and "- SE back-end: `dfn3` (v1)" in _setup(new)
    assert _stand_ins(old.meta, old) == _stand_ins(new.meta, new)
    assert any("`dfn3` instead of the paper's CMGAN" in line for line in _stand_ins(new.meta, new))
    odd = load_results(_results(tmp_path / "odd", {"se": 3}))  # edited by hand: unknown, not a crash
    assert odd.se_name is None and "- SE back-end: `?` (?)" in _setup(odd)
