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
        "se": res.meta.get("se", {}).get("name"),
    }
    return {"format": FORMAT, "study": study, "chosen": choose(pooled), "validation_uar": pooled, "runs": runs}


def read_runs(source: str) -> tuple[str, list[dict[str, Any]], Path]:
    """(tag, runs, file) of a source `[TAG=]PATH` (results directory, selection.json or runs.csv)."""
    tag, sep, path_text = source.partition("=")
    if not sep:
        tag, path_text = "", source
    path = Path(path_text)
    if path.is_dir():
        path = path / "selection.json" if (path / "selection.json").is_file() else path / "runs.csv"
    if not path.is_file():
        raise UserError(f"{path}: no such file (a source is a results directory, its selection.json or runs.csv)")
    if path.suffix == ".json":
        runs = json.loads(path.read_text()).get("runs", [])
    else:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        if rows and "val_uar" not in rows[0]:
            raise UserError(f"{path}: no val_uar column (expected a runs.csv written by `trnet reproduce`)")
        runs = [
            {
                "system": r["system"],
                "fold": int(r["fold"]),
                "seed": int(r["seed"]),
                "test_speaker": r.get("test_speaker") or None,
                "val_uar": float(r["val_uar"]) if r["val_uar"] else None,
            }
            for r in rows
        ]
    if tag:
        runs = [{**r, "system": f"{r['system']}@{tag}"} for r in runs]
    return tag, runs, path


def cell(run: dict[str, Any]) -> tuple[str, int, int]:
    """Where a run was trained and tested: (test speaker, fold, seed); speakers name the corpus."""
    return (str(run.get("test_speaker") or ""), int(run["fold"]), int(run["seed"]))


def pool(studies: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Candidate -> mean, std and number of its validation UARs over every study, and whether it
    was run on every cell (test speaker, fold, seed) that any candidate was run on; table order.
    Means over different cells are not comparable: validation UAR depends on the corpus and the
    speaker far more than on the system (EmoDB ~83 %, nEMO ~52 %)."""
    values: dict[str, list[float]] = {}
    cells: dict[str, set[tuple[str, int, int]]] = {}
    for _, runs in studies:
        for r in runs:
            if is_candidate(r["system"]) and r.get("val_uar") is not None:
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


def select(sources: list[str], alias: str) -> dict[str, Any]:
    """The package file's entry for `alias`, pooled over `sources`."""
    if alias in configs.systems():
        raise UserError(f"--alias {alias!r} is a system's own name; an alias must be a new name")
    studies, provenance = [], []
    for source in sources:
        tag, runs, path = read_runs(source)
        studies.append((tag, runs))
        provenance.append({"source": str(path), "tag": tag or None, "runs": len(runs), "sha256": sha256_file(path)})
    pooled = pool(studies)
    chosen = choose(pooled)
    if chosen is None:
        raise UserError(
            "no candidate system has a validation UAR on every (test speaker, fold, seed) of these sources; "
            "give studies that ran the same candidates"
        )
    return {
        "system": chosen.split("@")[0],
        "chosen": chosen,
        "rule": RULE,
        "validation_uar": pooled,
        "studies": provenance,
    }


def write_selection(out: Path, alias: str, entry: dict[str, Any]) -> None:
    """Set `alias` in the selection file `out` (other aliases there are kept)."""
    data = json.loads(out.read_text()) if out.is_file() else {"format": FORMAT, "aliases": {}}
    data["aliases"][alias] = entry
    write_json_atomic(out, data)
