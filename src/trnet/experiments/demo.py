"""`trnet demo`: the whole pipeline on CPU in minutes, with no download and no data given.

It is a built-in recipe run by `trnet reproduce`'s own code (no second pipeline): the built-in
synthetic corpus (or EmoDB with `--emodb DIR`) with the synthetic noise, the best SE back-end
this machine has (dfn3, else the spectral Wiener filter), Baseline-c, Baseline-e and TRNet
on two folds, then the report. Sizes are cut to fit the time: few utterances, 3 SNRs, a
small encoder and few epochs; the report says so. `--quick` is a smoke-test variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from trnet import enhance
from trnet.corpora import CorpusError
from trnet.experiments.recipe import RecipeError, recipe_from_dict, with_overrides
from trnet.experiments.reproduce import reproduce
from trnet.utils import free_cores, torch_device

SYSTEMS = ["baseline-c", "baseline-e", "trnet"]

# Corpus and training sizes per variant. The SE pass dominates (dfn3: about 1 s per utterance
# and condition on one core), so the corpus is small and the SNRs few; batch 8 then gives the
# encoder a few hundred updates (batch 32 would give 3 per epoch). Measured on 2 cores: full
# 5.6 min idle, 8.8 min beside another job's SE pass; --quick 15-25 s.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"n_speakers": 10, "utts_per_class": 4, "duration": [1.5, 3.0], "snrs": [20, 10, 0],
             "folds": [0, 1], "epochs": 20, "batch_size": 8, "width": 8},
    "quick": {"n_speakers": 4, "utts_per_class": 1, "duration": [1.0, 1.5], "snrs": [20, 0],
              "folds": [0], "epochs": 1, "batch_size": 4, "width": 4},
}


def default_se() -> str:
    return "dfn3" if "dfn3" in enhance.available() else "spectral"


def demo_table(emodb: Path | None, quick: bool, se: str) -> dict[str, Any]:
    """The demo recipe as a table (the same format as a recipe TOML; paths relative to --out)."""
    size = SIZES["quick" if quick else "full"]
    synthetic = {"kind": "synthetic", "root": "synthetic", "seed": 0, "n_speakers": size["n_speakers"],
                 "utts_per_class": size["utts_per_class"], "duration": size["duration"]}
    if emodb is None:
        corpus = synthetic
        noise = {"kind": "noise", "root": "synthetic/noise"}
        notes = ["built-in demo: synthetic speech and synthetic noise (white, pink, brown, babble, hum, engine, rain, "
                 "siren); one noise corpus serves as training and test noise, so there is no unmatched condition"]
    else:
        corpus = {"kind": "emodb", "root": str(emodb.resolve())}
        # the generator is asked for the smallest corpus: only its noise/ folder is used
        noise = {**synthetic, "n_speakers": 2, "utts_per_class": 1}
        notes = ["built-in demo on EmoDB with the synthetic noise; one noise corpus serves as training and test "
                 "noise, so there is no unmatched condition"]
    notes.append(
        f"demo sizes ({'--quick' if quick else 'full'}): SNRs {size['snrs']} dB only, "
        f"{size['epochs']} epoch(s), batch {size['batch_size']}, width {size['width']}, folds {size['folds']}, 1 seed"
    )
    return {
        "name": "demo-quick" if quick else "demo",
        "work": ".",
        "se": se,
        "train_noise": "synth",
        "seed": [1],
        "folds": size["folds"],
        "systems": SYSTEMS,
        "epochs": size["epochs"],
        "batch_size": size["batch_size"],
        "encoder": "resnet",
        "width": size["width"],
        "snrs": size["snrs"],
        "notes": notes,
        "corpus": corpus,
        "noise": {"synth": noise},
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("trnet-demo"), help="work directory (default ./trnet-demo)")
    p.add_argument("--emodb", type=Path, help="an EmoDB release (ROOT/wav/*.wav) to use instead of synthetic speech")
    p.add_argument("--quick", action="store_true", help="a much smaller variant (about a minute), for tests")
    p.add_argument("--se", help="SE back-end (default: dfn3 if usable here, else spectral)")
    p.add_argument("--workers", type=int, default=free_cores(),
                   help="processes building the condition store (default: the free cores, %(default)s now)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for training (default 1: robust when other jobs share the cores)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes (default), or Ray tasks (pip install 'trnet[ray]')")
    p.add_argument("--address", help="ray: a running cluster to join ('auto'); default: a local Ray of --workers CPUs")
    p.add_argument("--device", default="cpu", help="torch device for training and evaluation: cpu (default), cuda")


def run(args: argparse.Namespace) -> int:
    started = time.time()
    out = args.out.resolve()
    device = torch_device(args.device)
    se = args.se or default_se()
    table = demo_table(args.emodb, args.quick, se)
    try:
        recipe = recipe_from_dict(table, base=out, origin=f"built-in {table['name']} recipe (trnet.demo)")
        recipe = with_overrides(recipe, engine=args.engine, address=args.address)
        results = reproduce(recipe, workers=args.workers, device=device, threads=args.threads)
    except (RecipeError, CorpusError) as err:
        print(f"trnet demo: error: {err}", file=sys.stderr)
        return 2
    print(f"\ndemo finished in {time.time() - started:.0f} s; the report is {results / 'report.md'}")
    return 0
