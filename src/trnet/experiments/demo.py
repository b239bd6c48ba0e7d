"""`trnet demo`: the whole pipeline on CPU in minutes, with no download and no data given.

It is a built-in recipe run by `trnet reproduce`'s own code (no second pipeline): the built-in
synthetic corpus (or EmoDB with `--emodb DIR`) with the synthetic noise, the best SE back-end
this machine has (dfn3, else the spectral Wiener filter), the three systems of the paper's
Figure 3 (`figure3 = true` in their configs: Baseline-c, Baseline-e and TRNet, so that every
figure of the report is drawn) on two folds, then the report. Sizes are cut to fit the time: few utterances, 3 SNRs, a
small encoder and few epochs; the report says so. `--quick` is a smoke-test variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trnet import configs, enhance

# Corpus and training sizes per variant. The SE pass dominates (dfn3: about 1 s per utterance
# and condition on one core), so the corpus is small and the SNRs few; batch 8 then gives the
# encoder a few hundred updates (batch 32 would give 3 per epoch). Measured on 2 cores: full
# 5.6 min idle, 8.8 min beside another job's SE pass; --quick 15-25 s.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "n_speakers": 10,
        "utts_per_class": 4,
        "duration": [1.5, 3.0],
        "snrs": [20, 10, 0],
        "folds": [0, 1],
        "epochs": 20,
        "batch_size": 8,
        "width": 8,
    },
    "quick": {
        "n_speakers": 4,
        "utts_per_class": 1,
        "duration": [1.0, 1.5],
        "snrs": [20, 0],
        "folds": [0],
        "epochs": 1,
        "batch_size": 4,
        "width": 4,
    },
}


def default_se() -> str:
    """The default back-end where it can run here, else the model-free Wiener filter."""
    return enhance.DEFAULT if enhance.DEFAULT in enhance.available() else "spectral"


def demo_table(emodb: Path | None, quick: bool, se: str) -> dict[str, Any]:
    """The demo recipe as a table (the same format as a recipe TOML; paths relative to --out)."""
    size = SIZES["quick" if quick else "full"]
    synthetic = {
        "kind": "synthetic",
        "root": "synthetic",
        "seed": 0,
        "n_speakers": size["n_speakers"],
        "utts_per_class": size["utts_per_class"],
        "duration": size["duration"],
    }
    if emodb is None:
        corpus = synthetic
        noise = {"kind": "noise", "root": "synthetic/noise"}
        notes = [
            "built-in demo: synthetic speech and synthetic noise (white, pink, brown, babble, hum, engine, rain, "
            "siren); one noise corpus serves as training and test noise, so there is no unmatched condition"
        ]
    else:
        corpus = {"kind": "emodb", "root": str(emodb.resolve())}
        # the generator is asked for the smallest corpus: only its noise/ folder is used
        noise = {**synthetic, "n_speakers": 2, "utts_per_class": 1}
        notes = [
            "built-in demo on EmoDB with the synthetic noise; one noise corpus serves as training and test "
            "noise, so there is no unmatched condition"
        ]
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
        "systems": [s for s, info in configs.systems().items() if info.figure3],
        "epochs": size["epochs"],
        "batch_size": size["batch_size"],
        "encoder": "resnet",
        "width": size["width"],
        "snrs": size["snrs"],
        "notes": notes,
        "corpus": corpus,
        "noise": {"synth": noise},
    }
