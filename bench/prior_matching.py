"""Does label-free per-speaker prior matching steady a study's seed-to-seed spread? A
validation-only pilot over a study's finished runs (docs/design.md §10).

    python bench/prior_matching.py --work ../runs/nemo-study --systems baseline-e,trnet-std-snr \
        --seeds 1,2,3 --grid resnet-w8-e4-b8-p4-cosine-bucket-esc50-d488b4a97b [--out pilot.json]

In leave-one-speaker-out runs about half of a model's test speakers see their predictions pile
into one class (report: "Predicted-class shares"). Prior matching shifts the logits' class
biases, per (speaker, condition), until the mean predicted probability of each class equals
the training prior; it needs no labels, only a batch of the speaker's utterances. For each
run this evaluates the VALIDATION speaker under the run's training conditions, exactly as its
logged validation UAR (checked), raw and prior-matched, and prints per system the mean and the
within-speaker seed sd, and per candidate the paired difference against the first system
(speakers as units, trnet.report.power): what the declared analysis would see, on validation.
The test speaker is never read. Resumable: finished runs are kept in --out.

Measured on the nEMO study (recipes/nemo-study.toml, seeds 1-3, 27 runs per system; 2 cores,
~8 s per run), validation UAR (%):

    system          raw: mean / seed sd    prior-matched: mean / seed sd
    Baseline-e          49.9 / 5.53              54.7 / 5.97
    TRNet-std-snr       51.2 / 4.66              56.0 / 4.87
    TRNet-std-snr - Baseline-e: raw +1.30 (MDE 3.60, sigma_e 6.02); matched +1.32 (MDE 3.47, sigma_e 7.36)

Prior matching raises validation UAR by ~5 points and leaves the seed spread as it was: the
seed-to-seed variation is in how a model ranks a speaker's utterances, not only in its biases.
(The raw validation UAR chose each run's epoch, so it is optimistic and its spread compressed.)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from trnet.batches import label_indices
from trnet.evaluation.evaluate import predict_condition
from trnet.evaluation.metrics import uar
from trnet.protocol.folds import split
from trnet.report.power import clustered_difference
from trnet.runs import is_finished, load_run, read_done
from trnet.store import ConditionStore, parse_condition


def match_prior(probs: np.ndarray, prior: np.ndarray, iters: int = 200) -> np.ndarray:
    """probs with per-class log-biases b added so that their mean over rows equals `prior`."""
    logp, b = np.log(np.clip(probs, 1e-12, 1.0)), np.zeros(probs.shape[1])
    for _ in range(iters):
        q = np.exp(logp + b)
        q /= q.sum(1, keepdims=True)
        b += np.log(prior) - np.log(q.mean(0))
    return q


def pilot_run(run: Path, store: ConditionStore, labels: np.ndarray) -> dict:
    model, config = load_run(run)
    sp = split(store.rows, int(config["fold"]))
    prior = np.bincount(labels[sp.train], minlength=len(config["labels"])) / len(sp.train)
    ys, raw, matched = [], [], []
    for name in config["train_conditions"]:
        p = predict_condition(model, store, labels, sp.val, parse_condition(name))
        ys.append(p.y_true)
        raw.append(p.y_pred)
        matched.append(match_prior(p.probs, prior).argmax(1))
    y, n = np.concatenate(ys), len(config["labels"])
    out = {"raw": uar(y, np.concatenate(raw), n), "matched": uar(y, np.concatenate(matched), n)}
    logged = read_done(run)["val_uar"]
    if abs(out["raw"] - logged) > 1e-9:
        raise SystemExit(f"{run}: raw validation UAR {out['raw']:.6f} is not the logged {logged:.6f}")
    return {**out, "val_speaker": config["val_speaker"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="the study's work directory (stores/, runs/)")
    ap.add_argument("--systems", required=True, help="comma-separated; the first is the baseline")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--grid", help="the runs/<store>/ subfolder when there are several (training sizes)")
    ap.add_argument("--out", type=Path, default=Path("prior_matching.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    systems, seeds = args.systems.split(","), [int(s) for s in args.seeds.split(",")]
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for store_dir in sorted((args.work / "stores").iterdir()):
        store, runs_root = ConditionStore(store_dir), args.work / "runs" / store_dir.name
        labels = label_indices(store)
        grids = sorted(g.name for g in runs_root.iterdir() if any((g / s).is_dir() for s in systems))
        if len(grids) > 1 and args.grid not in grids:
            raise SystemExit(f"{runs_root} holds several grids of these systems; pass --grid, one of {grids}")
        for run in sorted((runs_root / (args.grid or grids[0])).glob("*/fold*-seed*")):
            system, (fold, seed) = run.parent.name, run.name[4:].split("-seed")
            key = f"{system}/{fold}/{seed}"
            if system in systems and int(seed) in seeds and is_finished(run) and key not in done:
                t = time.perf_counter()
                done[key] = pilot_run(run, store, labels)
                args.out.write_text(json.dumps(done, indent=1))
                print(f"{key}: raw {done[key]['raw']:.4f} matched {done[key]['matched']:.4f} "
                      f"({time.perf_counter() - t:.1f} s)", flush=True)  # fmt: skip
    table: dict[str, dict[str, dict[tuple[int, int], float]]] = defaultdict(lambda: defaultdict(dict))
    for key, v in done.items():
        system, fold, seed = key.split("/")
        if system in systems and int(seed) in seeds:
            for kind in ("raw", "matched"):
                table[system][kind][(int(fold), int(seed))] = 100 * v[kind]
    for system in systems:
        cells = []
        for kind in ("raw", "matched"):
            by = defaultdict(list)
            for (fold, _), x in table[system][kind].items():
                by[fold].append(x)
            sd = np.sqrt(np.mean([np.var(x, ddof=1) for x in by.values() if len(x) > 1] or [np.nan]))
            cells.append(f"{kind} {np.mean(list(table[system][kind].values())):.1f} / seed sd {sd:.2f}")
        print(f"{system}: " + "; ".join(cells))
    for cand in systems[1:]:
        for kind in ("raw", "matched"):
            a, b = table[cand][kind], table[systems[0]][kind]
            groups = defaultdict(list)
            for fs in sorted(set(a) & set(b)):
                groups[fs[0]].append(a[fs] - b[fs])
            if len(groups) >= 2:
                d = clustered_difference(groups)
                print(f"{cand} - {systems[0]} ({kind}): {d.mean:+.2f} [{d.ci[0]:+.2f}, {d.ci[1]:+.2f}] "
                      f"MDE {d.mde:.2f} sigma_e {d.sigma_e:.2f} ({d.n_runs} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
