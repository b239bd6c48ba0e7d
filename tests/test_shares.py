"""Predicted-class shares (trnet.report.shares): known distances, the piled-up rule, and the
within-speaker correlation on runs built to make seed-to-seed UAR go with collapse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trnet.report.results import RunPredictions, load_results, predictions_path
from trnet.report.shares import class_shares, share_distance, shares_section

N = 40  # utterances per test speaker, 10 per class


@pytest.mark.parametrize(
    ("pred", "tv", "piled"),
    [
        (np.arange(N) % 4, 0.0, False),  # every class as often as it occurs
        (np.zeros(N, int), 0.75, True),  # everything one class
        ((np.arange(N) + 1) % 4, 0.0, False),  # all wrong, yet balanced: shares say nothing of accuracy
        (np.r_[np.zeros(20, int), np.arange(20) % 4], 0.375, True),  # class 0 at 62.5 % (>= 2 x 25 %)
        (np.r_[np.zeros(10, int), np.arange(30) % 4], 0.2, False),  # shares 45, 20, 17.5, 17.5 % (< 2 x 25 %)
    ],
)
def test_share_distance_known_cases(pred, tv, piled) -> None:
    got_tv, got_piled = share_distance(np.arange(N) % 4, pred, 4)
    assert got_tv == pytest.approx(tv) and got_piled is piled


def _collapsed(y: np.ndarray, k: int) -> np.ndarray:
    """Right, except that the first k utterances of classes 1-3 are called class 0: k = 0 is
    perfect and balanced; each step of k piles 3 more into class 0 and lowers UAR."""
    pred = y.copy()
    for c in range(1, 4):
        pred[np.flatnonzero(y == c)[:k]] = 0
    return pred


def _results(root, collapse: dict[tuple[int, int], int]):
    """Two speakers x two seeds; each run's predictions collapse by collapse[(fold, seed)]."""
    rows, runs = [], []
    y = np.arange(N) % 4
    for (fold, seed), k in collapse.items():
        p = RunPredictions(np.arange(N), np.array([f"u{i}" for i in range(N)]), y)
        for cond in ("clean", "esc50@10", "esc50@0"):
            p.pred[cond] = _collapsed(y, k)
            noise, _, snr = cond.partition("@")
            row = {"system": "baseline-e", "fold": fold, "seed": seed, "test_speaker": f"s{fold}", "noise": noise}
            rows.append(row | {"snr": int(snr) if snr else None, "uar": 0.5, "war": 0.5, "n": N})
        p.save(predictions_path(root, "baseline-e", fold, seed))
        runs.append({"system": "baseline-e", "fold": fold, "seed": seed, "val_uar": 0.5})
    (root / "results.json").write_text(json.dumps(rows))
    (root / "meta.json").write_text(json.dumps({"runs": runs, "noise": {"esc50": {}}}))
    return load_results(root)


def test_within_speaker_r_follows_collapse(tmp_path) -> None:
    # more collapse -> lower UAR, within each speaker: r(TV, UAR) is exactly -1 in both views
    res = _results(tmp_path, {(0, 1): 0, (0, 2): 6, (1, 1): 2, (1, 2): 8})
    s = class_shares(res, "baseline-e")
    assert s["cases"] == 12
    assert s["r"] == pytest.approx(-1.0) and s["r_within"] == pytest.approx(-1.0)
    # k = 8 puts 34 of 40 in class 0 (85 %), k = 6 28 (70 %), k = 2 16 (40 %): piled in 6 of 12 cases
    assert s["piled"] == pytest.approx(0.5)
    tv = np.mean([0.75 * k / 10 for k in (0, 6, 2, 8)])  # 3k of the 30 others moved into class 0
    assert s["mean_tv"] == pytest.approx(tv)
    lines, rows = shares_section(res)
    assert rows == [s] and any(line.startswith("| Baseline-e | 12 | ") for line in lines)


def test_one_seed_per_speaker_has_no_within_speaker_r(tmp_path) -> None:
    s = class_shares(_results(tmp_path, {(0, 1): 0, (1, 1): 4, (2, 1): 8}), "baseline-e")
    assert s["r_within"] is None and s["r"] == pytest.approx(-1.0)


def test_no_predictions_files_is_said(tmp_path) -> None:
    res = _results(tmp_path, {(0, 1): 0, (1, 1): 4})
    for f in (tmp_path / "predictions" / "baseline-e").iterdir():
        f.unlink()
    assert class_shares(res, "baseline-e") is None
    assert shares_section(res) == (["Skipped: no predictions files."], [])
