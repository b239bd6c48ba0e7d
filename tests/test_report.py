"""`trnet report` on fabricated results (no training): tables, every figure, missing systems,
and significance numbers that match scipy and a brute-force permutation test."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from trnet import configs
from trnet.cli import main
from trnet.report import stats
from trnet.report.aliases import is_candidate
from trnet.report.markdown import make_report
from trnet.report.results import RunPredictions, load_results, predictions_path, tsne_systems
from trnet.report.selection import selection

NOISES = ("esc50", "musan")
SNRS = (20, 15, 10, 5, 0)
FOLDS, SEEDS = (0, 1, 2), (1, 2)
SYSTEMS = configs.names(paper_only=True)
N_UTT, DIM = 24, 16
PNGS = ("uar_vs_snr.png", "fig2_snr_coefficient.png", "fig3_tsne.png", "confusion.png")


pytestmark = pytest.mark.usefixtures("one_openmp_thread")


def true_uar(system: str, noise: str, snr: int | None, fold: int, seed: int) -> float:
    """Known per-run UAR: Baseline-c loses 2 points per dB below 20 dB of noise, the others
    less; TRNet is 1-3 points above the rest; a small per-run offset."""
    rank = SYSTEMS.index(system)
    base = (
        0.60 - 0.005 * rank + (0.02 if system == "trnet" else 0.0) + 0.003 * fold - 0.002 * seed + 0.001 * rank * fold
    )
    if snr is None:
        return base
    slope = 0.01 if system == "baseline-c" else 0.002
    return base - slope * (25 - snr) - (0.01 if noise == "musan" else 0.0)


def fabricate(root: Path, systems: tuple[str, ...] = SYSTEMS, folds=FOLDS, seeds=SEEDS, meta: bool = True) -> Path:
    """A results directory as `trnet reproduce` writes it, with known numbers."""
    rng = np.random.default_rng(0)
    rows, runs = [], []
    conds = [("clean", None)] + [(n, s) for n in NOISES for s in SNRS]
    for system, fold, seed in itertools.product(systems, folds, seeds):
        y = np.arange(N_UTT) % 4
        preds = RunPredictions(np.arange(N_UTT), np.array([f"u{fold}_{i}" for i in range(N_UTT)]), y)
        for noise, snr in conds:
            name = noise if snr is None else f"{noise}@{snr}"
            wrong = rng.random(N_UTT) < 0.4
            preds.pred[name] = np.where(wrong, (y + 1) % 4, y)
            c = None
            if system.startswith("trnet"):
                c = 0.9 if snr is None else 0.3 + 0.025 * snr
                preds.c[name] = np.full(N_UTT, c, np.float32)
            if system in tsne_systems() and (snr is None or (noise == "esc50" and snr in (20, 10, 0))):
                preds.h[name] = rng.standard_normal((N_UTT, DIM)) + 3 * np.eye(4)[y] @ rng.standard_normal((4, DIM))
            uar = true_uar(system, noise, snr, fold, seed)
            rows.append(
                {
                    "system": system,
                    "fold": fold,
                    "seed": seed,
                    "test_speaker": f"s{fold}",
                    "noise": noise,
                    "snr": snr,
                    "uar": uar,
                    "war": uar - 0.01,
                    "mean_c": c,
                    "n": N_UTT,
                }
            )
        preds.save(predictions_path(root, system, fold, seed))
        val = true_uar(system, "clean", None, fold, seed)
        rho = 0.5 + 0.01 * fold if system.startswith("trnet") else None
        runs.append({"system": system, "fold": fold, "seed": seed, "val_uar": val, "rho": rho})
    (root / "results.json").write_text(json.dumps(rows))
    if meta:
        (root / "meta.json").write_text(
            json.dumps(
                {
                    "recipe": {"name": "fabricated", "origin": "test"},
                    "commit": "abc123",
                    "created": "now",
                    "se": {"name": "dfn3", "version": "v"},
                    "train_noise": "esc50",
                    "encoder": "resnet",
                    "width": 4,
                    "epochs": 2,
                    "folds": list(folds),
                    "seeds": list(seeds),
                    "snrs": list(SNRS),
                    "notes": ["fabricated numbers"],
                    "corpus": {"kind": "emodb", "root": "/x", "utterances": 100, "speakers": 10},
                    "noise": {
                        "esc50": {"kind": "esc50", "clips": 800, "sources": 613},
                        "musan": {"kind": "noise", "clips": 25, "sources": 25},
                    },
                    "runs": runs,
                }
            )
        )
    return root


def test_full_report(tmp_path) -> None:
    results = fabricate(tmp_path)
    assert main(["report", str(results)]) == 0
    text = (results / "report.md").read_text()
    for png in PNGS:
        data = (results / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"({png})" in text
    for heading in ("Table 1", "Table 2", "Figure 2", "Figure 3", "Confusion", "Significance", "esc50", "musan"):
        assert heading in text
    assert "Commit: `abc123`" in text and "fabricated numbers" in text and "`dfn3` instead of the paper's CMGAN" in text
    assert "Not run" not in text
    # does c track the SNR: fabricated c is 0.9 clean and 0.3 + 0.025 * SNR, rho 0.5 + 0.01 * fold
    rho = [0.5 + 0.01 * f for f in FOLDS for _ in SEEDS]
    section = text.split("## Figure 2")[1].splitlines()
    row = next(line for line in section if line.startswith("| TRNet w/o L_low | "))
    rho_cell = f"{np.mean(rho):.2f} ± {np.std(rho, ddof=1):.2f}"
    assert row.split(" | ")[1:7] == [rho_cell, "0.900", "0.300", "+0.600", "yes", "–"]
    assert "validation picks **TRNet**" in text  # the highest fabricated validation UAR among systems with c

    # Table 1: TRNet's clean UAR is mean ± sample std over the 6 runs, and the best (bold)
    trnet = [100 * true_uar("trnet", "clean", None, f, s) for f in FOLDS for s in SEEDS]
    cell = f"{np.mean(trnet):.2f} ± {np.std(trnet, ddof=1):.2f}"
    row = next(line for line in text.splitlines() if line.startswith("| TRNet |"))
    assert row.split(" | ")[1] == f"**{cell}**"
    # esc50 SNR mean
    esc = [np.mean([100 * true_uar("baseline-c", "esc50", snr, f, s) for snr in SNRS]) for f in FOLDS for s in SEEDS]
    row = next(line for line in text.splitlines() if line.startswith("| Baseline-c |"))
    assert row.split(" | ")[3] == f"{np.mean(esc):.2f} ± {np.std(esc, ddof=1):.2f}"


def test_significance_matches_scipy(tmp_path) -> None:
    results = fabricate(tmp_path)
    make_report(results)
    tests = json.loads((results / "significance.json").read_text())
    assert len([t for t in tests if t["system"] == "trnet"]) == 6 * 3  # 6 other systems x (clean, esc50, musan)
    # and each other system with c against Baseline-e
    assert {(t["system"], t["other"]) for t in tests if t["system"] != "trnet"} == {
        ("trnet-wo-low", "baseline-e"),
        ("trnet-wo-high", "baseline-e"),
    }
    t = next(t for t in tests if t["system"] == "trnet" and t["other"] == "baseline-c" and t["setting"] == "esc50")
    runs = [(f, s) for f in FOLDS for s in SEEDS]
    a = np.array([np.mean([true_uar("trnet", "esc50", snr, f, s) for snr in SNRS]) for f, s in runs])
    b = np.array([np.mean([true_uar("baseline-c", "esc50", snr, f, s) for snr in SNRS]) for f, s in runs])
    assert t["n"] == 6 and t["mean_diff"] == pytest.approx(np.mean(a - b))
    assert t["wilcoxon_p"] == pytest.approx(wilcoxon(a - b).pvalue)
    assert t["permutation_p"] == pytest.approx(2 / 64) and t["exact"]  # all 6 differences positive
    assert "Too few pairs" not in (results / "report.md").read_text()


def test_paired_test_known_data() -> None:
    d = np.array([1.5, -0.5, 2.0, 0.75, 3.0, -1.25, 0.25, 1.0])
    t = stats.paired_test(d + 10, np.full(8, 10.0))
    assert t.n == 8 and t.mean_diff == pytest.approx(d.mean()) and t.std_diff == pytest.approx(d.std(ddof=1))
    assert t.wilcoxon_p == pytest.approx(wilcoxon(d).pvalue)
    brute = np.mean([abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product((-1, 1), repeat=len(d))])
    assert t.permutation_p == pytest.approx(brute) and t.exact
    # beyond the exact limit: Monte-Carlo, close to the exact value
    d17 = np.random.default_rng(1).normal(0.3, 1.0, 17)
    signs = 1 - 2 * ((np.arange(2**17)[:, None] >> np.arange(17)) & 1)
    exact = np.mean(np.abs(signs @ d17) >= abs(d17.sum()) - 1e-12)
    p, is_exact = stats.sign_flip_p(d17, resamples=50_000)
    assert not is_exact and abs(p - exact) < 0.01
    # degenerate cases
    assert stats.wilcoxon_p(np.zeros(5)) == 1.0 and stats.sign_flip_p(np.zeros(5))[0] == 1.0
    assert (
        stats.paired_test(np.ones(3), np.zeros(3)).min_p == 0.25
        and not stats.paired_test(np.ones(3), np.zeros(3)).can_reject()
    )
    assert stats.min_pairs(0.05) == 6


def test_subset_and_small_n(tmp_path) -> None:
    """Two systems, one run each, no meta.json: skipped parts are noted, nothing crashes."""
    results = fabricate(tmp_path, systems=("baseline-c", "trnet"), folds=(0,), seeds=(1,), meta=False)
    path = make_report(results)
    text = path.read_text()
    assert "Not run: Baseline-n, Baseline-e, Baseline-ne, TRNet w/o L_low, TRNet w/o L_high" in text
    assert "Not run: TRNet w/o L_low, TRNet w/o L_high." in text
    assert "Too few pairs to conclude" in text and "no meta.json" in text
    for png in PNGS:
        assert (results / png).is_file()

    only = fabricate(tmp_path / "only", systems=("baseline-n",), folds=(0,), seeds=(1,))
    text = make_report(only).read_text()
    assert "TRNet was not run: no significance tests." in text
    assert "Figure 2" in text and "Skipped: no system with an SNR-aware module" in text and "Figure 3 skipped" in text
    assert not (only / "fig2_snr_coefficient.png").exists() and not (only / "fig3_tsne.png").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_also_merges_another_results_directory_as_tagged_systems(tmp_path) -> None:
    """`trnet report A --also atten20=B`: B's runs become systems <system>@atten20 in every
    table and figure, their predictions read from B; a malformed --also is one line, exit 2."""
    main_dir = fabricate(tmp_path / "a")
    other = fabricate(tmp_path / "b", systems=("baseline-e", "trnet"), folds=FOLDS, seeds=(1,))
    out = tmp_path / "report"
    assert main(["report", str(main_dir), "--also", f"atten20={other}", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    table1 = text.split("## Table 1")[1].split("##")[0]
    assert "| Baseline-e @atten20 |" in table1 and "| TRNet @atten20 |" in table1
    # the tagged TRNet has c: it is in Figure 2's table and tested against Baseline-e on its 3 shared runs
    assert "| TRNet @atten20 | " in text.split("## Figure 2")[1].split("## Model selection")[0]
    tests = json.loads((out / "significance.json").read_text())
    tagged = [t for t in tests if t["system"] == "trnet@atten20" and t["other"] == "baseline-e"]
    assert len(tagged) == 3 and all(t["n"] == 3 for t in tagged)
    assert (out / "confusion.png").is_file() and not (main_dir / "report.md").exists()
    assert main(["report", str(main_dir), "--also", "no-equals-sign"]) == 2


def test_selection_never_recommends_an_ablation(tmp_path) -> None:
    """The recommended system is chosen among TRNet and its variants, at any SE setting; an ablation
    with the highest validation UAR explains a loss, it is not a candidate."""
    assert is_candidate("trnet") and is_candidate("trnet-std-snr") and is_candidate("trnet-std@atten20")
    assert not any(map(is_candidate, ("trnet-wo-low", "trnet-wo-high@atten20", "baseline-e", "baseline-e@x")))
    results = fabricate(tmp_path)
    meta = json.loads((results / "meta.json").read_text())
    for run in meta["runs"]:
        run["val_uar"] = {"trnet-wo-low": 0.99, "trnet": 0.7}.get(run["system"], 0.5)
    (results / "meta.json").write_text(json.dumps(meta))
    _, chosen = selection(load_results(results))
    assert chosen == "trnet"


def test_a_report_of_part_of_the_declared_grid_says_so() -> None:
    """A results directory made with --seeds/--folds/--systems subsets is labelled partial,
    naming what it covers against what the recipe declared; the whole grid is not."""
    from trnet.report.markdown import partial_note

    table = {"seed": [1, 2], "folds": "all", "systems": ["baseline-e", "trnet"]}
    whole = {"recipe": {"table": table}, "seeds": [1, 2], "folds": [0, 1], "systems": ["baseline-e", "trnet"]}
    assert partial_note(whole) is None
    assert partial_note({**whole, "seeds": [1]}) == "**Partial:** this report covers seeds 1 of the declared 1, 2."
    note = partial_note({**whole, "systems": ["trnet"], "recipe": {"table": {**table, "folds": [0, 1, 2]}}})
    assert note is not None and "folds 0, 1 of the declared 0, 1, 2" in note and "systems trnet of" in note
    assert partial_note({"recipe": {"table": {"seed": 1}}, "seeds": [1]}) is None  # an integer seed is one seed
    assert partial_note({}) is None  # no recipe recorded
