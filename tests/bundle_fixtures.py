"""A tiny two-corpus world for the bundle tests: folder corpus `aa` (4 speakers in 2 paired
sessions, EmoDB's layout) and `bb` (3 speakers in nEMO's release layout, each speaker its own
session), two
noise folders of 6 sources each, and a bundle recipe over them (identity SE, width 2,
1 epoch). Tones whose pitch follows the class, so a model can learn something."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trnet.audio import save_audio

LABELS = ("angry", "happy", "neutral", "sad")

RECIPE = """
name = "tiny-bundle"
work = "work"
system = "trnet-std-snr"
baseline = "baseline-e"
width = 2
epochs = 1
batch_size = 8
patience = 1
seed = 1
loco_seeds = [1, 2]
se = "identity"
noise_seed = 1
train_snrs = [20, 0]
test_snrs = [20, 0, -5]
train_noise = ["hum", "hiss"]
loco_train_noise = ["hum"]
test_noise = "hiss"
weights_licence = "test only"
placeholder = true

[loco_targets]
"aa -> bb" = 1.0
"bb->aa" = 99.0

[corpora.aa]
kind = "folder"
root = "aa"
title = "Corpus A"
language = "Tonal"
licence = "MIT (generated)"

[corpora.bb]
kind = "nemo"
root = "bb"
title = "Corpus B"
licence = "MIT (generated)"

[noise.hum]
kind = "noise"
root = "noise/hum"
title = "Hum"
licence = "MIT (generated)"

[noise.hiss]
kind = "noise"
root = "noise/hiss"
licence = "MIT (generated)"
"""

SPEAKERS = (("a", "F", 1), ("b", "M", 1), ("c", "F", 2), ("d", "M", 2))
NEMO_SPEAKERS = (("XA0", "female"), ("YB0", "male"), ("ZC0", "female"))
NEMO_EMOTIONS = ("anger", "happiness", "neutral", "sadness", "fear")  # fear: set aside by the loader


def tone(rng: np.random.Generator, k: int, s: int) -> np.ndarray:
    t = np.arange(int(rng.integers(12_000, 20_000))) / 16_000
    return (0.2 * np.sin(2 * np.pi * (120 + 60 * k + 5 * s) * t) * np.hanning(len(t))).astype(np.float32)


def make_world(root: Path, recipe: str = RECIPE) -> Path:
    """Write the corpora, the noise and the recipe under `root`; returns the recipe path."""
    rng = np.random.default_rng(0)
    lines = ["file,label,speaker,session,gender"]
    for s, (speaker, gender, session) in enumerate(SPEAKERS):
        for k, label in enumerate(LABELS):
            for j in range(2):
                save_audio(root / "aa" / f"{speaker}_{label}_{j}.wav", tone(rng, k, s))
                lines.append(f"{speaker}_{label}_{j}.wav,{label},{speaker},{session},{gender}")
    (root / "aa" / "labels.csv").write_text("\n".join(lines) + "\n")
    lines = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for s, (speaker, gender) in enumerate(NEMO_SPEAKERS):
        for k, emotion in enumerate(NEMO_EMOTIONS):
            for j in range(2):
                name = f"{speaker}_{emotion}_{j}.wav"
                save_audio(root / "bb" / "samples" / name, tone(rng, k, s + 7))
                lines.append(f"{name}\t{emotion}\tZdanie.\tzdanie\t        {speaker}\t{gender}\t30")
    (root / "bb" / "data.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = np.arange(32_000) / 16_000
    for j in range(6):
        hum = 0.1 * np.sin(2 * np.pi * (50 + 10 * j) * t)
        save_audio(root / "noise" / "hum" / f"h{j}.wav", hum.astype(np.float32))
        save_audio(root / "noise" / "hiss" / f"s{j}.wav", (0.05 * rng.standard_normal(32_000)).astype(np.float32))
    path = root / "tiny-bundle.toml"
    path.write_text(recipe)
    return path


def random_bundle(
    folder: Path,
    name: str = "test-model",
    se: str = "identity",
    placeholder: bool = True,
    system: str = "trnet-std-snr",
    width: int = 2,
    **overrides,
) -> Path:
    """A bundle (trnet.pretrained layout) of a randomly initialised system (width 2; `overrides`:
    other SystemConfig fields): what the package-data code needs to be tested before the real
    model lands. Returns its folder."""
    import json
    from dataclasses import asdict, replace

    import torch

    from trnet.corpora import LABELS as CLASSES
    from trnet.models import SERSystem, load_config
    from trnet.pretrained import FILES, FORMAT, MANIFEST
    from trnet.runs import BEST, save_weights, write_config, write_finished
    from trnet.utils import sha256_file

    out = folder / name
    cfg = replace(load_config(system), width=width, **overrides)
    torch.manual_seed(0)
    model = SERSystem(cfg)
    if model.snr is not None and model.snr.needs_stats:
        model.snr.set_input_stats(torch.full((cfg.n_mels,), 5.0), torch.full((cfg.n_mels,), 2.0))
    save_weights(out / BEST, model)
    write_config(
        out,
        {
            "system": asdict(cfg),
            "labels": list(CLASSES),
            "se": se,
            "se_options": {},
            "fold": "holdout",
            "seed": 1,
            "test_speaker": None,
            "val_speakers": ["aa-b"],
        },
    )
    write_finished(out, {"val_uar": 0.25, "val_ce": 1.4, "epoch": 1, "epochs_run": 1})
    manifest = {
        "format": FORMAT,
        "name": name,
        "default": True,
        "placeholder": placeholder,
        "system": system,
        "encoder": cfg.encoder,
        "width": cfg.width,
        "labels": list(CLASSES),
        "se": se,
        "files": {f: {"sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in FILES},
        "training_data": [{"name": "aa", "title": "Corpus A", "language": "Tonal", "licence": "MIT (generated)"}],
        "noise": [{"name": "hum", "title": "Hum", "licence": "MIT (generated)"}],
        "licence": {"weights": "test only", "code": "MIT"},
        "metrics": {
            "leave_one_corpus_out": [
                {
                    "train": "aa",
                    "test": "bb",
                    "system": system,
                    "rho": {"mean": 0.42, "std": 0.0, "n": 1},
                    "nonspeech": {"silence": {"mean": 0.67, "std": 0.0, "n": 1}, "noise": {"mean": 0.31}},
                }
            ],
            "c_training": "unsupervised",
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out
