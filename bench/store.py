"""Condition-store throughput: how fast it builds, and how much faster a training batch is
read from it than computed from the audio files on the fly (the authors' design: load,
pad, mix noise, run SE and the LMFB inside every training step).

    python bench/store.py [--se dfn3] [--utts 16] [--batch 32]

Uses EmoDB and ESC-50 from ../shared/data; both paths do the same work per example
(one random condition from clean + 5 SNRs), and the ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trnet import enhance, features
from trnet.audio import load_audio, pad_or_trim
from trnet.batches import condition_set, label_indices, train_batches
from trnet.corpora import emodb, esc50, write_manifest
from trnet.protocol.mixing import mix_at_snr
from trnet.protocol.noise import assign_noise
from trnet.store import BuildSpec, ConditionStore, build

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def on_the_fly(rows: list[dict], noise: dict, se, conds: list, rng: np.random.Generator) -> torch.Tensor:
    """One batch the authors' way: everything from the waveforms, inside the step."""
    waves, noisy, lengths = [], [], []
    for row in rows:
        speech, n = pad_or_trim(load_audio(row["path"]))
        cond = conds[rng.integers(len(conds))]
        if cond != "clean":
            clip = noise[row["id"]]
            speech_noisy = mix_at_snr(
                speech, load_audio(clip["path"], offset=clip["offset"], duration=clip["duration"]), cond[1], valid=n
            )
        else:
            speech_noisy = speech
        waves.append(speech)
        noisy.append(speech_noisy)
        lengths.append(n)
    x = torch.from_numpy(np.stack(noisy))
    xe = se.enhance(x, torch.tensor(lengths))
    feats, _ = features.fbank(torch.cat([x, xe, torch.from_numpy(np.stack(waves))]))
    return feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--se", default="dfn3")
    ap.add_argument("--utts", type=int, default=16, help="utterances in the store built for timing")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    utts = emodb.load(DATA / "emodb").rows[: max(args.utts, args.batch)]
    noise_rows = esc50.load(DATA / "esc50").rows
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_manifest(tmp / "c.csv", utts, "utterances")
        write_manifest(tmp / "n.csv", noise_rows, "noise")
        spec = BuildSpec(corpus=tmp / "c.csv", noise={"esc50": tmp / "n.csv"}, se=enhance.spec(args.se), seed=1)
        t0 = time.perf_counter()
        store = ConditionStore(build(spec, tmp / "store", workers=args.workers, quiet=True))
        t_build = time.perf_counter() - t0
        n_cond = len(store.conditions)
        print(
            f"store build ({args.se}, {args.workers} worker(s)): {len(utts)} utts x {n_cond} conditions "
            f"in {t_build:.1f} s "
            f"= {len(utts) / t_build:.2f} utt/s, {len(utts) * n_cond / t_build:.1f} utt-conditions/s"
        )

        labels, rows = label_indices(store), np.arange(len(store))
        conds = condition_set(store, "noisy", "esc50")
        t0 = time.perf_counter()
        n_read = 0
        for epoch in range(3):
            for batch in train_batches(store, labels, rows, conds, args.batch, 1, epoch):
                n_read += len(batch.index)
        t_store = (time.perf_counter() - t0) / n_read

        se = enhance.load(args.se)
        assignment = assign_noise(utts, noise_rows, 1, "esc50")
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        on_the_fly(utts[: args.batch], assignment, se, conds, rng)
        t_fly = (time.perf_counter() - t0) / args.batch
    print(f"{'batch source':<28}{'ms / example':>14}{'examples/s':>12}")
    print(f"{'condition store (memmap)':<28}{1e3 * t_store:>14.2f}{1 / t_store:>12.0f}")
    print(f"{'on the fly from audio':<28}{1e3 * t_fly:>14.2f}{1 / t_fly:>12.1f}")
    print(f"store read is {t_fly / t_store:.0f}x faster than computing the batch on the fly")


if __name__ == "__main__":
    main()
