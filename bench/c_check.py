"""Does TRNet's c move with the SNR on VALIDATION speakers? The check a study runs on its
trained runs before any test result exists (docs/design.md §10; `trnet.experiments.validation_c`).

    trnet reproduce RECIPE --train-only          # train the grid, evaluate nothing
    python bench/c_check.py 'WORK/runs/*/*/trnet*/fold*-seed*' --out DIR [--device cpu]

RUNS: run directories, or glob patterns of them (quoted, or expanded by the shell). For every
finished run of a system with c, the validation speaker's utterances go through the run's best
model under every condition of its store; the test speaker is never read. Written to DIR:
c_conditions.csv (run, system, fold, seed, val_speaker, noise, snr, mean_c, n), c_runs.csv
(Spearman rho of c vs SNR per run, and whether the mean c falls monotonically per noise corpus)
and c_check.md (per system: rho mean ± sd over runs; mean c per condition), also printed.
Baselines (no c) and unfinished runs are skipped with a note. Then, if c moves, the same
`trnet reproduce RECIPE` without --train-only evaluates the runs on their test speakers.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import torch

from trnet.device import torch_device
from trnet.experiments.validation_c import check_runs, write_check
from trnet.utils import UserError


def run_paths(patterns: list[str]) -> list[Path]:
    """The run directories the patterns name, sorted, each once; UserError if one names none."""
    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(Path(p) for p in glob.glob(pattern)) or ([Path(pattern)] if Path(pattern).is_dir() else [])
        if not found:
            raise UserError(f"{pattern}: no run directory matches")
        paths += [p for p in found if p not in paths]
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories or glob patterns (e.g. 'WORK/runs/*/*/*/fold*-seed*')")
    ap.add_argument("--out", type=Path, required=True, help="directory for c_conditions.csv, c_runs.csv, c_check.md")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        checks, skipped = check_runs(run_paths(args.runs), torch_device(args.device))
        if not checks:
            raise UserError("no finished run of a system with c among the runs given")
        print(write_check(args.out, checks, skipped))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"written: {args.out}/c_check.md, c_conditions.csv, c_runs.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
