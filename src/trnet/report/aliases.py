"""Selection files: the evidence of a validation-only choice, and the alias it names.

`trnet report` writes `selection.json` beside report.md: every run's validation UAR (what a
choice may use; the test speaker never enters) with the study's provenance. `trnet select`
pools one or more studies and writes the package file `trnet/configs/selection.json`, which
maps an alias (`trnet-robust`) to the chosen system with the evidence (docs/design.md §6.3):

    {"aliases": {"trnet-robust": {"system": "trnet-std", "chosen": "trnet-std", "rule": "...",
     "validation_uar": {"trnet-std": {"mean": ..., "std": ..., "runs": 20}, ...},
     "studies": [{"source": "docs/emodb-refinement/runs.csv", "tag": null, "runs": 140,
                  "sha256": "..."}, ...]}}}

A source is a results directory, its selection.json or its runs.csv (a study that keeps only
runs.csv, as docs/emodb-refinement/ does), optionally as TAG=PATH: the runs of a study with
another SE setting then compete as "<system>@TAG", as in `trnet report --also`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from trnet import configs
from trnet.models.system import load_config
from trnet.options import Number
from trnet.report.results import Results
from trnet.utils import UserError, sha256_file, write_json_atomic

FORMAT = 1
RULE = (
    "the candidate (candidate = true in its system config; at any SE setting, <system>@<tag>) with the highest "
    "mean validation UAR over its runs in the studies below, among the candidates run on every (test speaker, "
    "fold, seed) that any candidate was run on, so that all compete on the same speakers and seeds (a candidate "
    "run in fewer studies, e.g. an SE setting tried on one corpus only, is listed but not comparable); ties go "
    "to the earlier system in table order. A chosen <system>@<tag> names <system>; its SE setting is the study's."
)
RULE_ALL = (
    "the system (every system that trains in noise, Baseline-e and the ablations included; a system trained on "
    "clean speech only is validated on clean speech, so its number is not comparable) with the highest mean "
    "validation UAR over its runs in the studies below, among the systems run on every (test speaker, fold, seed) "
    "that any of them was run on; ties go to the earlier system in table order. A chosen <system>@<tag> names "
    "<system>; its SE setting is the study's."
)
AMONG = {"candidates": RULE, "all": RULE_ALL}  # `trnet select --among`: who competes, and the rule it writes


def in_noise(system: str) -> bool:
    """Whether a system trains (and so validates) in noise, at any SE setting ("<system>@<tag>"):
    who competes under `--among all`. Validation uses the training conditions, so a clean-trained
    system's validation UAR is on clean speech and would win for that reason alone."""
    name = system.split("@")[0]
    return name in configs.systems() and load_config(name).train_conditions != "clean"


def competes(system: str, among: str) -> bool:
    return is_candidate(system) if among == "candidates" else in_noise(system)


def is_candidate(system: str) -> bool:
    """Whether a system may be recommended (`candidate = true` in its config: TRNet and its
    variants), at any SE setting ("<system>@<tag>"). The ablations explain what each loss does;
    they are not candidates, so a choice among them is never made."""
    info = configs.systems().get(system.split("@")[0])
    return info is not None and info.candidate


def study_evidence(res: Results, source: str) -> dict[str, Any]:
    """A study's selection.json: every run's validation UAR, and where it comes from."""
    recipe = res.meta.get("recipe", {})
    runs = [
        {"system": s, "fold": f, "seed": k, "test_speaker": info.get("test_speaker"), "val_uar": info.get("val_uar")}
        for s in res.systems
        for (f, k), info in sorted(res.run_info(s).items())
    ]
    pooled = pool([("", runs)])
    study = {
        "results": source,
        "recipe": recipe.get("name"),
        "commit": res.meta.get("commit"),
        "se": res.se_name,
    }
    return {"format": FORMAT, "study": study, "chosen": choose(pooled), "validation_uar": pooled, "runs": runs}


def check_tag(tag: str, option: str) -> str:
    """A study's tag (`TAG=SOURCE`): it becomes part of a system name (`<system>@TAG`) and a
    table cell of report.md, so it is a non-empty word without '|', '@', '=', '/' or spaces."""
    if not tag or any(ch in "|@=/\\`" or ch.isspace() or not ch.isprintable() for ch in tag):
        raise UserError(f"{option} tag {tag!r}: expected a non-empty word without '|', '@', '=', '/' or spaces")
    return tag


def split_source(source: str, option: str) -> tuple[str, str]:
    """(tag, path) of `[TAG=]PATH`; a path that exists as given (a folder named a=b) is untagged."""
    tag, sep, path_text = source.partition("=")
    if not sep or Path(source).exists():
        return "", source
    return check_tag(tag, option), path_text


def read_runs(source: str) -> tuple[str, list[dict[str, Any]], Path]:
    """(tag, runs, file) of a source `[TAG=]PATH` (results directory, selection.json or runs.csv);
    UserError naming the file for one that is not JSON, not a table of runs, or holds a run
    whose fold, seed or validation UAR is not what `trnet reproduce` writes."""
    tag, path_text = split_source(source, "source")
    path = Path(path_text)
    if path.is_dir():
        path = path / "selection.json" if (path / "selection.json").is_file() else path / "runs.csv"
    if not path.is_file():
        raise UserError(f"{path}: no such file (a source is a results directory, its selection.json or runs.csv)")
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise UserError(
                f"{path}: not valid JSON ({err}); expected a selection.json written by trnet report"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("runs", []), list):
            raise UserError(f"{path}: expected a JSON object with a list of runs (a selection.json of trnet report)")
        rows = doc.get("runs", [])
    else:
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as err:
            raise UserError(f"{path}: not a CSV file ({err})") from None
        if rows and "val_uar" not in rows[0]:
            raise UserError(f"{path}: no val_uar column (expected a runs.csv written by `trnet reproduce`)")
    runs = [_run(r, path, k) for k, r in enumerate(rows, 1)]
    if tag:
        runs = [{**r, "system": f"{r['system']}@{tag}"} for r in runs]
    return tag, runs, path


VAL_UAR = Number(float, 0.0, 1.0)  # a validation UAR: a share of recall


def _run(row: Any, path: Path, k: int) -> dict[str, Any]:
    """One run of a source, checked: system, integer fold and seed, val_uar in [0, 1] or empty."""
    where = f"{path}: run {k}"
    if not isinstance(row, dict) or not all(key in row for key in ("system", "fold", "seed", "val_uar")):
        raise UserError(f"{where}: expected system, fold, seed and val_uar")
    try:
        fold, seed = (int(row[key]) for key in ("fold", "seed"))
        if any(isinstance(row[key], bool | float) for key in ("fold", "seed")):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{where}: fold and seed must be integers, got {row['fold']!r} and {row['seed']!r}") from None
    val = row["val_uar"]
    if val not in (None, ""):
        try:
            val = VAL_UAR.check(float(val) if isinstance(val, str) else val, f"{where}: val_uar")
        except ValueError as err:
            raise UserError(
                str(err)
                if isinstance(err, UserError)
                else f"{where}: val_uar: expected {VAL_UAR.describe()}, got {val!r}"
            ) from None
    return {
        "system": str(row["system"]),
        "fold": fold,
        "seed": seed,
        "test_speaker": row.get("test_speaker") or None,
        "val_uar": None if val in (None, "") else float(val),
    }


def check_unique(studies: list[tuple[str, list[dict[str, Any]], Path]]) -> None:
    """UserError for a run given twice (one (test speaker, fold, seed, system) in two rows or
    two sources) or a tag given twice: pooled, it would count as often as it is given."""
    seen: dict[tuple[str, int, int, str], Path] = {}
    tags: dict[str, Path] = {}
    for tag, runs, path in studies:
        if tag and tag in tags:
            raise UserError(f"tag {tag!r} given twice ({tags[tag]} and {path}); give each study its own tag")
        tags[tag] = path
        for r in runs:
            key = (*cell(r), r["system"])
            if key in seen:
                raise UserError(
                    f"run {r['system']} fold {key[1]} seed {key[2]}"
                    + (f" (test speaker {key[0]})" if key[0] else "")
                    + f" is given twice ({seen[key]} and {path}); give each run once"
                )
            seen[key] = path


def cell(run: dict[str, Any]) -> tuple[str, int, int]:
    """Where a run was trained and tested: (test speaker, fold, seed); speakers name the corpus."""
    return (str(run.get("test_speaker") or ""), int(run["fold"]), int(run["seed"]))


def pool(studies: list[tuple[str, list[dict[str, Any]]]], among: str = "candidates") -> dict[str, dict[str, Any]]:
    """Competitor (a candidate, or with among="all" every system trained in noise) -> mean, std
    and number of its validation UARs over every study, and whether it was run on every cell
    (test speaker, fold, seed) that any competitor was run on; table order.
    Means over different cells are not comparable: validation UAR depends on the corpus and the
    speaker far more than on the system (EmoDB ~83 %, nEMO ~52 %)."""
    values: dict[str, list[float]] = {}
    cells: dict[str, set[tuple[str, int, int]]] = {}
    systems = {r["system"] for _, runs in studies for r in runs}
    competing = {s for s in systems if competes(s, among)}  # once per system, not per run: a config read
    for _, runs in studies:
        for r in runs:
            if r["system"] in competing and r.get("val_uar") is not None:
                values.setdefault(r["system"], []).append(float(r["val_uar"]))
                cells.setdefault(r["system"], set()).add(cell(r))
    every = set().union(*cells.values()) if cells else set()
    order = list(configs.names())
    ranked = sorted(values, key=lambda s: (order.index(s.split("@")[0]), s))
    return {
        s: {
            "mean": round(float(np.mean(values[s])), 6),
            "std": round(float(np.std(values[s], ddof=1)), 6) if len(values[s]) > 1 else None,
            "runs": len(values[s]),
            "comparable": cells[s] >= every,
        }
        for s in ranked
    }


def choose(pooled: dict[str, dict[str, Any]]) -> str | None:
    """The rule (RULE): among the comparable candidates (run on every cell), the highest mean,
    the earlier in table order on a tie; None when no candidate was run on every cell."""
    comparable = [s for s in pooled if pooled[s].get("comparable", True)]
    return max(comparable, key=lambda s: pooled[s]["mean"], default=None)


def select(sources: list[str], alias: str, among: str = "candidates", seeds: list[int] | None = None) -> dict[str, Any]:
    """The package file's entry for `alias`, pooled over `sources`; `among`: who competes
    ("candidates": TRNet and its variants; "all": every system trained in noise, AMONG);
    `seeds`: only runs of these seeds count (a study whose seed rule added seeds to some systems
    keeps the others comparable on the seeds all of them ran)."""
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise UserError(f"--seeds {seeds}: expected distinct seeds")
    if among not in AMONG:
        raise UserError(f"--among {among!r}: expected one of {', '.join(AMONG)}")
    if alias in configs.systems():
        raise UserError(f"--alias {alias!r} is a system's own name; an alias must be a new name")
    if not alias or not all(ch.isalnum() or ch in "-_." for ch in alias) or not alias[0].isalnum():
        raise UserError(
            f"--alias {alias!r}: expected letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    read = [read_runs(source) for source in sources]
    check_unique(read)
    studies, provenance = [], []
    for tag, runs, path in read:
        kept = runs if seeds is None else [r for r in runs if r["seed"] in seeds]
        if not kept:
            raise UserError(f"{path}: no run of seed(s) {', '.join(map(str, seeds or []))}")
        studies.append((tag, kept))
        provenance.append({"source": str(path), "tag": tag or None, "runs": len(kept), "sha256": sha256_file(path)})
    pooled = pool(studies, among)
    chosen = choose(pooled)
    if chosen is None:
        who = "candidate system" if among == "candidates" else "system trained in noise"
        raise UserError(
            f"no {who} has a validation UAR on every (test speaker, fold, seed) of these sources; "
            "give studies that ran the same systems"
        )
    return {
        "system": chosen.split("@")[0],
        "chosen": chosen,
        "rule": AMONG[among]
        + ("" if seeds is None else f" Only the runs of seeds {', '.join(map(str, seeds))} count."),
        **({"among": among} if among != "candidates" else {}),
        **({"seeds": list(seeds)} if seeds is not None else {}),
        "validation_uar": pooled,
        "studies": provenance,
    }


def write_selection(out: Path, alias: str, entry: dict[str, Any]) -> None:
    """Set `alias` in the selection file `out` (other aliases there are kept)."""
    data = {"format": FORMAT, "aliases": {}}
    if out.exists():
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"--out {out}: not a selection file ({err}); give a new file or a selection.json") from None
        if not isinstance(data, dict) or not isinstance(data.get("aliases"), dict):
            raise UserError(
                f'--out {out}: not a selection file (no "aliases" table); give a new file or a selection.json'
            )
    data["aliases"][alias] = entry
    write_json_atomic(out, data)
